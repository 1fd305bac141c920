//! `[[processor.mcp_servers]]`: an MCP server whose tools the LLM may call.
//!
//! Everything that can be checked without starting the server is checked
//! while the file is read (so `voxpipe check` reports it with file, line
//! and key): unknown keys, wrong types, `command` and `url` both or neither
//! set, keys of the other transport, names. Variables (`pass_env`,
//! `bearer_token_env`, `headers_env`) are read when a session is built, like
//! every `*_env` key.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use serde::Deserialize;

use crate::config::Seconds;
use crate::pipeline::{BuildError, SessionSetup};
use crate::services::ApiKey;

use super::connection::{McpServer, ServerSettings};
use super::connector::Connector;

/// `[[processor.mcp_servers]]`. See the module docs of
/// [`crate::services::llm::tools::mcp`].
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "McpServerTable")]
pub struct McpServerConfig {
    /// The server's name, in logs and in the errors the model reads.
    pub name: String,
    /// How to reach it.
    pub transport: McpTransportConfig,
    /// The server's tools the model may call, by the server's names; `None`:
    /// all of them.
    pub tools: Option<Vec<String>>,
    /// Put before each tool's name as the model sees it, e.g. `github_`.
    pub tool_prefix: String,
    /// The longest a call may take; `None`: the LLM's `tool_timeout_secs`.
    pub timeout: Option<Duration>,
    /// The longest starting or connecting to the server and listing its
    /// tools may take.
    pub connect_timeout: Duration,
    /// Whether an interruption cancels a call in flight.
    pub cancel_on_interruption: bool,
    /// The connection, made by the first build and shared by the later
    /// ones (clones of this config share it too).
    shared: Arc<OnceLock<Arc<McpServer>>>,
}

/// How an MCP server is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpTransportConfig {
    /// A child process speaking MCP on its stdin and stdout.
    Stdio {
        /// The program.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Variables set for it, with their values.
        env: BTreeMap<String, String>,
        /// Variables passed from voxpipe's environment (it gets no others
        /// but `HOME`, `LOGNAME`, `PATH`, `SHELL`, `TERM`, `USER`).
        pass_env: Vec<String>,
    },
    /// A streamable HTTP endpoint.
    Http {
        /// The endpoint, e.g. `https://tools.example.com/mcp`.
        url: String,
        /// A variable holding a token sent as `Authorization: Bearer`.
        bearer_token_env: Option<String>,
        /// Headers sent with every request, each to the value of the
        /// variable named.
        headers_env: BTreeMap<String, String>,
    },
}

/// The table as written; [`McpServerConfig`] is it checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct McpServerTable {
    name: String,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    args: Option<Vec<String>>,
    #[serde(default)]
    env: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pass_env: Option<Vec<String>>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    bearer_token_env: Option<String>,
    #[serde(default)]
    headers_env: Option<BTreeMap<String, String>>,
    #[serde(default)]
    tools: Option<Vec<String>>,
    #[serde(default)]
    tool_prefix: String,
    #[serde(default)]
    timeout_secs: Option<Seconds<1, 300>>,
    #[serde(default = "default_connect_timeout")]
    connect_timeout_secs: Seconds<1, 300>,
    #[serde(default = "default_true")]
    cancel_on_interruption: bool,
}

fn default_connect_timeout() -> Seconds<1, 300> {
    Seconds::from_millis(10_000)
}

fn default_true() -> bool {
    true
}

/// Whether `name` can be part of a tool name the model sees: letters,
/// digits, `_` and `-`, as OpenAI-compatible APIs require.
pub(crate) fn is_tool_name_part(name: &str) -> bool {
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The name the model calls a server's tool `remote` by: after `prefix`,
/// with characters the model's API refuses made `_`.
pub(crate) fn model_name(prefix: &str, remote: &str) -> String {
    prefix
        .chars()
        .chain(remote.chars().map(|c| {
            if is_tool_name_part(c.encode_utf8(&mut [0; 4])) {
                c
            } else {
                '_'
            }
        }))
        .collect()
}

impl TryFrom<McpServerTable> for McpServerConfig {
    type Error = String;

    fn try_from(table: McpServerTable) -> Result<Self, String> {
        let name = table.name;
        let bad = |message: String| format!("mcp server `{name}`: {message}");
        if name.is_empty() || !is_tool_name_part(&name) {
            return Err(bad("the name must be letters, digits, `_` or `-`".into()));
        }
        if !is_tool_name_part(&table.tool_prefix) {
            return Err(bad("tool_prefix must be letters, digits, `_` or `-`".into()));
        }
        let transport = match (table.command, table.url) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "set `command` (a server run as a child process) or `url` (a streamable \
                     HTTP server), not both"
                        .into(),
                ));
            }
            (None, None) => {
                return Err(bad(
                    "set `command` (a server run as a child process) or `url` (a streamable \
                     HTTP server)"
                        .into(),
                ));
            }
            (Some(command), None) => {
                for (key, set) in [
                    ("bearer_token_env", table.bearer_token_env.is_some()),
                    ("headers_env", table.headers_env.is_some()),
                ] {
                    if set {
                        return Err(bad(format!("`{key}` is for a server with a `url`")));
                    }
                }
                if command.is_empty() {
                    return Err(bad("`command` is empty".into()));
                }
                McpTransportConfig::Stdio {
                    command,
                    args: table.args.unwrap_or_default(),
                    env: table.env.unwrap_or_default(),
                    pass_env: table.pass_env.unwrap_or_default(),
                }
            }
            (None, Some(url)) => {
                for (key, set) in [
                    ("args", table.args.is_some()),
                    ("env", table.env.is_some()),
                    ("pass_env", table.pass_env.is_some()),
                ] {
                    if set {
                        return Err(bad(format!("`{key}` is for a server with a `command`")));
                    }
                }
                if !["http://", "https://"]
                    .iter()
                    .any(|s| url.starts_with(s) && url.len() > s.len())
                {
                    return Err(bad(format!(
                        "url must start with http:// or https://, not `{url}`"
                    )));
                }
                let headers_env = table.headers_env.unwrap_or_default();
                if let Some(header) = headers_env
                    .keys()
                    .find(|h| HeaderName::from_bytes(h.as_bytes()).is_err())
                {
                    return Err(bad(format!("headers_env: `{header}` is not a header name")));
                }
                McpTransportConfig::Http {
                    url,
                    bearer_token_env: table.bearer_token_env,
                    headers_env,
                }
            }
        };
        Ok(McpServerConfig {
            name,
            transport,
            tools: table.tools,
            tool_prefix: table.tool_prefix,
            timeout: table.timeout_secs.map(Seconds::duration),
            connect_timeout: table.connect_timeout_secs.duration(),
            cancel_on_interruption: table.cancel_on_interruption,
            shared: Arc::default(),
        })
    }
}

