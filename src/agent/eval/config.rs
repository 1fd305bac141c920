//! `[evaluator]`: the session-end judge.
//!
//! ```toml
//! [evaluator]
//! enabled = true                          # default when the section is present
//! base_url = "https://api.openai.com/v1"  # any OpenAI-compatible server
//! model = "gpt-4o-mini"
//! api_key_env = "OPENAI_API_KEY"          # optional (local servers need none)
//! prompt = "You evaluate ..."             # optional; a sales-call judge by default
//! max_attempts = 3                        # malformed answers asked again
//! json_mode = true                        # send response_format json_object
//! connection = { response_timeout_secs = 60, max_retries = 2 }  # as for services
//! claim_idle_secs = 60                    # reclaim a crashed worker's job after
//! max_deliveries = 2                      # first run + one more after a crash
//! ```

use serde::Deserialize;

use super::http::ApiEndpoint;
use super::judge::DEFAULT_JUDGE_PROMPT;
use super::worker::WorkerSettings;
use crate::config::Seconds;
use crate::pipeline::BuildError;
use crate::services::{ApiKey, ConnectionOptions};

/// `[evaluator]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluatorSection {
    /// Judge each session when it ends.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The OpenAI-compatible API.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The judge's model.
    #[serde(default = "default_chat_model")]
    pub model: String,
    /// The variable holding the API key, if the server needs one.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The judge's instructions.
    #[serde(default)]
    pub prompt: Option<String>,
    /// Answers asked for before giving up.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Ask for a JSON object through `response_format`.
    #[serde(default = "yes")]
    pub json_mode: bool,
    /// Timeouts and retries of each request (the services' `connection`
    /// table; the answer comes whole, so its response timeout is 60 s by
    /// default).
    #[serde(default = "whole_answer_connection")]
    pub connection: ConnectionOptions,
    /// Seconds a job may stay with a silent worker before another takes it.
    #[serde(default = "default_claim_idle")]
    /// Zero (for tests) makes every worker take the others' running jobs:
    /// keep it well above a second with several workers.
    pub claim_idle_secs: Seconds,
    /// Deliveries of one job before it is given up.
    #[serde(default = "default_deliveries")]
    pub max_deliveries: u64,
}

/// `true`, for serde defaults.
pub(crate) fn yes() -> bool {
    true
}
/// The OpenAI API, the default of every OpenAI-compatible endpoint.
pub(crate) fn default_base_url() -> String {
    "https://api.openai.com/v1".into()
}
/// The chat model asked for whole JSON answers (the judge, extraction).
pub(crate) fn default_chat_model() -> String {
    "gpt-4o-mini".into()
}
/// Answers asked for before a malformed answer is given up on.
pub(crate) fn default_attempts() -> u32 {
    3
}
/// Timeouts of a request whose answer comes whole (60 s to respond).
pub(crate) fn whole_answer_connection() -> ConnectionOptions {
    ConnectionOptions {
        response_timeout_secs: Seconds::from_millis(60_000),
        read_timeout_secs: Seconds::from_millis(60_000),
        ..ConnectionOptions::default()
    }
}
fn default_claim_idle() -> Seconds {
    Seconds::from_millis(60_000)
}
fn default_deliveries() -> u64 {
    2
}

impl EvaluatorSection {
    /// The judge's endpoint, with the resolved key.
    pub fn endpoint(&self, api_key: Option<ApiKey>) -> Result<ApiEndpoint, BuildError> {
        ApiEndpoint::new(&self.base_url, api_key, &self.connection, "judge")
    }

    /// The judge's instructions.
    pub fn prompt(&self) -> String {
        self.prompt
            .clone()
            .unwrap_or_else(|| DEFAULT_JUDGE_PROMPT.to_owned())
    }

    /// How workers take jobs.
    pub fn worker_settings(&self) -> WorkerSettings {
        WorkerSettings {
            claim_idle: self.claim_idle_secs.duration(),
            max_deliveries: self.max_deliveries.max(1),
            ..WorkerSettings::default()
        }
    }
}
