//! `[optimiser]`: the prompt optimiser (it needs `[evaluator]`: it acts on
//! the verdicts).
//!
//! ```toml
//! [optimiser]
//! enabled = true                          # default when the section is present
//! base_url = "https://api.openai.com/v1"  # any OpenAI-compatible server
//! api_key_env = "OPENAI_API_KEY"
//! model = "gpt-4o-mini"                   # writes candidate prompts
//! agent_model = "gpt-4o-mini"             # answers the test cases (default: model)
//! judge_model = "gpt-4o-mini"             # scores the answers (default: model)
//! threshold = 0.5                         # the mean a candidate must reach
//! failures_before = 1                     # failed calls in a segment per optimisation
//! sample = 0                              # test cases used: the newest N (0: all)
//! max_prompt_bytes = 8000                 # longer candidates are rejected
//! max_attempts = 3                        # malformed answers asked again
//! max_candidates_per_hour = 10            # per prompt key
//! max_deployments_per_hour = 3            # per prompt key
//! json_mode = true                        # response_format json_object
//! connection = { response_timeout_secs = 60 }
//! ```

use serde::{Deserialize, Deserializer};

use crate::agent::eval::{
    ApiEndpoint, default_attempts, default_base_url, default_chat_model, whole_answer_connection,
    yes,
};
use crate::pipeline::BuildError;
use crate::services::{ApiKey, ConnectionOptions};

/// `[optimiser]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimiserSection {
    /// Optimise prompts after failed calls.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The OpenAI-compatible API.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The variable holding the API key, if the server needs one.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The model writing candidate prompts.
    #[serde(default = "default_chat_model")]
    pub model: String,
    /// The model answering test cases under a prompt (the agent's).
    #[serde(default)]
    pub agent_model: Option<String>,
    /// The model scoring the answers.
    #[serde(default)]
    pub judge_model: Option<String>,
    /// The mean score a candidate must reach, 0 to 1.
    #[serde(default = "default_threshold", deserialize_with = "fraction")]
    pub threshold: f64,
    /// Failed calls in a segment before an optimisation runs.
    #[serde(default = "one", deserialize_with = "at_least_one")]
    pub failures_before: u64,
    /// Test cases used: the newest `sample` (0: all).
    #[serde(default)]
    pub sample: usize,
    /// Candidates longer than this (bytes) are rejected.
    #[serde(
        default = "default_max_prompt_bytes",
        deserialize_with = "at_least_one"
    )]
    pub max_prompt_bytes: u64,
    /// Answers asked for before a malformed one is given up on.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Candidates asked for per prompt key in an hour.
    #[serde(default = "default_candidates_per_hour")]
    pub max_candidates_per_hour: u64,
    /// Deployments per prompt key in an hour.
    #[serde(default = "default_deployments_per_hour")]
    pub max_deployments_per_hour: u64,
    /// Ask the writer and the judge for a JSON object through
    /// `response_format`.
    #[serde(default = "yes")]
    pub json_mode: bool,
    /// Timeouts and retries of each request.
    #[serde(default = "whole_answer_connection")]
    pub connection: ConnectionOptions,
}

fn default_threshold() -> f64 {
    0.5
}
fn one() -> u64 {
    1
}
fn default_max_prompt_bytes() -> u64 {
    8_000
}
fn default_candidates_per_hour() -> u64 {
    10
}
fn default_deployments_per_hour() -> u64 {
    3
}

fn fraction<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let value = f64::deserialize(d)?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(serde::de::Error::custom(format!(
            "{value} is not between 0 and 1"
        )))
    }
}

fn at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let value = u64::deserialize(d)?;
    if value >= 1 {
        Ok(value)
    } else {
        Err(serde::de::Error::custom("must be at least 1"))
    }
}

impl OptimiserSection {
    /// The models' endpoint, with the resolved key.
    pub fn endpoint(&self, api_key: Option<ApiKey>) -> Result<ApiEndpoint, BuildError> {
        ApiEndpoint::new(&self.base_url, api_key, &self.connection, "optimiser")
    }

    /// The model answering test cases.
    pub fn agent_model(&self) -> &str {
        self.agent_model.as_deref().unwrap_or(&self.model)
    }

    /// The model scoring answers.
    pub fn judge_model(&self) -> &str {
        self.judge_model.as_deref().unwrap_or(&self.model)
    }

    /// The most model requests one optimisation makes for `cases` test
    /// cases: a candidate (up to `max_attempts`), then per case and per
    /// prompt (the candidate, and the current one unless its scores are
    /// kept from its deployment) an answer and a score (up to
    /// `max_attempts`).
    pub fn max_llm_calls(&self, cases: u64) -> u64 {
        let attempts = u64::from(self.max_attempts.max(1));
        attempts + 2 * cases * (1 + attempts)
    }
}
