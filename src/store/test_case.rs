//! The learning loop's test cases: `test_cases:list`, a list of JSON
//! `{"input": an objection, "target": what a good answer does}`, one per
//! objection (the same objection, however spaced or cased, is kept once:
//! the first target stays).

use serde::{Deserialize, Serialize};

use super::tactics::tactic_identity;

/// Test cases `test_cases:list` keeps: the newest (every addition trims
/// the oldest), so what calls teach cannot grow it, and each optimisation's
/// read of it, without bound.
pub const MAX_TEST_CASES_KEPT: usize = 1_000;

/// One test case for prompt candidates: the agent's answer to `input` is
/// judged against `target`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestCase {
    /// What the customer says (an objection).
    pub input: String,
    /// What a good answer does.
    pub target: String,
}

impl TestCase {
    /// The identity two test cases share when their inputs are the same
    /// objection: whitespace collapsed, lowercase.
    pub fn identity(&self) -> String {
        tactic_identity(&self.input)
    }
}
