//! [`McpServer`]: the one connection of a process to one MCP server,
//! opened when first needed, shared by every session, opened again when it
//! is found closed.
//!
//! # No lock across the network
//!
//! The state (the open connection, its tools, the restart backoff) sits
//! behind a plain mutex held for bookkeeping only, never across a wait on
//! the server. Opening a connection and listing its tools each run in a
//! task of their own, shared by whoever waits for them: sessions starting
//! together wait for one listing, not one after another, and a caller
//! that gives up (its tool timeout, its session's start deadline) leaves
//! the attempt running, so its outcome, a failure and its backoff
//! included, is always recorded.
//!
//! # A server that answers nothing
//!
//! A connection that shook hands but gives no tool list within
//! `connect_timeout`, or lets [`MAX_TIMEOUTS_IN_A_ROW`] calls in a row time
//! out, is taken for hung: it is closed (a child is killed) and counts as
//! a failed start, so the next attempt waits for the backoff. Any answer
//! (a result, a JSON-RPC error) shows the server alive and forgets its
//! failures.
//!
//! # A server that dies before it answers
//!
//! A connection that closes (a crash, found closed or during a request)
//! before it answered any request counts as a failed start too: a server
//! that shakes hands and then dies on `tools/list` would otherwise be
//! started again by every session start and every call.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use rmcp::ServiceError as RmcpError;
use rmcp::model::{CallToolRequestParams, CallToolResult, JsonObject, Tool as McpToolDef};
use tokio::time::Instant;

use crate::services::error::shorten;
use crate::services::retry::jitter;

use super::connector::{Client, Connector, Handler};
use super::restarts::Restarts;

/// Calls in a row that time out before a connection is taken for hung.
pub(crate) const MAX_TIMEOUTS_IN_A_ROW: u32 = 3;

/// The longest reason of a server's, in characters, that the model and
/// the logs are given.
const MAX_REASON: usize = 300;

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
/// tool's error. Reasons the server or the transport gave are shortened
/// and hold no URL.
#[derive(Debug, Clone, thiserror::Error)]
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

/// An attempt in flight (a connect, a listing), shared by its waiters.
type Pending<T> = Shared<BoxFuture<'static, Result<T, McpError>>>;

/// An open connection and what it has told us.
struct Open {
    client: Arc<Client>,
    tools_changed: Arc<AtomicBool>,
    tools: Option<Arc<[McpToolDef]>>,
    /// Calls in a row that timed out.
    timeouts: u32,
    /// Whether it answered a request (the handshake aside).
    answered: bool,
}

#[derive(Default)]
struct State {
    open: Option<Open>,
    restarts: Restarts,
    connecting: Option<Pending<Arc<Client>>>,
    listing: Option<Pending<Arc<[McpToolDef]>>>,
}

impl State {
    /// The open connection, if it is still open.
    fn live(&mut self, server: &str) -> Option<&mut Open> {
        if self
            .open
            .as_ref()
            .is_some_and(|open| open.client.is_closed() || open.client.peer().is_transport_closed())
        {
            tracing::warn!(server, "the MCP connection closed; opening it again");
            self.drop_open(server);
        }
        self.open.as_mut()
    }

    /// Drops the open connection, which closed; if it never answered, that
    /// was a failed start.
    fn drop_open(&mut self, server: &str) {
        if self.open.take().is_some_and(|open| !open.answered) {
            let backoff = self.restarts.handle_failure(Instant::now(), jitter());
            tracing::warn!(
                server,
                ?backoff,
                "the MCP server closed the connection before answering anything"
            );
        }
    }

    /// The open connection if it is `client`.
    fn open_as(&mut self, client: &Arc<Client>) -> Option<&mut Open> {
        self.open
            .as_mut()
            .filter(|open| Arc::ptr_eq(&open.client, client))
    }
}

