//! Hostile clients against a whole `voxpipe serve` process: a flood of
//! media on one socket leaves its memory flat, idle sockets past the
//! descriptor limit do not lock out `/health`, a half-sent request does
//! not hold SIGTERM past the shutdown deadline, headers or bodies dripped
//! a byte at a time are cut off at their deadlines, and over-limit bodies
//! get 413.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::SinkExt as _;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use support::served_binary::ServedBinary;
use support::server::TestServer;

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    // reqwest is built without a TLS provider of its own.
    let _already = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap_or_else(|err| panic!("GET {path}: {err}"));
    (response.status().as_u16(), response.text().await.unwrap())
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends `media` `n` times, as fast as the socket takes it.
async fn flood(ws: &mut Ws, media: &str, n: usize) {
    for _ in 0..n {
        ws.feed(Message::text(media.to_owned())).await.unwrap();
    }
    ws.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_media_on_one_socket_leaves_memory_flat() {
    let server = ServedBinary::start(
        "pipelines/parrot.toml",
        &["server.idle_timeout_secs=60"],
        "json",
        None,
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/twilio/ws", server.addr))
        .await
        .unwrap();
    let sid = "MZ00000000000000000000000000000001";
    let start = json!({
        "event": "start", "sequenceNumber": "1", "streamSid": sid,
        "start": {
            "streamSid": sid, "accountSid": "AC1", "callSid": "CA1", "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {},
        },
    });
    ws.send(Message::text(start.to_string())).await.unwrap();
    // 40 KB of audio a message (5 s each), as fast as the socket takes it.
    let payload = base64::engine::general_purpose::STANDARD.encode(vec![0x7F_u8; 40_000]);
    let media = json!({
        "event": "media", "streamSid": sid,
        "media": {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": payload},
    })
    .to_string();
    // Warm up (the first buffers, the VAD's model), then measure.
    flood(&mut ws, &media, 200).await;
    let (_, metrics) = get(server.addr, "/metrics").await;
    assert!(metrics.contains("voxpipe_sessions_active 1"), "{metrics}");
    let before = server.rss_bytes();
    // 1,500 messages: 60 MB of audio, two hours of a call.
    flood(&mut ws, &media, 1_500).await;
    // Every message was read (the metrics count the dropped ones).
    let dropped = r#"voxpipe_errors_total{kind="media_ahead_of_real_time",source="twilio"}"#;
    let deadline = Instant::now() + Duration::from_secs(120);
    let count = loop {
        let (_, metrics) = get(server.addr, "/metrics").await;
        let count = metrics
            .lines()
            .find_map(|l| l.strip_prefix(dropped))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if count >= 1_600.0 || Instant::now() > deadline {
            break count;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        count >= 1_600.0,
        "flooded media dropped and counted: {count}"
    );
    let after = server.rss_bytes();
    let grown = after.saturating_sub(before);
    assert!(
        grown < 32 * 1024 * 1024,
        "RSS grew {} MB under the flood ({} MB to {} MB)",
        grown / (1024 * 1024),
        before / (1024 * 1024),
        after / (1024 * 1024)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_with_300_idle_sockets_under_a_256_descriptor_limit() {
    let server = ServedBinary::start("pipelines/parrot.toml", &[], "json", Some(256));
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // Some idle a while, so that there is an idlest to close.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let started = Instant::now();
    let (status, body) = get(server.addr, "/health").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "answered in {:?}",
        started.elapsed()
    );
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_half_sent_requests_exits_within_the_deadline() {
    let mut server = ServedBinary::start(
        "pipelines/parrot.toml",
        &[
            "server.shutdown_deadline_secs=2",
            "server.shutdown_grace_secs=1",
        ],
        "json",
        None,
    );
    // Headers never finished; a body shorter than its Content-Length.
    let mut headers = TcpStream::connect(server.addr).await.unwrap();
    headers
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let mut body = TcpStream::connect(server.addr).await.unwrap();
    body.write_all(
        b"POST /twilio/voice HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nCallSid=CA1",
    )
    .await
    .unwrap();
    // Both are being served (the body's request has reached its handler).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = get(server.addr, "/health").await;
    assert_eq!(status, 200);

    let signalled = Instant::now();
    server.terminate();
    let exit = tokio::task::spawn_blocking(move || {
        let exit = server.wait_exit(Duration::from_secs(60));
        (exit, server)
    })
    .await
    .unwrap();
    let took = signalled.elapsed();
    let status = exit.0.expect("exited");
    assert!(status.success(), "{status}");
    // The deadline (2 s), and a margin for a loaded machine.
    assert!(
        took < Duration::from_secs(5),
        "exited {took:?} after SIGTERM"
    );
    drop((headers, body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_limit_bodies_get_413() {
    let server = TestServer::parrot(&["server.api_open=true"]).await;
    let client = reqwest::Client::new();
    const MIB: usize = 1024 * 1024;
    // (path, content type, a body over the route's limit, sent chunked
    // without a length)
    for (path, content_type, size, chunked) in [
        (
            "/twilio/voice",
            "application/x-www-form-urlencoded",
            MIB,
            false,
        ),
        (
            "/twilio/voice",
            "application/x-www-form-urlencoded",
            MIB,
            true,
        ),
        ("/api/offer", "application/json", MIB, false),
        ("/start", "application/json", MIB, false),
        ("/api/calls", "application/json", MIB, false),
        // A route with a limit of its own.
        ("/api/campaigns", "application/json", 16 * MIB + 1, false),
    ] {
        let big = "x".repeat(size);
        let body = if chunked {
            let chunks = big
                .into_bytes()
                .chunks(64 * 1024)
                .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
                .collect::<Vec<_>>();
            reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
        } else {
            reqwest::Body::from(big)
        };
        let response = client
            .post(server.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 413, "{path} chunked={chunked}");
        // The body was not read, so the connection cannot carry another
        // request; without saying so, a client pools it and its next
        // request meets the close.
        assert_eq!(
            response
                .headers()
                .get("connection")
                .and_then(|v| v.to_str().ok()),
            Some("close"),
            "{path} chunked={chunked}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_offers_are_refused_before_taking_a_slot() {
    let server = TestServer::parrot(&["server.rate_limit_per_minute=0"]).await;
    let client = reqwest::Client::new();
    let hostile = [
        json!({"sdp": "v=0", "type": "offer"}),
        json!({"sdp": "", "type": "offer"}),
        json!({"sdp": "v=0\r\nm=audio 9 RTP/AVP 0\r\n", "type": "offer"}),
        json!({"sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=ice-ufrag:a\r\na=ice-pwd:b\r\na=fingerprint:sha-256 AB\r\n", "type": "offer"}),
        json!({"sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:a\u{0}\r\na=ice-pwd:b\r\na=fingerprint:sha-256 AB\r\n", "type": "offer"}),
        json!({"sdp": "x".repeat(10_000), "type": "offer"}),
        json!({"sdp": "v=0", "type": "answer"}),
    ];
    for offer in &hostile {
        let response = client
            .post(server.url("/api/offer"))
            .json(offer)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400, "{offer}");
    }
    assert_eq!(
        server
            .metric(r#"voxpipe_errors_total{kind="bad_offer",source="webrtc"}"#)
            .await,
        hostile.len() as f64,
        "every one refused before admission"
    );
    assert!(server.sessions.all().is_empty());
}

/// Sends `head`, then `drip` a byte every 200 ms, until the server closes
/// the connection; returns how long that took after `head` and what the
/// server sent. Fails if the connection is still open after `limit`.
async fn drip_until_closed(
    addr: std::net::SocketAddr,
    head: &[u8],
    drip: u8,
    limit: Duration,
) -> (Duration, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(head).await.unwrap();
    let started = Instant::now();
    let (mut read, mut write) = tcp.into_split();
    let mut reader = tokio::spawn(async move {
        let mut got = Vec::new();
        let _ = read.read_to_end(&mut got).await;
        String::from_utf8_lossy(&got).into_owned()
    });
    let mut writing = true;
    loop {
        tokio::select! {
            got = &mut reader => return (started.elapsed(), got.unwrap()),
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                assert!(started.elapsed() < limit, "still open after {limit:?}");
                if writing && write.write_all(&[drip]).await.is_err() {
                    writing = false;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dripped_headers_are_cut_off_at_the_header_deadline() {
    let server = TestServer::parrot(&["server.http_header_timeout_secs=1"]).await;
    let addr = server.addr;
    let dripping = tokio::spawn(drip_until_closed(
        addr,
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ",
        b'a',
        Duration::from_secs(30),
    ));
    // Served meanwhile.
    let (status, _) = server.get("/health").await;
    assert_eq!(status, 200);
    let (took, answer) = dripping.await.unwrap();
    // The idle timeout (30 s) never runs out on a drip: only the header
    // deadline (1 s) can have closed it; the rest is a loaded machine.
    assert!(took < Duration::from_secs(15), "closed after {took:?}");
    assert!(!answer.contains("200 OK"), "{answer}");
    let (status, _) = server.get("/health").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripped_body_is_cut_off_at_the_body_deadline() {
    let server = TestServer::parrot(&["server.http_body_timeout_secs=1"]).await;
    let addr = server.addr;
    let (took, answer) = drip_until_closed(
        addr,
        b"POST /twilio/voice HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\nCallSid=CA1",
        b'1',
        Duration::from_secs(30),
    )
    .await;
    assert!(took < Duration::from_secs(15), "closed after {took:?}");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}
