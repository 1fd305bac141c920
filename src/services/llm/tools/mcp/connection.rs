//! [`McpServer`]: the one connection of a process to one MCP server,
//! opened when first needed, shared by every session, opened again when it
//! is found closed.

use std::collections::BTreeMap;
use std::fmt;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
    JsonObject, Tool as McpToolDef,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::common::client_side_sse::ExponentialBackoff;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, RoleClient, ServiceError as RmcpError, ServiceExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::services::ApiKey;
use crate::services::retry::jitter;

use super::restarts::Restarts;

/// How to open a connection: variables already read.
pub(crate) enum Connector {
    /// Run `command` with `args` in an environment holding only `env`.
    Stdio {
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
    },
    /// Speak streamable HTTP to `url`.
    Http {
        url: String,
        bearer_token: Option<ApiKey>,
        headers: Vec<(HeaderName, HeaderValue)>,
    },
}

impl fmt::Debug for Connector {
    // Variables and headers may hold secrets: only their names are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Connector::Stdio { command, args, env } => f
                .debug_struct("Stdio")
                .field("command", command)
                .field("args", args)
                .field("env", &env.keys().collect::<Vec<_>>())
                .finish(),
            Connector::Http {
                url,
                bearer_token,
                headers,
            } => f
                .debug_struct("Http")
                .field("url", url)
                .field("bearer_token", &bearer_token.is_some())
                .field(
                    "headers",
                    &headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
                )
                .finish(),
        }
    }
}

/// What a server's tools are made from (see [`McpServerConfig`](super::McpServerConfig)).
#[derive(Debug)]
pub(crate) struct ServerSettings {
    pub(crate) name: String,
    pub(crate) connector: Connector,
    pub(crate) allowed: Option<Vec<String>>,
    pub(crate) tool_prefix: String,
    pub(crate) timeout: Option<Duration>,
    pub(crate) connect_timeout: Duration,
    pub(crate) cancel_on_interruption: bool,
}

/// Why a server could not serve a request; the model reads it as the
/// tool's error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum McpError {
    /// Starting or connecting failed.
    #[error("the MCP server `{server}` could not be started or reached: {reason}")]
    Connect { server: String, reason: String },
    /// Starting or connecting failed lately; not tried again yet.
    #[error("the MCP server `{server}` is unavailable; it is tried again in {retry_in:.1?}")]
    Backoff { server: String, retry_in: Duration },
    /// The connection closed during the request (the server crashed).
    #[error("the MCP server `{server}` closed the connection during the call: {reason}")]
    Lost { server: String, reason: String },
    /// The server answered with a JSON-RPC error.
    #[error("the MCP server `{server}` refused the request: {message}")]
    Refused { server: String, message: String },
    /// The server did not answer in time.
    #[error("the MCP server `{server}` gave no {what} within {limit:?}")]
    Timeout {
        server: String,
        what: &'static str,
        limit: Duration,
    },
    /// The server answered with something that is not the expected result.
    #[error("the MCP server `{server}` answered with something that is not a result: {reason}")]
    Malformed { server: String, reason: String },
}

/// Our side of the protocol: who we are, and a flag raised when the
/// server says its tools changed.
#[derive(Clone)]
struct Handler {
    tools_changed: Arc<AtomicBool>,
}

impl ClientHandler for Handler {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.tools_changed.store(true, Ordering::Relaxed);
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("voxpipe", env!("CARGO_PKG_VERSION")),
        )
    }
}

type Client = RunningService<RoleClient, Handler>;

/// An open connection and what it has told us.
struct Open {
    client: Arc<Client>,
    tools_changed: Arc<AtomicBool>,
    tools: Option<Arc<[McpToolDef]>>,
}

#[derive(Default)]
struct State {
    open: Option<Open>,
    restarts: Restarts,
}

/// The one connection of the process to an MCP server. See the module
/// docs of [`crate::services::llm::tools::mcp`].
pub struct McpServer {
    pub(crate) settings: ServerSettings,
    state: Mutex<State>,
}

impl fmt::Debug for McpServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpServer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl McpServer {
    pub(crate) fn new(settings: ServerSettings) -> Self {
        McpServer {
            settings,
            state: Mutex::new(State::default()),
        }
    }

    fn name(&self) -> &str {
        &self.settings.name
    }

    /// Starts connecting and listing the tools in the background, if there
    /// is a runtime: a server launched with `npx` takes seconds to start,
    /// which the first call should not wait for.
    pub(crate) fn warm_up(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let server = Arc::clone(self);
        runtime.spawn(async move {
            if let Err(error) = server.list_tools().await {
                tracing::warn!(%error, "MCP server not ready at start");
            }
        });
    }

    /// The server's tools, as it listed them on this connection (listed
    /// again after a reconnect, or when it said they changed).
    pub(crate) async fn list_tools(&self) -> Result<Arc<[McpToolDef]>, McpError> {
        let mut state = self.state.lock().await;
        let client = self.connected(&mut state).await?;
        if let Some(open) = state.open.as_mut() {
            if open.tools_changed.swap(false, Ordering::Relaxed) {
                open.tools = None;
            }
            if let Some(tools) = &open.tools {
                return Ok(Arc::clone(tools));
            }
        }
        let limit = self.settings.connect_timeout;
        match tokio::time::timeout(limit, client.peer().list_all_tools()).await {
            Ok(Ok(tools)) => {
                let tools: Arc<[McpToolDef]> = tools.into();
                if let Some(open) = state.open.as_mut() {
                    open.tools = Some(Arc::clone(&tools));
                }
                Ok(tools)
            }
            Ok(Err(error)) => {
                let error = self.request_failed(error);
                if matches!(error, McpError::Lost { .. }) {
                    state.open = None;
                }
                Err(error)
            }
            Err(_) => Err(McpError::Timeout {
                server: self.name().to_owned(),
                what: "tool list",
                limit,
            }),
        }
    }

