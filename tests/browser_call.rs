//! The browser client in real headless Chromium: loads the page `voxpipe
//! serve` serves (the parrot), connects with a fake microphone playing the
//! sample speech, and checks that the bot's audio reaches the page and the
//! transcript shows the events (see `tests/browser/call.mjs`). With
//! `VOXPIPE_SCREENSHOT=path.png` it also saves a screenshot of the call.
//!
//! Needs Debian's `chromium` and `npm ci` in `tests/browser/`; `.ci/run`
//! installs both. Without them this test fails, saying what is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use support::server::TestServer;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.exists(),
        "no Chromium at {}: install Debian's `chromium` (apt-get install chromium; .ci/run does) or set CHROMIUM",
        path.display()
    );
    path
}

fn browser_tests() -> PathBuf {
    let dir = repo().join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci` in {} (.ci/run does)",
        dir.display()
    );
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_client_talks_to_the_parrot() {
    let chromium = chromium();
    let dir = browser_tests();
    let server = TestServer::parrot(&[]).await;
    let wav = repo().join("assets/samples/hello.wav");
    let screenshot = std::env::var_os("VOXPIPE_SCREENSHOT").map(PathBuf::from);

    let mut node = tokio::process::Command::new("node");
    node.current_dir(&dir)
        .arg("call.mjs")
        .args(["--url", &server.url("/")])
        .arg("--wav")
        .arg(&wav)
        .env("CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(path) = &screenshot {
        node.arg("--screenshot").arg(path);
    }
    let output = tokio::time::timeout(Duration::from_secs(90), node.output())
        .await
        .expect("the browser test finishes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser call failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let seen: serde_json::Value = serde_json::from_str(&stdout).expect("the script prints JSON");
    assert!(seen["maxBotLevel"].as_f64().unwrap() > 0.01, "{seen}");
    // The page hung up: the session ended as a hang-up.
    let sessions = server.sessions.ended(1, Duration::from_secs(20)).await;
    assert_eq!(sessions[0].end_reason.as_deref(), Some("hangup"));
}
