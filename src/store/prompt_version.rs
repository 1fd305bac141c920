//! The prompt optimiser's records: each deployed version of a prompt key
//! ([`PromptVersion`], kept in `{prompt key}:history` beside the version
//! counter `{prompt key}:version`) and each optimisation's trace
//! ([`OptimisationTrace`], `optimisation:{id}`). The live key stays the
//! plain string readers know.

use serde::{Deserialize, Serialize};

/// Versions a prompt key's history keeps: the newest (each deployment
/// trims the oldest; a rollback can reach these).
pub const MAX_PROMPT_HISTORY: usize = 1_000;

/// How long an optimisation's trace `optimisation:{id}` is kept: 30 days.
pub const OPTIMISATION_TRACE_TTL_MS: u64 = 30 * 24 * 3_600_000;

/// One test case's score under a prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseScore {
    /// The objection.
    pub input: String,
    /// 0 to 1.
    pub score: f64,
    /// The judge's reason.
    pub reason: String,
    /// The agent's answer, as judged.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub answer: String,
}

/// A prompt's scores on a set of test cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptScores {
    /// The mean of the case scores.
    pub mean: f64,
    /// Per case, in the order evaluated.
    pub cases: Vec<CaseScore>,
}

impl PromptScores {
    /// The scores of `cases`, with their mean (0 when there are none).
    pub fn new(cases: Vec<CaseScore>) -> Self {
        let mean = if cases.is_empty() {
            0.0
        } else {
            cases.iter().map(|c| c.score).sum::<f64>() / cases.len() as f64
        };
        PromptScores { mean, cases }
    }
}

/// One version of a prompt key, as kept in its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptVersion {
    /// 1 for the first deployment; 0 is the text the key held before it.
    pub version: u64,
    /// The text ("" when the key held none: its readers fall back to the
    /// next key).
    pub prompt: String,
    /// Its scores when it was deployed, if evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores: Option<PromptScores>,
    /// When (RFC 3339).
    pub deployed_at: String,
    /// When (Unix ms), for the rate limit.
    #[serde(default)]
    pub deployed_at_ms: u64,
    /// The failed call that caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// The optimisation whose trace explains it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimisation: Option<String>,
    /// Why it was deployed.
    pub reason: String,
}

/// The live text of a prompt key and the version it is at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PromptState {
    /// 0 until the first deployment.
    pub version: u64,
    /// The live text, if any.
    pub text: Option<String>,
}

/// What a compare-and-set deployment did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployed {
    /// The entry is live at this version.
    Deployed(u64),
    /// The key had moved on to this version: nothing written.
    Conflict(u64),
}

/// What an optimisation decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The candidate went live.
    Deployed,
    /// The candidate scored below the threshold or the current prompt, or
    /// broke a limit.
    Rejected,
    /// No test cases: kept, not deployed.
    Unevaluated,
    /// Another optimisation deployed first (compare-and-set lost).
    Superseded,
    /// The segment reached its rate limit: no candidate asked for.
    RateLimited,
    /// Nothing to optimise from, or a model gave no usable answer.
    Skipped,
}

impl Decision {
    /// The snake-case name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Deployed => "deployed",
            Decision::Rejected => "rejected",
            Decision::Unevaluated => "unevaluated",
            Decision::Superseded => "superseded",
            Decision::RateLimited => "rate_limited",
            Decision::Skipped => "skipped",
        }
    }
}

/// One optimisation, as the CLI and the call record show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimisationTrace {
    /// Its id (`optimisation:{id}`).
    pub id: String,
    /// The prompt key optimised, e.g. `prompt:segment:US:healthcare`.
    pub key: String,
    /// The failed call that started it.
    pub call_id: String,
    /// The version the candidate was evaluated against.
    pub base_version: u64,
    /// The candidate prompt ("" if none was produced).
    pub candidate: String,
    /// The candidate's scores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_scores: Option<PromptScores>,
    /// The current prompt's scores on the same cases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_scores: Option<PromptScores>,
    /// The threshold the candidate had to reach.
    pub threshold: f64,
    /// What was decided.
    pub decision: Decision,
    /// Why.
    pub reason: String,
    /// The version deployed, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_version: Option<u64>,
    /// Model requests made.
    #[serde(default)]
    pub llm_calls: u64,
    /// When it was decided (RFC 3339).
    pub at: String,
}
