//! [`McpServer`] against a scripted server on an in-memory stream, under
//! paused time: what a hung or slow server costs, measured exactly.

use std::sync::atomic::AtomicUsize;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Notify;

use super::super::tool::session_tools;
use super::*;

/// How the scripted server answers a call.
#[derive(Clone, Copy)]
enum Calls {
    Answer,
    Hang,
    /// A JSON-RPC error with a message of 20,000 characters.
    HugeError,
}

/// How the scripted server answers `tools/list`.
#[derive(Clone, Copy, PartialEq)]
enum List {
    Answer,
    /// After a second.
    Slow,
    Hang,
    /// It exits (closes the connection) instead.
    Exit,
}

/// How the scripted server answers `initialize`.
#[derive(Clone, Copy, PartialEq)]
enum Handshake {
    Answer,
    /// After a second.
    Slow,
    Never,
}

/// What the scripted server answers.
#[derive(Clone, Copy)]
struct Script {
    handshake: Handshake,
    list: List,
    calls: Calls,
}

/// What the scripted server saw, over all its connections.
#[derive(Default)]
struct Seen {
    handshakes: AtomicUsize,
    lists: AtomicUsize,
    calls: AtomicUsize,
    closed: AtomicUsize,
    changed: Notify,
}

impl Seen {
    fn count(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }

    /// Waits until `counter` reaches `n`.
    async fn until(&self, counter: impl Fn(&Seen) -> &AtomicUsize, n: usize) {
        loop {
            let changed = self.changed.notified();
            if Seen::count(counter(self)) >= n {
                return;
            }
            changed.await;
        }
    }
}

fn server(
    script: Script,
    timeout: Duration,
    connect_timeout: Duration,
) -> (Arc<McpServer>, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let counts = Arc::clone(&seen);
    let connector = Connector::Memory(Arc::new(move || {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        tokio::spawn(serve(theirs, script, Arc::clone(&counts)));
        ours
    }));
    let server = McpServer::new(ServerSettings {
        name: "fake".to_owned(),
        connector,
        allowed: None,
        tool_prefix: String::new(),
        timeout: Some(timeout),
        connect_timeout,
        cancel_on_interruption: true,
    });
    (Arc::new(server), seen)
}

/// One connection of the scripted server: JSON-RPC lines, answered as
/// `script` says, until the client closes it.
async fn serve(stream: tokio::io::DuplexStream, script: Script, seen: Arc<Seen>) {
    let (read, mut write) = tokio::io::split(stream);
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let (counter, answer) = match message["method"].as_str() {
            Some("initialize") => (
                &seen.handshakes,
                (script.handshake != Handshake::Never).then(|| {
                    json!({"result": {
                        "protocolVersion": message["params"]["protocolVersion"],
                        "capabilities": {"tools": {}},
                        "serverInfo": {"name": "fake", "version": "1"}
                    }})
                }),
            ),
            Some("tools/list") if script.list == List::Exit => {
                seen.lists.fetch_add(1, Ordering::SeqCst);
                seen.changed.notify_waiters();
                break;
            }
            Some("tools/list") => (
                &seen.lists,
                (script.list != List::Hang).then(|| {
                    json!({"result": {"tools": [
                        {"name": "echo", "inputSchema": {"type": "object"}}
                    ]}})
                }),
            ),
            Some("tools/call") => (
                &seen.calls,
                match script.calls {
                    Calls::Answer => {
                        Some(json!({"result": {"content": [{"type": "text", "text": "done"}]}}))
                    }
                    Calls::Hang => None,
                    Calls::HugeError => Some(
                        json!({"error": {"code": -32000, "message": "no ".repeat(20_000 / 3)}}),
                    ),
                },
            ),
            _ => continue,
        };
        counter.fetch_add(1, Ordering::SeqCst);
        seen.changed.notify_waiters();
        if let Some(mut answer) = answer {
            let slow = match message["method"].as_str() {
                Some("tools/list") => script.list == List::Slow,
                Some("initialize") => script.handshake == Handshake::Slow,
                _ => false,
            };
            if slow {
                tokio::time::sleep(SECOND).await;
            }
            answer["jsonrpc"] = json!("2.0");
            answer["id"] = message["id"].clone();
            let mut line = answer.to_string();
            line.push('\n');
            if write.write_all(line.as_bytes()).await.is_err() {
                break;
            }
        }
    }
    seen.closed.fetch_add(1, Ordering::SeqCst);
    seen.changed.notify_waiters();
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn sessions_starting_together_share_one_listing_and_a_hung_list_backs_off() {
    let connect_timeout = 5 * SECOND;
    let script = Script {
        handshake: Handshake::Answer,
        list: List::Hang,
        calls: Calls::Answer,
    };
    let (server, seen) = server(script, SECOND, connect_timeout);
    let start = Instant::now();
    let (first, second) = tokio::join!(
        session_tools(&server, SECOND),
        session_tools(&server, SECOND)
    );
    assert!(first.is_err() && second.is_err());
    // A session start waits the connect timeout, not more.
    assert_eq!(start.elapsed(), connect_timeout);
    assert_eq!(Seen::count(&seen.handshakes), 1);
    assert_eq!(Seen::count(&seen.lists), 1, "one listing, shared");
    // The list that never came closed the connection...
    seen.until(|s| &s.closed, 1).await;
    // ...and backs off: a start soon after gets its answer at once.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let later = Instant::now();
    let third = session_tools(&server, SECOND).await;
    assert!(matches!(third, Err(McpError::Backoff { .. })), "{third:?}");
    assert_eq!(later.elapsed(), Duration::ZERO);
    assert_eq!(Seen::count(&seen.handshakes), 1);
}

