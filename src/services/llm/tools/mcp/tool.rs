//! [`McpTool`]: one tool of an MCP server, as the LLM sees and calls it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rmcp::model::Tool as McpToolDef;
use serde_json::Value;

use super::super::super::tool_schema::check_schema;
use super::super::tool::{Tool, ToolError, ToolOutcome, ToolSpec};
use super::config::model_name;
use super::connection::{McpError, McpServer};
use super::result::result_text;

/// The longest tool name OpenAI-compatible APIs take.
const MAX_NAME: usize = 64;

/// What the tool runner's own timeout adds to an MCP tool's: the tool
/// times its calls itself (a timeout counts towards closing a hung
/// connection, see `connection.rs`), so the runner's is only a backstop.
const BACKSTOP: Duration = Duration::from_secs(1);

/// A tool of an MCP server. Its name is the server's, after the server's
/// `tool_prefix`, with characters the model's API refuses made `_`.
#[derive(Debug)]
pub(crate) struct McpTool {
    server: Arc<McpServer>,
    /// The server's name for it.
    remote_name: String,
    spec: ToolSpec,
    /// The longest a call may take.
    limit: Duration,
}

#[async_trait]
impl Tool for McpTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn cancel_on_interruption(&self) -> bool {
        self.server.settings.cancel_on_interruption
    }

    fn timeout(&self) -> Option<Duration> {
        Some(self.limit + BACKSTOP)
    }

    async fn call(&self, arguments: Value) -> Result<ToolOutcome, ToolError> {
        let Value::Object(arguments) = arguments else {
            return Err(ToolError::Failed(
                "the arguments are not a JSON object".into(),
            ));
        };
        let result = self
            .server
            .call(&self.remote_name, arguments, self.limit)
            .await
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        result_text(&result)
            .map(ToolOutcome::result)
            .map_err(|error| {
                tracing::info!(
                    server = %self.server.settings.name,
                    tool = %self.remote_name,
                    "the MCP tool reported an error"
                );
                ToolError::Failed(error)
            })
    }
}

/// The tools of `server` a session may use: listed by the server (or as it
/// listed them before on this connection), kept to the allow-list, named
/// for the model. A tool that cannot be offered (its schema does not
/// compile, say) is left out with a logged reason. A call may take the
/// server's `timeout`, else `call_timeout` (the LLM's).
///
/// Waits at most the server's `connect_timeout` in all: a session start
/// is not held longer by a slow server, whose listing goes on in the
/// background for the next session.
pub(crate) async fn session_tools(
    server: &Arc<McpServer>,
    call_timeout: Duration,
) -> Result<Vec<Arc<dyn Tool>>, McpError> {
    let settings = &server.settings;
    let limit = settings.connect_timeout;
    let listed = tokio::time::timeout(limit, server.list_tools())
        .await
        .map_err(|_| McpError::Timeout {
            server: settings.name.clone(),
            what: "tool list",
            limit,
        })??;
    let settings = &server.settings;
    if let Some(allowed) = &settings.allowed {
        for name in allowed
            .iter()
            .filter(|n| !listed.iter().any(|t| t.name == **n))
        {
            tracing::warn!(server = %settings.name, tool = %name, "an allowed tool is not on the server");
        }
    }
    let mut tools: Vec<Arc<dyn Tool>> = Vec::new();
    for def in listed.iter().filter(|t| {
        settings
            .allowed
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|n| *n == t.name))
    }) {
        match spec_of(&settings.tool_prefix, def) {
            Ok(spec) => tools.push(Arc::new(McpTool {
                server: Arc::clone(server),
                remote_name: def.name.to_string(),
                spec,
                limit: settings.timeout.unwrap_or(call_timeout),
            })),
            Err(reason) => {
                tracing::warn!(server = %settings.name, tool = %def.name, %reason, "MCP tool left out");
            }
        }
    }
    Ok(tools)
}

/// How the model sees `def`, or why it cannot.
fn spec_of(prefix: &str, def: &McpToolDef) -> Result<ToolSpec, String> {
    let name = model_name(prefix, &def.name);
    if def.name.is_empty() || name.len() > MAX_NAME {
        return Err(format!(
            "its name must be 1 to {MAX_NAME} characters with the prefix"
        ));
    }
    let mut parameters = Value::Object((*def.input_schema).clone());
    match parameters.get("type") {
        None => {
            parameters["type"] = Value::from("object");
        }
        Some(Value::String(t)) if t == "object" => {}
        Some(other) => return Err(format!("its input schema is of type {other}, not object")),
    }
    // Not run with its arguments unchecked.
    check_schema(&parameters).map_err(|e| format!("its input schema does not compile: {e}"))?;
    let description = def
        .description
        .as_deref()
        .or(def.title.as_deref())
        .unwrap_or_default()
        .to_owned();
    Ok(ToolSpec {
        name,
        description,
        parameters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(value: Value) -> McpToolDef {
        serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn names_are_prefixed_and_made_acceptable_to_the_model() {
        let spec = spec_of(
            "gh_",
            &def(
                json!({"name": "repos.list/all", "description": "Lists.", "inputSchema": {"type": "object"}}),
            ),
        );
        assert_eq!(
            spec.map(|s| (s.name, s.description)),
            Ok(("gh_repos_list_all".to_owned(), "Lists.".to_owned()))
        );
        let long = "x".repeat(MAX_NAME);
        assert!(spec_of("p_", &def(json!({"name": long, "inputSchema": {}}))).is_err());
    }

    #[test]
    fn a_schema_without_a_type_is_an_object_and_one_of_another_type_is_refused() {
        let spec = spec_of(
            "",
            &def(
                json!({"name": "t", "title": "T", "inputSchema": {"properties": {"a": {"type": "string"}}}}),
            ),
        );
        assert_eq!(
            spec.map(|s| (s.description, s.parameters)),
            Ok((
                "T".to_owned(),
                json!({"properties": {"a": {"type": "string"}}, "type": "object"})
            ))
        );
        assert!(
            spec_of(
                "",
                &def(json!({"name": "t", "inputSchema": {"type": "array"}}))
            )
            .is_err()
        );
    }

    #[test]
    fn a_tool_whose_schema_does_not_compile_is_left_out() {
        let broken = def(json!({"name": "t", "inputSchema": {
            "type": "object", "properties": {"a": {"type": "nonsense"}}
        }}));
        let reason = spec_of("", &broken).unwrap_err();
        assert!(
            reason.starts_with("its input schema does not compile"),
            "{reason}"
        );
    }
}
