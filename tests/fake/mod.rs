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

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
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

/// What a fake socket server is told to do and what it saw: a script per
/// connection, in order (the default once they run out), and a record per
/// connection.
pub struct Scripted<S, C> {
    scripts: Mutex<VecDeque<S>>,
    records: Mutex<Vec<C>>,
}

impl<S, C> Default for Scripted<S, C> {
    fn default() -> Self {
        Scripted {
            scripts: Mutex::new(VecDeque::new()),
            records: Mutex::new(Vec::new()),
        }
    }
}

impl<S: Default, C: Clone> Scripted<S, C> {
    /// The script of the next connection.
    pub fn next_script(&self) -> S {
        self.scripts.lock().unwrap().pop_front().unwrap_or_default()
    }

    /// Records a new connection; returns its index.
    pub fn record(&self, record: C) -> usize {
        let mut records = self.records.lock().unwrap();
        records.push(record);
        records.len() - 1
    }

    /// Changes the record of connection `index`.
    pub fn update(&self, index: usize, change: impl FnOnce(&mut C)) {
        change(&mut self.records.lock().unwrap()[index]);
    }
}

/// A running fake socket server.
pub struct Fake<S, C> {
    /// Where it listens (`ws://127.0.0.1:PORT...`).
    pub url: String,
    state: Arc<Scripted<S, C>>,
}

impl<S, C> Clone for Fake<S, C> {
    fn clone(&self) -> Self {
        Fake {
            url: self.url.clone(),
            state: Arc::clone(&self.state),
        }
    }
}

impl<S: Default, C: Clone> Fake<S, C> {
    /// Serves `router` (built over the shared state) and answers at `path`.
    pub async fn serve(state: Arc<Scripted<S, C>>, router: axum::Router, path: &str) -> Self {
        let addr = serve(router).await;
        Fake {
            url: format!("ws://{addr}{path}"),
            state,
        }
    }

    /// The behaviour of the next connection (later ones behave normally).
    pub fn push_script(&self, script: S) {
        self.state.scripts.lock().unwrap().push_back(script);
    }

    /// What each connection saw.
    pub fn connections(&self) -> Vec<C> {
        self.state.records.lock().unwrap().clone()
    }
}