#[tokio::test(start_paused = true)]
async fn a_server_that_dies_after_its_handshake_is_started_again_only_after_a_backoff() {
    let script = Script {
        handshake: Handshake::Answer,
        list: List::Exit,
        calls: Calls::Answer,
    };
    let (server, seen) = server(script, SECOND, 5 * SECOND);
    let start = Instant::now();
    let first = server.list_tools().await;
    assert!(matches!(first, Err(McpError::Lost { .. })), "{first:?}");
    assert_eq!(start.elapsed(), Duration::ZERO, "not a timeout");
    // Neither a session start nor a call starts it again at once.
    let second = session_tools(&server, SECOND).await;
    assert!(
        matches!(second, Err(McpError::Backoff { .. })),
        "{second:?}"
    );
    let call = server.call("echo", JsonObject::new(), SECOND).await;
    assert!(matches!(call, Err(McpError::Backoff { .. })), "{call:?}");
    assert_eq!(Seen::count(&seen.handshakes), 1);
    // After the backoff it is tried again, and backs off longer.
    tokio::time::sleep(SECOND).await;
    let third = server.list_tools().await;
    assert!(matches!(third, Err(McpError::Lost { .. })), "{third:?}");
    assert_eq!(Seen::count(&seen.handshakes), 2);
    // The second wait is at least a second.
    tokio::time::sleep(SECOND - Duration::from_millis(1)).await;
    let fourth = server.list_tools().await;
    assert!(
        matches!(fourth, Err(McpError::Backoff { .. })),
        "{fourth:?}"
    );
    assert_eq!(Seen::count(&seen.handshakes), 2);
}

#[tokio::test(start_paused = true)]
async fn tools_said_changed_during_a_listing_are_listed_again() {
    let script = Script {
        handshake: Handshake::Answer,
        list: List::Slow,
        calls: Calls::Answer,
    };
    let (server, seen) = server(script, SECOND, 5 * SECOND);
    let first = tokio::spawn({
        let server = Arc::clone(&server);
        async move { server.list_tools().await }
    });
    seen.until(|s| &s.lists, 1).await;
    // The server says its tools changed while the listing is on its way.
    let changed = server
        .state()
        .open
        .as_ref()
        .map(|o| Arc::clone(&o.tools_changed));
    changed.unwrap().store(true, Ordering::SeqCst);
    // A session starting now joins the listing already asked for...
    server.list_tools().await.unwrap();
    first.await.unwrap().unwrap();
    assert_eq!(Seen::count(&seen.lists), 1);
    // ...and the next one lists again.
    server.list_tools().await.unwrap();
    assert_eq!(Seen::count(&seen.lists), 2);
    server.list_tools().await.unwrap();
    assert_eq!(Seen::count(&seen.lists), 2, "then kept");
}

#[tokio::test(start_paused = true)]
async fn a_list_keeps_being_served_from_the_connection_once_listed() {
    let script = Script {
        handshake: Handshake::Answer,
        list: List::Answer,
        calls: Calls::Answer,
    };
    let (server, seen) = server(script, SECOND, 5 * SECOND);
    let tools = session_tools(&server, SECOND).await.unwrap();
    assert_eq!(tools.len(), 1);
    let again = session_tools(&server, SECOND).await.unwrap();
    assert_eq!(again[0].spec().name, "echo");
    assert_eq!(Seen::count(&seen.lists), 1);
    let outcome = again[0].call(json!({})).await.unwrap();
    assert_eq!(outcome.result, "done");
}

#[tokio::test(start_paused = true)]
async fn a_connect_given_up_by_a_short_tool_timeout_still_counts_as_a_failure() {
    let connect_timeout = 10 * SECOND;
    let script = Script {
        handshake: Handshake::Never,
        list: List::Answer,
        calls: Calls::Answer,
    };
    let (server, seen) = server(script, SECOND, connect_timeout);
    // As the tool runner calls it: within the tool's timeout.
    let call = || tokio::time::timeout(2 * SECOND, server.call("echo", JsonObject::new(), SECOND));
    let first = call().await;
    assert!(
        matches!(
            first,
            Ok(Err(McpError::Timeout {
                what: "answer to the handshake",
                ..
            }))
        ),
        "{first:?}"
    );
    // The handshake goes on without the call, and fails.
    seen.until(|s| &s.closed, 1).await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    let second = call().await;
    assert!(
        matches!(second, Ok(Err(McpError::Backoff { .. }))),
        "{second:?}"
    );
    assert_eq!(Seen::count(&seen.handshakes), 1, "not started again");
}

