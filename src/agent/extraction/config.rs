//! `[extraction]`: the structured data to extract from each call.
//!
//! ```toml
//! [extraction]
//! enabled = true                              # default when the section is present
//! schema_file = "schemas/worker_profile.json" # relative to the pipeline file, or:
//! # schema = { type = "object", properties = { name = { type = "string" } } }
//! # schema = '{"type": "object", ...}'        # (a JSON string works too)
//! schema_name = "worker_profile"              # json_schema's `name`; default "extraction"
//! prompt = "You extract ..."                  # optional; the schema is appended
//! base_url = "https://api.openai.com/v1"      # as [evaluator]: any OpenAI-compatible server
//! model = "gpt-4o-mini"
//! api_key_env = "OPENAI_API_KEY"
//! connection = { response_timeout_secs = 60 }
//! max_attempts = 3                            # answers breaking the schema asked again
//! response_format = "json_schema"             # or "json_object", "none"
//! strict = true                               # json_schema's `strict`
//! webhook_event = "worker_profile_completed"  # the webhook's event_type; default call_completed
//! ```
//!
//! The schema is read and compiled when the pipeline is loaded (`voxpipe
//! check` reports a bad one, naming the file and the key); `webhook_event`
//! renames the call-completed webhook, which then carries the extraction.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::schema::ExtractionSchema;
use crate::agent::eval::{
    ApiEndpoint, default_attempts, default_base_url, default_chat_model, whole_answer_connection,
    yes,
};
use crate::pipeline::BuildError;
use crate::services::{ApiKey, ConnectionOptions};

/// What `response_format` the model is asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FormatKind {
    /// `{"type": "json_schema", ...}` (structured outputs), falling back to
    /// `json_object` when the server answers 400 to it.
    #[default]
    JsonSchema,
    /// `{"type": "json_object"}` (JSON mode); the schema is in the prompt.
    JsonObject,
    /// No `response_format`, for servers that refuse both.
    None,
}

/// `[extraction]`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractionSection {
    /// Extract from each call when it ends.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The JSON Schema inline: a table, or a string holding JSON.
    #[serde(default)]
    pub schema: Option<Value>,
    /// The JSON Schema's file, relative to the pipeline file.
    #[serde(default)]
    pub schema_file: Option<PathBuf>,
    /// The schema's name in a `json_schema` response format.
    #[serde(default = "default_schema_name")]
    pub schema_name: String,
    /// The model's instructions (the schema is appended).
    #[serde(default)]
    pub prompt: Option<String>,
    /// The OpenAI-compatible API.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The model.
    #[serde(default = "default_chat_model")]
    pub model: String,
    /// The variable holding the API key, if the server needs one.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Answers asked for before the call is recorded as unextracted.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// The `response_format` asked for.
    #[serde(default)]
    pub response_format: FormatKind,
    /// `strict` in a `json_schema` response format.
    #[serde(default = "yes")]
    pub strict: bool,
    /// The webhook's `event_type` (and `X-Voxpipe-Event`), if not
    /// `call_completed`.
    #[serde(default)]
    pub webhook_event: Option<String>,
    /// Timeouts and retries of each request (the services' `connection`
    /// table; 60 s to answer by default).
    #[serde(default = "whole_answer_connection")]
    pub connection: ConnectionOptions,
}

fn default_schema_name() -> String {
    "extraction".into()
}

/// The extraction's instructions when the TOML gives none.
pub const DEFAULT_EXTRACTION_PROMPT: &str = "\
You read the transcript of a phone call between a voice agent (\"assistant\") \
and a person (\"user\") and extract the information the JSON Schema below \
describes. Use only what was said in the call; where the schema allows null \
or leaves a field optional and the call did not say, leave it out or use \
null. Answer with one JSON object that the schema accepts, and nothing else.";

/// Something wrong with `[extraction]` found at load: the key and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionProblem {
    /// The dotted key, e.g. `extraction.schema_file`.
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

/// `[extraction]` with its schema read and compiled.
#[derive(Debug, Clone)]
pub struct ExtractionConfig {
    /// The section as written.
    pub section: ExtractionSection,
    /// The compiled schema.
    pub schema: ExtractionSchema,
}

impl ExtractionSection {
    /// Reads (`schema_file` relative to `base_dir`) and compiles the
    /// schema, and checks the other keys that serde cannot.
    pub fn load(&self, base_dir: &Path) -> Result<ExtractionConfig, SectionProblem> {
        let problem = |key, message| SectionProblem { key, message };
        let schema = match (&self.schema, &self.schema_file) {
            (Some(_), Some(_)) => {
                return Err(problem(
                    "extraction.schema_file",
                    "give `schema` or `schema_file`, not both".into(),
                ));
            }
            (None, None) => {
                return Err(problem(
                    "extraction",
                    "missing required key `schema` (or `schema_file`)".into(),
                ));
            }
            (Some(inline), None) => {
                let json = match inline {
                    Value::String(text) => serde_json::from_str(text)
                        .map_err(|err| problem("extraction.schema", format!("not JSON: {err}")))?,
                    other => other.clone(),
                };
                ExtractionSchema::compile(json).map_err(|msg| problem("extraction.schema", msg))?
            }
            (None, Some(file)) => {
                let path = base_dir.join(file);
                let shown = path.display();
                let text = std::fs::read_to_string(&path).map_err(|err| {
                    problem(
                        "extraction.schema_file",
                        format!("cannot read {shown}: {err}"),
                    )
                })?;
                let json = serde_json::from_str(&text).map_err(|err| {
                    problem(
                        "extraction.schema_file",
                        format!("{shown}: not JSON: {err}"),
                    )
                })?;
                ExtractionSchema::compile(json)
                    .map_err(|msg| problem("extraction.schema_file", format!("{shown}: {msg}")))?
            }
        };
        let name_ok = (1..=64).contains(&self.schema_name.len())
            && self
                .schema_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok {
            return Err(problem(
                "extraction.schema_name",
                "expected 1 to 64 letters, digits, `_` or `-`".into(),
            ));
        }
        if self
            .webhook_event
            .as_ref()
            .is_some_and(|e| e.trim().is_empty())
        {
            return Err(problem(
                "extraction.webhook_event",
                "expected a non-empty event name".into(),
            ));
        }
        Ok(ExtractionConfig {
            section: self.clone(),
            schema,
        })
    }

    /// The model's endpoint, with the resolved key.
    pub fn endpoint(&self, api_key: Option<ApiKey>) -> Result<ApiEndpoint, BuildError> {
        ApiEndpoint::new(&self.base_url, api_key, &self.connection, "extraction")
    }

    /// The model's instructions, without the schema.
    pub fn prompt(&self) -> &str {
        self.prompt.as_deref().unwrap_or(DEFAULT_EXTRACTION_PROMPT)
    }
}
