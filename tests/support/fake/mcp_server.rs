//! An MCP server for tests, written with the official SDK (`rmcp`), served
//! over stdio (by a test binary run again as a child: [`serve_stdio`]) or
//! over streamable HTTP in the test's process ([`HttpMcpServer`]).
//!
//! Its tools: `add` (the sum, as structured content), `whoami` (which
//! server instance answers: the process id on stdio, the start count over
//! HTTP), `slow` (never answers), `fail` (a result marked `isError`),
//! `crash` (the server dies mid-call: the process exits, or the HTTP
//! server's runtime is dropped with every connection) and `garbage` (a
//! response for the call that is not a tool result, then silence).

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, JsonObject,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// The variable that makes a test binary serve MCP on stdio instead of
/// running its tests.
pub const SERVE_STDIO_ENV: &str = "VOXPIPE_TEST_MCP_STDIO";

/// The bearer token the HTTP server wants.
pub const HTTP_TOKEN: &str = "test-mcp-token";

/// How the server dies when `crash` is called.
#[derive(Clone)]
enum Death {
    /// The process exits.
    Exit,
    /// The HTTP server's runtime is told to stop.
    Stop(Arc<Notify>),
}

#[derive(Clone)]
struct TestServer {
    instance: String,
    death: Death,
    /// The calls of `slow`.
    slow: Arc<SlowCalls>,
}

/// The calls of `slow` begun, and those the client cancelled.
#[derive(Default)]
struct SlowCalls {
    begun: AtomicUsize,
    cancelled: AtomicUsize,
    changed: Notify,
}

fn object(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => unreachable!("a schema is an object"),
    }
}

fn tools() -> Vec<Tool> {
    let none = || object(json!({"type": "object", "properties": {}}));
    vec![
        Tool::new(
            "add",
            "Adds two integers.",
            object(json!({
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"]
            })),
        ),
        Tool::new("whoami", "Which server instance answers.", none()),
        Tool::new("slow", "Never answers.", none()),
        Tool::new("fail", "Always fails.", none()),
        Tool::new("crash", "Kills the server.", none()),
        Tool::new("garbage", "Answers with nonsense.", none()),
    ]
}

impl ServerHandler for TestServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let arguments = request.arguments.unwrap_or_default();
        let result = match request.name.as_ref() {
            "add" => {
                let a = arguments.get("a").and_then(Value::as_i64).unwrap_or(0);
                let b = arguments.get("b").and_then(Value::as_i64).unwrap_or(0);
                CallToolResult::structured(json!({"sum": a + b}))
            }
            "whoami" => CallToolResult::success(vec![ContentBlock::text(self.instance.clone())]),
            "slow" => {
                self.slow.begun.fetch_add(1, Ordering::SeqCst);
                self.slow.changed.notify_waiters();
                context.ct.cancelled().await;
                self.slow.cancelled.fetch_add(1, Ordering::SeqCst);
                self.slow.changed.notify_waiters();
                CallToolResult::success(vec![ContentBlock::text("cancelled")])
            }
            "fail" => {
                CallToolResult::error(vec![ContentBlock::text("the flux capacitor is empty")])
            }
            "crash" => match &self.death {
                Death::Exit => std::process::exit(3),
                Death::Stop(stop) => {
                    stop.notify_one();
                    std::future::pending().await
                }
            },
            "garbage" => {
                let junk = json!({"jsonrpc": "2.0", "id": context.id, "result": {"content": "not a list", "isError": "maybe"}});
                {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{junk}");
                    let _ = out.flush();
                }
                std::future::pending().await
            }
            other => {
                return Err(ErrorData::invalid_params(
                    format!("no tool named {other}"),
                    None,
                ));
            }
        };
        Ok(result.into())
    }
}

