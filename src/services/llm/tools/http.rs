//! HTTP tools declared in TOML: the call POSTs its arguments as JSON to a
//! URL, and the response body is the result.
//!
//! ```toml
//! [[processor.http_tools]]
//! name = "get_weather"
//! description = "The weather in a city."
//! url = "https://tools.example.com/weather"
//! parameters = { type = "object", properties = { city = { type = "string" } }, required = ["city"] }
//! ```
//!
//! A tool call may have side effects, so it is never retried.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use crate::config::Seconds;
use crate::pipeline::{BuildError, SessionSetup};
use crate::services::http::{client, next_chunk};
use crate::services::url::check_http_url;
use crate::services::{ApiKey, Connection, ServiceError, error::error_message};

use super::tool::{Tool, ToolError, ToolOutcome, ToolSpec, is_tool_name};

/// The longest result kept, in bytes; the model does not need more.
const MAX_RESULT: usize = 16 * 1024;

/// `[[processor.http_tools]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpToolConfig {
    /// The name the model calls it by.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// Where the arguments are POSTed.
    pub url: String,
    /// Its arguments, as a JSON-schema object. Default: no arguments.
    #[serde(default = "no_parameters")]
    pub parameters: Value,
    /// The longest a call may take, in seconds (above 0, at most 300).
    /// Default: the LLM's
    /// `tool_timeout_secs`.
    #[serde(default)]
    pub timeout_secs: Option<Seconds<1, 300>>,
    /// Whether an interruption cancels a call in flight. Default true.
    #[serde(default = "default_true")]
    pub cancel_on_interruption: bool,
    /// Whether a preemptive reply may call it before the user's turn is
    /// confirmed over: true only for a tool without side effects (a
    /// lookup). Default false.
    #[serde(default)]
    pub safe_to_run_early: bool,
    /// A variable holding a token sent as `Authorization: Bearer`.
    #[serde(default)]
    pub api_key_env: Option<String>,
}

fn no_parameters() -> Value {
    serde_json::json!({"type": "object", "properties": {}})
}

fn default_true() -> bool {
    true
}

impl HttpToolConfig {
    /// The tool for one session.
    pub fn build(&self, setup: &SessionSetup) -> Result<HttpTool, BuildError> {
        let invalid =
            |message: String| BuildError::Invalid(format!("http tool `{}`: {message}", self.name));
        if !is_tool_name(&self.name) {
            return Err(invalid(
                "the name must be letters, digits, `_` or `-`".into(),
            ));
        }
        check_http_url("url", &self.url).map_err(|e| invalid(e.to_string()))?;
        if self.parameters.get("type").and_then(Value::as_str) != Some("object") {
            return Err(invalid(
                "parameters must be a JSON-schema object with type = \"object\"".into(),
            ));
        }
        let timeout = self.timeout_secs.map(Seconds::duration);
        Ok(HttpTool {
            spec: ToolSpec {
                name: self.name.clone(),
                description: self.description.clone(),
                parameters: self.parameters.clone(),
            },
            url: self.url.clone(),
            timeout,
            cancel_on_interruption: self.cancel_on_interruption,
            safe_to_run_early: self.safe_to_run_early,
            api_key: ApiKey::from_env(setup, "api_key_env", self.api_key_env.as_deref())?,
        })
    }
}

/// A tool served over HTTP. See the module docs.
#[derive(Debug)]
pub struct HttpTool {
    spec: ToolSpec,
    url: String,
    timeout: Option<Duration>,
    cancel_on_interruption: bool,
    safe_to_run_early: bool,
    api_key: Option<ApiKey>,
}

#[async_trait]
impl Tool for HttpTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn cancel_on_interruption(&self) -> bool {
        self.cancel_on_interruption
    }

    fn safe_to_run_early(&self) -> bool {
        self.safe_to_run_early
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    async fn call(&self, arguments: Value) -> Result<ToolOutcome, ToolError> {
        let mut request = client()?.post(&self.url).json(&arguments);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose());
        }
        // The caller bounds the whole call with the tool's timeout.
        let response = request.send().await.map_err(ServiceError::Request)?;
        let status = response.status();
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        let read_timeout = Connection::default().read_timeout;
        while body.len() < MAX_RESULT {
            match next_chunk(&mut stream, read_timeout).await? {
                Some(chunk) => body.extend_from_slice(&chunk),
                None => break,
            }
        }
        body.truncate(MAX_RESULT);
        if !status.is_success() {
            return Err(ServiceError::Status {
                status: status.as_u16(),
                message: error_message(&body),
                retry_after: None,
            }
            .into());
        }
        Ok(ToolOutcome::result(
            String::from_utf8_lossy(&body).into_owned(),
        ))
    }
}