#[tokio::test(start_paused = true)]
async fn a_server_that_lets_calls_time_out_in_a_row_is_restarted_after_a_backoff() {
    let script = Script {
        handshake: Handshake::Answer,
        list: List::Answer,
        calls: Calls::Hang,
    };
    let (server, seen) = server(script, SECOND, 5 * SECOND);
    let tools = session_tools(&server, SECOND).await.unwrap();
    let tool = &tools[0];
    let backstop = tool.timeout().unwrap();
    assert!(
        backstop > SECOND,
        "the runner's timeout comes after the tool's"
    );
    for n in 1..=MAX_TIMEOUTS_IN_A_ROW {
        let error = tokio::time::timeout(backstop, tool.call(json!({})))
            .await
            .unwrap()
            .unwrap_err()
            .to_string();
        assert_eq!(
            error, "the MCP server `fake` gave no result within 1s",
            "call {n}"
        );
    }
    // The third closed the connection (a child would be killed)...
    seen.until(|s| &s.closed, 1).await;
    // ...and the next call waits for the backoff instead of reconnecting.
    let error = tool.call(json!({})).await.unwrap_err().to_string();
    assert!(
        error.contains("is unavailable; it is tried again in"),
        "{error}"
    );
    assert_eq!(Seen::count(&seen.handshakes), 1);
    tokio::time::sleep(SECOND).await;
    let error = tool.call(json!({})).await.unwrap_err().to_string();
    assert!(error.contains("gave no result"), "{error}");
    assert_eq!(Seen::count(&seen.handshakes), 2, "restarted");
    assert_eq!(Seen::count(&seen.calls), MAX_TIMEOUTS_IN_A_ROW as usize + 1);
}

#[tokio::test(start_paused = true)]
async fn a_call_that_waited_for_the_connection_does_not_count_as_hung() {
    let script = Script {
        handshake: Handshake::Slow,
        list: List::Answer,
        calls: Calls::Hang,
    };
    let (server, seen) = server(script, SECOND, 5 * SECOND);
    let limit = 3 * SECOND / 2;
    // A second of it goes on the handshake, half a second on the call.
    let error = server.call("echo", JsonObject::new(), limit).await;
    assert!(matches!(error, Err(McpError::Timeout { .. })), "{error:?}");
    let client = server.connected().await.unwrap();
    // Two calls given their whole limit on the open connection: one short
    // of closing it.
    for _ in 0..MAX_TIMEOUTS_IN_A_ROW - 1 {
        let error = server.call("echo", JsonObject::new(), limit).await;
        assert!(matches!(error, Err(McpError::Timeout { .. })), "{error:?}");
    }
    assert!(Arc::ptr_eq(&server.connected().await.unwrap(), &client));
    assert_eq!(Seen::count(&seen.handshakes), 1);
}

#[tokio::test(start_paused = true)]
async fn an_answer_between_timeouts_keeps_the_connection() {
    let script = Script {
        handshake: Handshake::Answer,
        list: List::Answer,
        calls: Calls::Hang,
    };
    let (server, seen) = server(script, SECOND, 5 * SECOND);
    server.list_tools().await.unwrap();
    let client = server.connected().await.unwrap();
    for _ in 0..MAX_TIMEOUTS_IN_A_ROW - 1 {
        server.call_timed_out(&client);
    }
    server.answered(&client);
    for _ in 0..MAX_TIMEOUTS_IN_A_ROW - 1 {
        server.call_timed_out(&client);
    }
    assert!(Arc::ptr_eq(&server.connected().await.unwrap(), &client));
    assert_eq!(Seen::count(&seen.closed), 0);
}

#[tokio::test(start_paused = true)]
async fn a_server_error_reaches_the_model_shortened() {
    let script = Script {
        handshake: Handshake::Answer,
        list: List::Answer,
        calls: Calls::HugeError,
    };
    let (server, _seen) = server(script, SECOND, 5 * SECOND);
    let tools = session_tools(&server, SECOND).await.unwrap();
    let error = tools[0].call(json!({})).await.unwrap_err().to_string();
    assert!(
        error.starts_with("the MCP server `fake` refused the request: no no"),
        "{error}"
    );
    assert!(error.chars().count() < 400, "{} characters", error.len());
}

#[tokio::test]
async fn a_secret_in_an_http_server_url_is_not_in_its_errors() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let server = Arc::new(McpServer::new(ServerSettings {
        name: "crm".to_owned(),
        connector: Connector::Http {
            url: format!("http://127.0.0.1:{closed}/mcp/SECRET-PATH?key=SECRET-KEY"),
            bearer_token: None,
            headers: Vec::new(),
        },
        allowed: None,
        tool_prefix: String::new(),
        timeout: None,
        connect_timeout: 5 * SECOND,
        cancel_on_interruption: true,
    }));
    let error = server.list_tools().await.unwrap_err().to_string();
    assert!(error.contains("could not be started or reached"), "{error}");
    assert!(!error.contains("SECRET"), "{error}");
}
