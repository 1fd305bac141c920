//! What the learning step took from a call (`call:{id}` `learned`).

use serde::{Deserialize, Serialize};

/// One objection the customer raised, how the agent answered it, and what
/// a good answer does: a skill and a test case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnedPair {
    /// The customer's objection (the skill's trigger, the test case's input).
    pub objection: String,
    /// What the agent answered that worked (the skill's rebuttal).
    pub rebuttal: String,
    /// What a good answer does (the test case's target).
    pub target: String,
}

/// What the learning step took from a call, at `call:{id}` (`learned`).
///
/// `waiting` is recorded as soon as the pairs are known and the test cases
/// written, before the skills are embedded: a re-run (the embedder was
/// down, or a worker died) takes the pairs from here instead of asking the
/// model again. `learned` and `nothing` are final: the first stays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Learned {
    /// The pairs are known and the test cases written; the skills wait for
    /// the embedder.
    Waiting {
        /// What the model found.
        pairs: Vec<LearnedPair>,
        /// Test cases `test_cases:list` did not hold yet.
        test_cases_added: usize,
        /// The model that found them.
        model: String,
        /// Answers asked for.
        attempts: u32,
        /// When (RFC 3339).
        at: String,
    },
    /// The skills are stored too.
    Learned {
        /// What the model found.
        pairs: Vec<LearnedPair>,
        /// The `skill:{hash}` suffix of each pair, in order.
        skills: Vec<String>,
        /// Test cases `test_cases:list` did not hold yet.
        test_cases_added: usize,
        /// The model that found them.
        model: String,
        /// Answers asked for.
        attempts: u32,
        /// When (RFC 3339).
        at: String,
    },
    /// Nothing was learned, and why: the call was not a success, had no
    /// customer turn, the model found no objection, or its answers never
    /// fit.
    Nothing {
        /// Why, for people.
        reason: String,
        /// Answers asked for (0 when the model was not asked).
        attempts: u32,
        /// When (RFC 3339).
        at: String,
    },
}

impl Learned {
    /// True for `learned` and `nothing`.
    pub fn is_final(&self) -> bool {
        !matches!(self, Learned::Waiting { .. })
    }
}