/// The variables a child process inherits from voxpipe without being
/// named, as the official TypeScript SDK's stdio client does: enough to
/// find and run programs, and none of voxpipe's secrets.
const INHERITED_ENV: [&str; 6] = ["HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER"];

impl McpServerConfig {
    /// Whether the server may offer the model a tool named `name`, as far
    /// as can be told without asking it: the name must start with its
    /// `tool_prefix` and, with an allow-list, be one of its tools.
    pub(crate) fn may_provide(&self, name: &str) -> bool {
        let Some(rest) = name.strip_prefix(self.tool_prefix.as_str()) else {
            return false;
        };
        match &self.tools {
            Some(allowed) => allowed
                .iter()
                .any(|tool| model_name(&self.tool_prefix, tool) == name),
            None => !rest.is_empty(),
        }
    }

    /// The server for a session: the process's shared connection, made by
    /// the first build; a build starts connecting in the background unless
    /// a warm-up has run. The check at load builds every processor in a
    /// runtime of its own that runs nothing, so `voxpipe serve` warms up
    /// again in its own ([`ProcessorFactory::warm_up`]), and `run`'s
    /// session builds it. Variables are read here, so one that is not set
    /// fails the build like any `*_env` key.
    ///
    /// [`ProcessorFactory::warm_up`]: crate::pipeline::ProcessorFactory::warm_up
    pub(crate) fn build(&self, setup: &SessionSetup) -> Result<Arc<McpServer>, BuildError> {
        let connector = self.connector(setup)?;
        let server = self.shared.get_or_init(|| {
            Arc::new(McpServer::new(ServerSettings {
                name: self.name.clone(),
                connector,
                allowed: self.tools.clone(),
                tool_prefix: self.tool_prefix.clone(),
                timeout: self.timeout,
                connect_timeout: self.connect_timeout,
                cancel_on_interruption: self.cancel_on_interruption,
            }))
        });
        server.warm_up();
        Ok(Arc::clone(server))
    }

    fn connector(&self, setup: &SessionSetup) -> Result<Connector, BuildError> {
        match &self.transport {
            McpTransportConfig::Stdio {
                command,
                args,
                env,
                pass_env,
            } => {
                let mut vars: BTreeMap<String, String> = INHERITED_ENV
                    .iter()
                    .filter_map(|var| setup.env.get(var).map(|v| ((*var).to_owned(), v)))
                    .collect();
                for var in pass_env {
                    vars.insert(var.clone(), setup.env_var("pass_env", var)?);
                }
                vars.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
                Ok(Connector::Stdio {
                    command: command.clone(),
                    args: args.clone(),
                    env: vars,
                })
            }
            McpTransportConfig::Http {
                url,
                bearer_token_env,
                headers_env,
            } => {
                let bearer_token =
                    ApiKey::from_env(setup, "bearer_token_env", bearer_token_env.as_deref())?;
                let mut headers = Vec::with_capacity(headers_env.len());
                for (header, var) in headers_env {
                    let value = setup.env_var("headers_env", var)?;
                    let name = HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
                        BuildError::Invalid(format!("headers_env: `{header}` is not a header name"))
                    })?;
                    let mut value = HeaderValue::from_str(&value).map_err(|_| {
                        BuildError::Invalid(format!(
                            "the variable {var} (for the header `{header}`) is not a valid \
                             header value"
                        ))
                    })?;
                    value.set_sensitive(true);
                    headers.push((name, value));
                }
                Ok(Connector::Http {
                    url: url.clone(),
                    bearer_token,
                    headers,
                })
            }
        }
    }
}
