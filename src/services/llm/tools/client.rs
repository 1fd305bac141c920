//! Client tools declared in TOML: the model calls them, the client app
//! runs them (in the browser, say: the user's location, what is on the
//! screen) and sends the result back.
//!
//! ```toml
//! [[processor.client_tools]]
//! name = "get_location"
//! description = "Where the user is, from their browser."
//! parameters = { type = "object", properties = {} }
//! timeout_secs = 10   # default: the LLM's tool_timeout_secs
//! ```
//!
//! The call goes out as every call does, as a `FunctionCallInProgress`
//! frame (over RTVI, `llm-function-call-in-progress`, which fires the
//! client's handler registered for the name); the client's answer comes
//! back as a `ClientToolResult` frame (RTVI `llm-function-call-result`),
//! which the LLM hands to [`ClientToolCalls`]. The model reads the result
//! as the tool's; no answer within the timeout is a tool error, as for any
//! tool. A result may arrive before the call waits for it (frames of the
//! system lane overtake others): it is kept until then, at most
//! `MAX_EARLY` of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::config::Seconds;
use crate::pipeline::BuildError;

use super::super::tool_schema::check_schema;
use super::tool::{Tool, ToolError, ToolOutcome, ToolSpec, is_tool_name};

/// Results kept for calls not yet waiting, at most.
const MAX_EARLY: usize = 64;

/// `[[processor.client_tools]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientToolConfig {
    /// The name the model calls it by (and the client registers a handler
    /// for).
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// Its arguments, as a JSON-schema object. Default: no arguments.
    #[serde(default = "empty_object_schema")]
    pub parameters: Value,
    /// The longest the client may take, in seconds (above 0, at most
    /// 300). Default: the LLM's `tool_timeout_secs`.
    #[serde(default)]
    pub timeout_secs: Option<Seconds<1, 300>>,
}

fn empty_object_schema() -> Value {
    serde_json::json!({"type": "object", "properties": {}})
}

impl ClientToolConfig {
    /// The tool for one session, waiting on that session's `calls`.
    ///
    /// # Errors
    /// A name the model cannot call, or parameters that are not an object
    /// schema or do not compile.
    pub fn build(&self, calls: Arc<ClientToolCalls>) -> Result<ClientTool, BuildError> {
        let name_ok = is_tool_name(&self.name);
        let object = self.parameters.get("type").and_then(Value::as_str) == Some("object");
        if !name_ok || !object {
            return Err(BuildError::Invalid(format!(
                "client tool `{}`: the name must be letters, digits, `_` or `-`, \
                 and parameters a JSON-schema object (type = \"object\")",
                self.name
            )));
        }
        check_schema(&self.parameters).map_err(|e| {
            BuildError::Invalid(format!(
                "client tool `{}`: parameters is not a valid JSON Schema: {e}",
                self.name
            ))
        })?;
        Ok(ClientTool {
            spec: ToolSpec {
                name: self.name.clone(),
                description: self.description.clone(),
                parameters: self.parameters.clone(),
            },
            timeout: self.timeout_secs.map(Seconds::duration),
            calls,
        })
    }
}

enum Slot {
    Waiting(oneshot::Sender<String>),
    Arrived(String),
}

/// A session's client tool calls and the results the client sent, by
/// tool call id.
#[derive(Default)]
pub struct ClientToolCalls {
    slots: Mutex<HashMap<String, Slot>>,
}

impl std::fmt::Debug for ClientToolCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientToolCalls")
    }
}

