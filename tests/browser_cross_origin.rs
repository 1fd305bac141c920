//! A page on another origin in real headless Chromium: with its origin in
//! `[server] cors_origins` it starts a session (`POST /start`, preflighted)
//! and connects on the session's own offer path; from an origin not listed
//! the browser blocks the call before any session starts. Two origins are
//! two ports on 127.0.0.1 (see `tests/browser/cross_origin.mjs`).
//!
//! Needs Debian's `chromium` and `npm ci` in `tests/browser/`; without them
//! this test fails, saying what is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use axum::routing::get;
use serde_json::Value;
use support::server::{Setup, TestServer};

fn browser_tests() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci` in {}",
        dir.display()
    );
    dir
}

/// A bare page, served on a port of its own: an origin of its own.
async fn other_origin() -> String {
    let router = axum::Router::new().route(
        "/",
        get(|| async { axum::response::Html("<!doctype html><title>another site</title>") }),
    );
    format!("http://{}", support::net::serve(router).await)
}

/// Runs the page script from `page` against `server`.
async fn call_from(page: &str, server: &str) -> Value {
    let chromium = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(chromium.exists(), "no Chromium at {}", chromium.display());
    let output = tokio::process::Command::new("node")
        .current_dir(browser_tests())
        .args([
            "cross_origin.mjs",
            "--page",
            &format!("{page}/"),
            "--server",
            server,
        ])
        .env("CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("the browser finishes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("{stdout}\n{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_an_allowed_origin_connects_and_others_are_refused() {
    let allowed = other_origin().await;
    let refused = other_origin().await;
    let cors = format!("server.cors_origins=[\"{allowed}\"]");
    let server = TestServer::start(Setup {
        overrides: &[cors.as_str()],
        ..Setup::default()
    })
    .await;
    let base = server.url("");

    let seen = call_from(&refused, &base).await;
    assert_eq!(seen["origin"], refused.as_str());
    assert_eq!(seen["started"], false, "{seen}");
    assert!(
        seen["error"]
            .as_str()
            .unwrap_or_default()
            .contains("Failed to fetch"),
        "the browser blocked it: {seen}"
    );

    let seen = call_from(&allowed, &base).await;
    assert_eq!(seen["origin"], allowed.as_str());
    assert_eq!(seen["connected"], true, "{seen}");
    let sessions = server.sessions.ended(1, Duration::from_secs(20)).await;
    assert_eq!(sessions.len(), 1, "only the allowed page started a session");
    assert_eq!(sessions[0].custom_parameters["user"], "ada");
}
