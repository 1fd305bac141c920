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

use std::ffi::OsString;
use std::time::Duration;

use support::browser::{run_script, sample_wav};
use support::server::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_client_talks_to_the_parrot() {
    let server = TestServer::parrot(&[]).await;
    let mut args: Vec<OsString> = vec![
        "--url".into(),
        server.url("/").into(),
        "--wav".into(),
        sample_wav().into(),
    ];
    if let Some(path) = std::env::var_os("VOXPIPE_SCREENSHOT") {
        args.extend(["--screenshot".into(), path]);
    }
    let stdout = run_script(
        "call.mjs",
        &["playwright-core"],
        &args,
        Duration::from_secs(90),
    )
    .await;
    let seen: serde_json::Value = serde_json::from_str(&stdout).expect("the script prints JSON");
    assert!(seen["maxBotLevel"].as_f64().unwrap() > 0.01, "{seen}");
    // The page hung up: the session ended as a hang-up.
    let sessions = server.sessions.ended(1, Duration::from_secs(20)).await;
    assert_eq!(sessions[0].end_reason.as_deref(), Some("hangup"));
}
