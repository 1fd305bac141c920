//! The [`Tool`] trait and what a call returns.

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

/// How the model sees a tool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    /// The name the model calls it by.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// Its arguments, as a JSON-schema object.
    pub parameters: Value,
}

/// Whether the model can call a tool by `name`: letters, digits, `_` or `-`.
pub(crate) fn is_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What a tool call produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutcome {
    /// The result the model reads (JSON or text).
    pub result: String,
    /// The call should end once the bot has answered (said goodbye).
    pub ends_call: bool,
    /// Data for the client app (a `ServerMessage` frame: RTVI
    /// `server-message`), pushed just before the result.
    pub server_message: Option<Value>,
}

impl ToolOutcome {
    /// A plain result.
    pub fn result(result: impl Into<String>) -> Self {
        ToolOutcome {
            result: result.into(),
            ends_call: false,
            server_message: None,
        }
    }

    /// The same, sending `data` to the client app too.
    pub fn with_server_message(mut self, data: Value) -> Self {
        self.server_message = Some(data);
        self
    }
}

/// Why a tool call failed; the model is told, so it can recover.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// The tool ran and failed.
    #[error("{0}")]
    Failed(String),
    /// The tool's service failed.
    #[error(transparent)]
    Service(#[from] crate::services::ServiceError),
}

impl std::fmt::Debug for dyn Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tool({})", self.spec().name)
    }
}

/// A tool the LLM can call.
#[async_trait]
pub trait Tool: Send + Sync + 'static {
    /// Its name, description and parameters.
    fn spec(&self) -> &ToolSpec;

    /// Whether a user interruption cancels a call in flight (default). A
    /// tool with side effects that must complete (booking, payment) says
    /// no: its result is still recorded when it comes.
    fn cancel_on_interruption(&self) -> bool {
        true
    }

    /// Whether it is without side effects (a lookup), so that running it
    /// again or for nothing does no harm. This decides two things: whether
    /// a preemptive reply (prepared before the user's turn is confirmed
    /// over, and maybe discarded) may call it at once (the others, the
    /// default, wait for the turn's end before they run); and whether a
    /// reflection rewrite is offered it (the others are not, and a
    /// rewrite's call to one is answered without running it: see
    /// `reflection`).
    fn safe_to_run_early(&self) -> bool {
        false
    }

    /// How long a call may take; `None` uses the LLM's `tool_timeout_secs`.
    fn timeout(&self) -> Option<Duration> {
        None
    }

    /// Runs the tool with arguments already checked against its schema.
    async fn call(&self, arguments: Value) -> Result<ToolOutcome, ToolError>;

    /// Runs the tool for the call the model named `call_id`. Most tools do
    /// not need the id and implement [`Tool::call`] only; a tool whose
    /// result comes back by the call's id (a client tool) overrides this.
    async fn call_with_id(
        &self,
        call_id: &str,
        arguments: Value,
    ) -> Result<ToolOutcome, ToolError> {
        let _anonymous = call_id;
        self.call(arguments).await
    }
}