/// Serves MCP on stdin and stdout until the client goes: what a test binary
/// does when [`SERVE_STDIO_ENV`] is set.
pub fn serve_stdio() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let server = TestServer {
            instance: std::process::id().to_string(),
            death: Death::Exit,
            slow: Arc::default(),
        };
        match server.serve(rmcp::transport::stdio()).await {
            Ok(running) => {
                let _ = running.waiting().await;
            }
            Err(error) => eprintln!("the test MCP server did not start: {error}"),
        }
    });
}

/// The test MCP server over streamable HTTP on a loopback port, in a
/// runtime of its own on its own thread, so that `crash` can drop it with
/// every connection, as a dying process would. It wants the bearer token
/// [`HTTP_TOKEN`].
pub struct HttpMcpServer {
    /// The endpoint.
    pub url: String,
    addr: SocketAddr,
    starts: u32,
    down: Option<tokio::sync::oneshot::Receiver<()>>,
    slow: Arc<SlowCalls>,
}

impl HttpMcpServer {
    /// Starts it on a free port.
    pub async fn start() -> HttpMcpServer {
        let listener = std::net::TcpListener::bind(super::super::net::LOOPBACK).unwrap();
        let addr = listener.local_addr().unwrap();
        let slow = Arc::default();
        let down = spawn_http(listener, 1, Arc::clone(&slow));
        HttpMcpServer {
            url: format!("http://{addr}/mcp"),
            addr,
            starts: 1,
            down: Some(down),
            slow,
        }
    }

    /// Waits until `count` calls of `slow` have begun in all.
    pub async fn wait_slow_begun(&self, count: usize) {
        self.wait_slow(&self.slow.begun, count, "calls of `slow`")
            .await;
    }

    /// Waits until the client has cancelled `count` calls of `slow` in all.
    pub async fn wait_slow_cancelled(&self, count: usize) {
        self.wait_slow(&self.slow.cancelled, count, "cancellations")
            .await;
    }

    async fn wait_slow(&self, counter: &AtomicUsize, count: usize, what: &str) {
        super::super::wait::until_notified(&self.slow.changed, Duration::from_secs(10), || {
            (counter.load(Ordering::SeqCst) >= count).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("the server never saw {count} {what}"));
    }

    /// Waits until `crash` has brought it down.
    pub async fn wait_down(&mut self) {
        if let Some(down) = self.down.take() {
            let _ = down.await;
        }
    }

    /// Starts it again on the same port, after it went down.
    pub async fn restart(&mut self) {
        self.wait_down().await;
        self.starts += 1;
        let listener = std::net::TcpListener::bind(self.addr).unwrap();
        self.down = Some(spawn_http(listener, self.starts, Arc::clone(&self.slow)));
    }
}

fn spawn_http(
    listener: std::net::TcpListener,
    start: u32,
    slow: Arc<SlowCalls>,
) -> tokio::sync::oneshot::Receiver<()> {
    let (down_tx, down_rx) = tokio::sync::oneshot::channel();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let stop = Arc::new(Notify::new());
        let server = TestServer {
            instance: format!("http-{start}"),
            death: Death::Stop(Arc::clone(&stop)),
            slow,
        };
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let service: StreamableHttpService<TestServer, LocalSessionManager> =
                StreamableHttpService::new(
                    move || Ok(server.clone()),
                    Default::default(),
                    StreamableHttpServerConfig::default(),
                );
            let router = axum::Router::new()
                .nest_service("/mcp", service)
                .layer(axum::middleware::from_fn(require_token));
            tokio::select! {
                _ = axum::serve(listener, router) => {}
                () = stop.notified() => {}
            }
        });
        // Every connection task dies with the runtime, as with the process.
        runtime.shutdown_timeout(Duration::from_secs(1));
        let _ = down_tx.send(());
    });
    down_rx
}

async fn require_token(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let expected = format!("Bearer {HTTP_TOKEN}");
    let authorized = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == expected.as_bytes());
    if authorized {
        next.run(request).await
    } else {
        axum::response::IntoResponse::into_response(axum::http::StatusCode::UNAUTHORIZED)
    }
}