impl ClientToolCalls {
    /// The client's result for the call `tool_call_id`.
    pub fn deliver(&self, tool_call_id: &str, result: String) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        match slots.remove(tool_call_id) {
            Some(Slot::Waiting(waiter)) => {
                // The call may have timed out meanwhile: nobody to tell.
                let _gone = waiter.send(result);
            }
            Some(Slot::Arrived(_)) | None => {
                let early = slots
                    .values()
                    .filter(|s| matches!(s, Slot::Arrived(_)))
                    .count();
                if early >= MAX_EARLY {
                    tracing::warn!(tool_call_id, "client tool result for no call; dropped");
                    return;
                }
                slots.insert(tool_call_id.to_owned(), Slot::Arrived(result));
            }
        }
    }

    /// Waits for the result of the call `tool_call_id`.
    async fn wait(&self, tool_call_id: &str) -> Result<String, ToolError> {
        let receiver = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(Slot::Arrived(result)) = slots.remove(tool_call_id) {
                return Ok(result);
            }
            let (sender, receiver) = oneshot::channel();
            slots.insert(tool_call_id.to_owned(), Slot::Waiting(sender));
            receiver
        };
        let forget = Forget {
            calls: self,
            id: tool_call_id,
        };
        let result = receiver
            .await
            .map_err(|_| ToolError::Failed("the client's answer was lost".into()));
        drop(forget);
        result
    }
}

/// Removes a call's slot however its wait ends (answered, timed out,
/// cancelled).
struct Forget<'a> {
    calls: &'a ClientToolCalls,
    id: &'a str,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        let mut slots = self.calls.slots.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(slots.get(self.id), Some(Slot::Waiting(_))) {
            slots.remove(self.id);
        }
    }
}

/// A tool the client app runs. See the module docs.
#[derive(Debug)]
pub struct ClientTool {
    spec: ToolSpec,
    timeout: Option<Duration>,
    calls: Arc<ClientToolCalls>,
}

#[async_trait]
impl Tool for ClientTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    async fn call(&self, _arguments: Value) -> Result<ToolOutcome, ToolError> {
        Err(ToolError::Failed(
            "a client tool is called with its call id".into(),
        ))
    }

    async fn call_with_id(
        &self,
        call_id: &str,
        _arguments: Value,
    ) -> Result<ToolOutcome, ToolError> {
        self.calls.wait(call_id).await.map(ToolOutcome::result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(calls: &Arc<ClientToolCalls>) -> ClientTool {
        let config: ClientToolConfig =
            toml::from_str("name = \"where\"\ndescription = \"d\"").unwrap();
        config.build(Arc::clone(calls)).unwrap()
    }

    #[tokio::test]
    async fn a_result_reaches_the_call_waiting_for_it_or_waits_for_the_call() {
        let calls = Arc::new(ClientToolCalls::default());
        let tool = tool(&calls);
        let waiting = tokio::spawn({
            let calls = Arc::clone(&calls);
            async move { calls.wait("c1").await }
        });
        tokio::task::yield_now().await;
        while calls.slots.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        calls.deliver("c1", "{\"city\":\"Oslo\"}".into());
        assert_eq!(waiting.await.unwrap().unwrap(), "{\"city\":\"Oslo\"}");
        // Early: the result came first.
        calls.deliver("c2", "early".into());
        let outcome = tool.call_with_id("c2", Value::Null).await.unwrap();
        assert_eq!(outcome.result, "early");
        assert!(calls.slots.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_that_ends_forgets_its_call_and_early_results_are_bounded() {
        let calls = Arc::new(ClientToolCalls::default());
        let waited = tokio::time::timeout(Duration::from_secs(1), calls.wait("c1")).await;
        assert!(waited.is_err());
        assert!(
            calls.slots.lock().unwrap().is_empty(),
            "no slot left behind"
        );
        for n in 0..MAX_EARLY + 10 {
            calls.deliver(&format!("x{n}"), String::new());
        }
        assert_eq!(calls.slots.lock().unwrap().len(), MAX_EARLY);
    }

    #[test]
    fn bad_declarations_are_refused() {
        let calls = Arc::new(ClientToolCalls::default());
        for toml in [
            "name = \"a b\"\ndescription = \"d\"",
            "name = \"ok\"\ndescription = \"d\"\nparameters = { type = \"string\" }",
            "name = \"ok\"\ndescription = \"d\"\n\
             parameters = { type = \"object\", properties = { a = { type = \"nonsense\" } } }",
        ] {
            let config: ClientToolConfig = toml::from_str(toml).unwrap();
            assert!(config.build(Arc::clone(&calls)).is_err(), "{toml}");
        }
    }
}
