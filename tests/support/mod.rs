//! Helpers for the context tests: a real `redis-server` on a free loopback
//! port, and fake OpenAI-compatible and webhook servers for tests.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

pub mod fake_openai;
pub mod redis_server;
pub mod rng;
pub mod turns;
pub mod webhook_receiver;

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
