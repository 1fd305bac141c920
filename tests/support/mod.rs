//! Shared by the integration tests: a fake Twilio (the media streams client
//! and the REST API), WebRTC client calls, test-only processors and a server
//! run in-process on a free loopback port; a real `redis-server` on a free
//! loopback port, fake OpenAI-compatible and webhook servers, and a stand-in
//! for the context aggregators for the context tests.

#![allow(dead_code)] // each test binary uses a different subset
#![allow(unreachable_pub)] // shared between test binaries, not an API

pub mod audio;
#[path = "../common/mod.rs"]
mod common;
pub mod fake_openai;
pub mod processors;
pub mod redis_server;
pub mod rng;
pub mod server;
pub mod turns;
pub mod twilio_client;
pub mod twilio_rest;
pub mod webhook_receiver;
pub mod webrtc;

use std::time::Duration;

/// Waits until `check` holds, polling every 10 ms, for at most `limit`
/// (for state that another process or a real socket changes, where no
/// notification exists).
pub async fn eventually(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