/// The one connection of the process to an MCP server. See the module
/// docs of [`crate::services::llm::tools::mcp`].
pub struct McpServer {
    pub(crate) settings: ServerSettings,
    state: Mutex<State>,
    /// A warm-up has started running: one spawned on a runtime that never
    /// ran it (`voxpipe serve` builds every processor once at start in a
    /// runtime of its own, dropped unpolled) did not.
    warming: AtomicBool,
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
            warming: AtomicBool::new(false),
        }
    }

    fn name(&self) -> &str {
        &self.settings.name
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts connecting and listing the tools in the background, if there
    /// is a runtime and no warm-up has run yet: a server launched with
    /// `npx` takes seconds to start, which the first call should not wait
    /// for.
    pub(crate) fn warm_up(self: &Arc<Self>) {
        if self.warming.load(Ordering::SeqCst) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let server = Arc::clone(self);
        runtime.spawn(async move {
            if server.warming.swap(true, Ordering::SeqCst) {
                return;
            }
            if let Err(error) = server.list_tools().await {
                tracing::warn!(%error, "MCP server not ready at start");
            }
        });
    }

    /// The server's tools, as it listed them on this connection (listed
    /// again after a reconnect, or when it said they changed). Waiters at
    /// the same time share one listing.
    ///
    /// # Cancel safety
    /// Cancel safe: the listing goes on without its waiters, and its
    /// outcome is kept.
    pub(crate) async fn list_tools(self: &Arc<Self>) -> Result<Arc<[McpToolDef]>, McpError> {
        let listing = {
            let mut state = self.state();
            // The flag is cleared by the listing, as it asks: a change
            // said during a listing already asked for is listed next time.
            if let Some(open) = state.live(self.name())
                && !open.tools_changed.load(Ordering::SeqCst)
                && let Some(tools) = &open.tools
            {
                return Ok(Arc::clone(tools));
            }
            match &state.listing {
                Some(listing) => listing.clone(),
                None => {
                    let server = Arc::clone(self);
                    let listing = self.detached(
                        async move {
                            let listed = server.list_now().await;
                            server.state().listing = None;
                            listed
                        },
                        |state| state.listing = None,
                    );
                    state.listing = Some(listing.clone());
                    listing
                }
            }
        };
        listing.await
    }

    /// Lists the tools on the connection (opened if need be), and keeps
    /// them with it.
    async fn list_now(self: &Arc<Self>) -> Result<Arc<[McpToolDef]>, McpError> {
        let client = self.connected().await?;
        let limit = self.settings.connect_timeout;
        if let Some(open) = self.state().open_as(&client) {
            open.tools_changed.store(false, Ordering::SeqCst);
        }
        match tokio::time::timeout(limit, client.peer().list_all_tools()).await {
            Ok(Ok(tools)) => {
                let tools: Arc<[McpToolDef]> = tools.into();
                self.answered(&client);
                if let Some(open) = self.state().open_as(&client) {
                    open.tools = Some(Arc::clone(&tools));
                }
                Ok(tools)
            }
            Ok(Err(error)) => Err(self.request_failed(&client, error)),
            Err(_) => {
                self.close_hung(&client, "it gave no tool list");
                Err(McpError::Timeout {
                    server: self.name().to_owned(),
                    what: "tool list",
                    limit,
                })
            }
        }
    }

    /// Calls the tool the server names `name`, giving it `limit` in all
    /// (connecting included). A call that times out on a connection open
    /// when it started counts towards closing a hung connection; one that
    /// waited for the connection to open had less than its limit on it,
    /// and one dropped before (an interruption) does not count either
    /// (rmcp then tells the server the request is cancelled).
    pub(crate) async fn call(
        self: &Arc<Self>,
        name: &str,
        arguments: JsonObject,
        limit: Duration,
    ) -> Result<CallToolResult, McpError> {
        let deadline = Instant::now() + limit;
        let timed_out = |what| McpError::Timeout {
            server: self.name().to_owned(),
            what,
            limit,
        };
        let open = self
            .state()
            .live(self.name())
            .map(|open| Arc::clone(&open.client));
        let had_its_limit = open.is_some();
        let client = match open {
            Some(client) => client,
            None => tokio::time::timeout_at(deadline, self.connected())
                .await
                .map_err(|_| timed_out("answer to the handshake"))??,
        };
        let params = CallToolRequestParams::new(name.to_owned()).with_arguments(arguments);
        match tokio::time::timeout_at(deadline, client.peer().call_tool(params)).await {
            Ok(Ok(result)) => {
                self.answered(&client);
                Ok(result)
            }
            Ok(Err(error)) => Err(self.request_failed(&client, error)),
            Err(_) => {
                if had_its_limit {
                    self.call_timed_out(&client);
                }
                Err(timed_out("result"))
            }
        }
    }

    /// The open connection, opening one if there is none or it closed.
    /// Waiters at the same time share one attempt.
    async fn connected(self: &Arc<Self>) -> Result<Arc<Client>, McpError> {
        let connecting = {
            let mut state = self.state();
            if let Some(open) = state.live(self.name()) {
                return Ok(Arc::clone(&open.client));
            }
            match &state.connecting {
                Some(connecting) => connecting.clone(),
                None => {
                    if let Err(retry_in) = state.restarts.check(Instant::now()) {
                        return Err(McpError::Backoff {
                            server: self.name().to_owned(),
                            retry_in,
                        });
                    }
                    let server = Arc::clone(self);
                    let connecting =
                        self.detached(async move { server.connect().await }, |state| {
                            state.connecting = None;
                        });
                    state.connecting = Some(connecting.clone());
                    connecting
                }
            }
        };
        connecting.await
    }

    /// One attempt to open the connection, its outcome recorded.
    async fn connect(&self) -> Result<Arc<Client>, McpError> {
        let tools_changed = Arc::new(AtomicBool::new(false));
        let handler = Handler {
            tools_changed: Arc::clone(&tools_changed),
        };
        let limit = self.settings.connect_timeout;
        let opened =
            tokio::time::timeout(limit, self.settings.connector.connect(self.name(), handler))
                .await
                .unwrap_or_else(|_| Err(format!("no answer to the handshake within {limit:?}")));
        let mut state = self.state();
        state.connecting = None;
        match opened {
            Ok(client) => {
                tracing::info!(server = self.name(), "MCP server connected");
                // Its failures are forgotten once it answers a request:
                // a server that connects but then answers nothing keeps
                // its backoff growing.
                let client = Arc::new(client);
                state.open = Some(Open {
                    client: Arc::clone(&client),
                    tools_changed,
                    tools: None,
                    timeouts: 0,
                    answered: false,
                });
                Ok(client)
            }
            Err(reason) => {
                let backoff = state.restarts.handle_failure(Instant::now(), jitter());
                let reason = self.reason(reason);
                tracing::warn!(server = self.name(), %reason, ?backoff, "MCP server unavailable");
                Err(McpError::Connect {
                    server: self.name().to_owned(),
                    reason,
                })
            }
        }
    }

    /// `work` in a task of its own, shared by whoever awaits it. `work`
    /// empties its slot in the state when done; should it not get there (a
    /// panic), `clear` does, so that the next caller tries again.
    fn detached<T>(
        self: &Arc<Self>,
        work: impl Future<Output = Result<T, McpError>> + Send + 'static,
        clear: fn(&mut State),
    ) -> Pending<T>
    where
        T: Clone + Send + Sync + 'static,
    {
        let task = tokio::spawn(work);
        let server = Arc::clone(self);
        async move {
            task.await.unwrap_or_else(|_| {
                clear(&mut server.state());
                Err(McpError::Connect {
                    server: server.name().to_owned(),
                    reason: "the attempt was stopped".to_owned(),
                })
            })
        }
        .boxed()
        .shared()
    }

    /// `client` answered a request: the server is alive.
    fn answered(&self, client: &Arc<Client>) {
        let mut state = self.state();
        state.restarts.handle_success();
        if let Some(open) = state.open_as(client) {
            open.timeouts = 0;
            open.answered = true;
        }
    }

    /// A call on `client` timed out: one more in a row.
    fn call_timed_out(&self, client: &Arc<Client>) {
        let hung = self.state().open_as(client).is_some_and(|open| {
            open.timeouts += 1;
            open.timeouts >= MAX_TIMEOUTS_IN_A_ROW
        });
        if hung {
            self.close_hung(client, "calls in a row timed out");
        }
    }

    /// Closes `client`, which answers nothing, and counts it as a failed
    /// start: the next attempt waits for the backoff.
    fn close_hung(&self, client: &Arc<Client>, why: &str) {
        {
            let mut state = self.state();
            if state.open_as(client).is_some() {
                state.open = None;
                let backoff = state.restarts.handle_failure(Instant::now(), jitter());
                tracing::warn!(
                    server = self.name(),
                    why,
                    ?backoff,
                    "the MCP server seems hung; its connection is closed"
                );
            }
        }
        // Now, not when the last call holding it ends: those fail at once.
        client.cancellation_token().cancel();
    }

    /// Drops `client` if it is still the open connection, so that the next
    /// request opens a new one (restarting a child process), after the
    /// backoff if it never answered.
    fn forget(&self, client: &Arc<Client>) {
        let mut state = self.state();
        if state.open_as(client).is_some() {
            state.drop_open(self.name());
        }
    }

    /// What a request on `client` that failed with `error` tells the model.
    fn request_failed(&self, client: &Arc<Client>, error: RmcpError) -> McpError {
        let error = self.request_error(error);
        match &error {
            McpError::Lost { .. } => self.forget(client),
            McpError::Refused { .. } => self.answered(client),
            _ => {}
        }
        tracing::warn!(%error, "MCP request failed");
        error
    }

    fn request_error(&self, error: RmcpError) -> McpError {
        let server = self.name().to_owned();
        match error {
            RmcpError::McpError(data) => McpError::Refused {
                server,
                message: self.reason(format!("{} (code {})", data.message, data.code.0)),
            },
            RmcpError::UnexpectedResponse => McpError::Malformed {
                server,
                reason: "a response of the wrong kind".into(),
            },
            RmcpError::TransportClosed | RmcpError::TransportSend(_) => McpError::Lost {
                server,
                reason: self.reason(error.to_string()),
            },
            other => McpError::Malformed {
                server,
                reason: self.reason(other.to_string()),
            },
        }
    }

    /// A reason from the server or the transport as the model may read
    /// it: shortened, without the server's URL.
    fn reason(&self, text: String) -> String {
        shorten(&self.settings.connector.scrub(text), MAX_REASON)
    }
}

#[cfg(test)]
mod tests;
