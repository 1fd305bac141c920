//! `[learning]`: skills and test cases from calls that went well.
//!
//! ```toml
//! [learning]
//! enabled = true                          # default when the section is present
//! base_url = "https://api.openai.com/v1"  # any OpenAI-compatible server
//! model = "gpt-4o-mini"
//! api_key_env = "OPENAI_API_KEY"
//! prompt = "You read ..."                 # optional; for calls that went well
//! max_attempts = 3                        # answers breaking the schema asked again
//! max_pairs = 5                           # objections kept per call
//! min_score = 0.0                         # learn from successes scored at least this
//! response_format = "json_schema"         # or "json_object", "none"
//! connection = { response_timeout_secs = 60 }
//! ```
//!
//! Skills are embedded with `[context.skills]`'s model (the one
//! `search_context` embeds its queries with), so that section is required.

use serde::Deserialize;

use crate::agent::eval::{
    ApiEndpoint, default_attempts, default_base_url, default_chat_model, whole_answer_connection,
    yes,
};
use crate::agent::extraction::{FormatKind, SectionProblem};
use crate::pipeline::BuildError;
use crate::services::{ApiKey, ConnectionOptions};

/// Most objection/rebuttal pairs kept from one call, at most.
const MAX_PAIRS_LIMIT: usize = 20;

/// `[learning]`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearningSection {
    /// Learn from each call judged a success.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The OpenAI-compatible API.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The model that finds the objections.
    #[serde(default = "default_chat_model")]
    pub model: String,
    /// The variable holding the API key, if the server needs one.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The instructions for calls that went well (the answer's schema is
    /// appended).
    #[serde(default)]
    pub prompt: Option<String>,
    /// Answers asked for before the call is recorded as having taught
    /// nothing.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Pairs kept per call (the first ones the model lists).
    #[serde(default = "default_max_pairs")]
    pub max_pairs: usize,
    /// Calls judged a success with a lower score teach nothing.
    #[serde(default)]
    pub min_score: f64,
    /// The `response_format` asked for.
    #[serde(default)]
    pub response_format: FormatKind,
    /// Timeouts and retries of each request (the services' `connection`
    /// table; 60 s to answer by default).
    #[serde(default = "whole_answer_connection")]
    pub connection: ConnectionOptions,
}

fn default_max_pairs() -> usize {
    5
}

impl LearningSection {
    /// Checks what serde cannot: ranges, and that skills can be embedded
    /// (`has_embedder`: `[context.skills]` is set).
    pub fn check(&self, has_embedder: bool) -> Result<(), SectionProblem> {
        let problem = |key, message: &str| SectionProblem {
            key,
            message: message.to_owned(),
        };
        if !(0.0..=1.0).contains(&self.min_score) {
            return Err(problem(
                "learning.min_score",
                "expected a number from 0 to 1",
            ));
        }
        if !(1..=MAX_PAIRS_LIMIT).contains(&self.max_pairs) {
            return Err(problem("learning.max_pairs", "expected 1 to 20"));
        }
        if self.max_attempts == 0 {
            return Err(problem("learning.max_attempts", "expected at least 1"));
        }
        if self.enabled && !has_embedder {
            return Err(problem(
                "learning",
                "needs [context.skills]: skills are embedded with the model search_context uses",
            ));
        }
        Ok(())
    }

    /// The model's endpoint, with the resolved key.
    pub fn endpoint(&self, api_key: Option<ApiKey>) -> Result<ApiEndpoint, BuildError> {
        ApiEndpoint::new(&self.base_url, api_key, &self.connection, "learning")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(toml: &str) -> LearningSection {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn defaults_and_checks() {
        let s = section("");
        assert!(s.enabled);
        assert_eq!((s.max_attempts, s.max_pairs, s.min_score), (3, 5, 0.0));
        assert_eq!(s.check(true), Ok(()));
        assert_eq!(s.check(false).unwrap_err().key, "learning");
        assert_eq!(
            section("min_score = 1.5").check(true).unwrap_err().key,
            "learning.min_score"
        );
        assert_eq!(
            section("max_pairs = 0").check(true).unwrap_err().key,
            "learning.max_pairs"
        );
        assert!(toml::from_str::<LearningSection>("modle = \"x\"").is_err());
    }
}
