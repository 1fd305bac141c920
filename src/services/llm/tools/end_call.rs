//! `end_call`: the bot says goodbye, then the session ends.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::tool::{Tool, ToolError, ToolOutcome, ToolSpec};

/// Ends the call once the bot has said goodbye: the LLM finishes its answer
/// (asking the model for a goodbye if it has not said one), then asks the
/// pipeline to end, so the goodbye plays out before the transport hangs up.
#[derive(Debug, Clone)]
pub struct EndCall {
    spec: ToolSpec,
}

impl EndCall {
    /// The tool, as the model sees it.
    pub fn new() -> Self {
        EndCall {
            spec: ToolSpec {
                name: "end_call".to_owned(),
                description: "End the call. Use it when the conversation is over or the user \
                              wants to hang up; say goodbye in the same answer."
                    .to_owned(),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "reason": {"type": "string", "description": "Why the call ends."}
                    }
                }),
            },
        }
    }
}

impl Default for EndCall {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Tool for EndCall {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, _arguments: Value) -> Result<ToolOutcome, ToolError> {
        Ok(ToolOutcome {
            ends_call: true,
            ..ToolOutcome::result("The call will end after your goodbye.")
        })
    }
}