    /// Calls the tool the server names `name`. Not bounded here: the
    /// caller's timeout or cancellation drops the future, and rmcp then
    /// tells the server the request is cancelled.
    pub(crate) async fn call(
        &self,
        name: &str,
        arguments: JsonObject,
    ) -> Result<CallToolResult, McpError> {
        let client = {
            let mut state = self.state.lock().await;
            self.connected(&mut state).await?
        };
        let params = CallToolRequestParams::new(name.to_owned()).with_arguments(arguments);
        match client.peer().call_tool(params).await {
            Ok(result) => Ok(result),
            Err(error) => {
                let error = self.request_failed(error);
                if matches!(error, McpError::Lost { .. }) {
                    self.forget(&client).await;
                }
                Err(error)
            }
        }
    }

    /// The open connection, opening one if there is none or it closed.
    async fn connected(&self, state: &mut State) -> Result<Arc<Client>, McpError> {
        if let Some(open) = &state.open {
            if !open.client.is_closed() && !open.client.peer().is_transport_closed() {
                return Ok(Arc::clone(&open.client));
            }
            tracing::warn!(
                server = self.name(),
                "the MCP connection closed; opening it again"
            );
            state.open = None;
        }
        let now = Instant::now();
        if let Err(retry_in) = state.restarts.check(now) {
            return Err(McpError::Backoff {
                server: self.name().to_owned(),
                retry_in,
            });
        }
        let tools_changed = Arc::new(AtomicBool::new(false));
        let handler = Handler {
            tools_changed: Arc::clone(&tools_changed),
        };
        let opened = tokio::time::timeout(
            self.settings.connect_timeout,
            self.settings.connector.connect(self.name(), handler),
        )
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer to the handshake within {:?}",
                self.settings.connect_timeout
            ))
        });
        match opened {
            Ok(client) => {
                tracing::info!(server = self.name(), "MCP server connected");
                let client = Arc::new(client);
                state.restarts.handle_success();
                state.open = Some(Open {
                    client: Arc::clone(&client),
                    tools_changed,
                    tools: None,
                });
                Ok(client)
            }
            Err(reason) => {
                let backoff = state.restarts.handle_failure(now, jitter());
                tracing::warn!(server = self.name(), %reason, ?backoff, "MCP server unavailable");
                Err(McpError::Connect {
                    server: self.name().to_owned(),
                    reason,
                })
            }
        }
    }

    /// Drops `client` if it is still the open connection, so that the next
    /// request opens a new one (restarting a child process).
    async fn forget(&self, client: &Arc<Client>) {
        let mut state = self.state.lock().await;
        if state
            .open
            .as_ref()
            .is_some_and(|open| Arc::ptr_eq(&open.client, client))
        {
            state.open = None;
        }
    }

    fn request_failed(&self, error: RmcpError) -> McpError {
        let server = self.name().to_owned();
        let error = match error {
            RmcpError::McpError(data) => McpError::Refused {
                server,
                message: format!("{} (code {})", data.message, data.code.0),
            },
            RmcpError::UnexpectedResponse => McpError::Malformed {
                server,
                reason: "a response of the wrong kind".into(),
            },
            RmcpError::TransportClosed | RmcpError::TransportSend(_) => McpError::Lost {
                server,
                reason: error.to_string(),
            },
            other => McpError::Malformed {
                server,
                reason: other.to_string(),
            },
        };
        tracing::warn!(%error, "MCP request failed");
        error
    }
}

impl Connector {
    async fn connect(&self, server: &str, handler: Handler) -> Result<Client, String> {
        match self {
            Connector::Stdio { command, args, env } => {
                let mut child = tokio::process::Command::new(command);
                child.args(args).env_clear().envs(env).kill_on_drop(true);
                let (transport, stderr) = TokioChildProcess::builder(child)
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| format!("cannot run `{command}`: {e}"))?;
                if let Some(stderr) = stderr {
                    tokio::spawn(log_stderr(server.to_owned(), stderr));
                }
                handler.serve(transport).await.map_err(|e| e.to_string())
            }
            Connector::Http {
                url,
                bearer_token,
                headers,
            } => {
                let client = crate::services::http::client()
                    .map_err(|e| e.to_string())?
                    .clone();
                // rmcp resumes a broken event stream forever by default,
                // waiting as long as the server's `retry:` says (3 s for
                // rmcp servers) between attempts: a server that died would
                // cost the call its whole timeout. One immediate attempt
                // rides out a dropped connection; a voice turn cannot wait
                // for more.
                let mut resume = ExponentialBackoff::default();
                resume.max_times = Some(1);
                resume.base_duration = Duration::from_millis(250);
                let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str())
                    .reinit_on_expired_session(true)
                    .custom_headers(headers.iter().cloned().collect());
                config.retry_config = Arc::new(resume);
                if let Some(token) = bearer_token {
                    config = config.auth_header(token.expose());
                }
                let transport = StreamableHttpClientTransport::with_client(client, config);
                handler.serve(transport).await.map_err(|e| e.to_string())
            }
        }
    }
}

/// The longest line of a server's standard error kept in the log.
const MAX_STDERR_LINE: usize = 1024;

/// Passes a child's standard error to the log, line by line, until it
/// closes. Debug level: a server's chatter is not voxpipe's news.
async fn log_stderr(server: String, stderr: tokio::process::ChildStderr) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(mut line)) = lines.next_line().await {
        if line.len() > MAX_STDERR_LINE {
            let mut end = MAX_STDERR_LINE;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
        }
        tracing::debug!(server = %server, "{line}");
    }
}
