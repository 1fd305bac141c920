//! Fake provider servers for tests, on 127.0.0.1:0, speaking each
//! provider's documented wire protocol: status codes, headers, SSE framing,
//! WebSocket messages, error bodies.

#![allow(dead_code)] // each test binary uses a different subset
#![allow(unreachable_pub)] // shared by the test binaries, not an API
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod cartesia;
pub mod deepgram;
pub mod elevenlabs;
pub mod openai;
pub mod session;

use std::net::SocketAddr;
use std::time::Duration;

/// Binds `router` on a free loopback port and serves it in the background.
pub async fn serve(router: axum::Router) -> SocketAddr {
    use axum::serve::ListenerExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // As real providers do: small streamed pieces go out at once rather than
    // waiting on Nagle's algorithm (40 ms with delayed ACKs).
    let listener = listener.tap_io(|socket| {
        let _ = socket.set_nodelay(true);
    });
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    addr
}

/// `secs` of a 440 Hz tone at `rate`, as 16-bit little-endian PCM.
pub fn tone_pcm(rate: u32, secs: f64) -> Vec<u8> {
    let n = (f64::from(rate) * secs).round() as usize;
    (0..n)
        .flat_map(|i| {
            let t = i as f64 / f64::from(rate);
            ((8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16).to_le_bytes()
        })
        .collect()
}

/// Waits (on tokio's clock, paused or not) until `check` holds, polling
/// every millisecond; panics after `limit`.
pub async fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
