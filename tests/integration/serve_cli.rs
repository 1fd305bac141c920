//! `voxpipe serve`, as an operator runs it: JSON logs that name the call on
//! every line about it, a graceful stop on SIGTERM, clear start-up errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::fake::twilio_media::{CallConfig, FakeCall};
use support::mulaw::tone;

const WAIT: Duration = Duration::from_secs(30);

/// Lines about the server itself rather than a call.
const SERVER_LINES: &[&str] = &[
    "listening on ",
    "SIGTERM received",
    "shutting down",
    "every call has finished",
    "server stopped",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_logs_json_naming_the_call_and_stops_gracefully_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_voxpipe"))
        .args(["--log-format", "json", "serve", "pipelines/parrot.toml"])
        .args(["--bind", "127.0.0.1:0"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("voxpipe starts");
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            if lines_tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    let first: serde_json::Value =
        serde_json::from_str(&lines.recv_timeout(WAIT).unwrap()).unwrap();
    assert!(
        first["message"]
            .as_str()
            .unwrap()
            .starts_with("listening on ")
    );
    let addr = first["addr"].as_str().unwrap().parse().unwrap();

    let call = FakeCall::connect(addr, CallConfig::new(7)).await;
    call.say(tone(440.0, 300, 8_000.0));
    call.send_raw("not json");
    call.said(WAIT).await;
    call.stop();
    call.closed(WAIT).await;

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "exit status {exit}");
    reader.join().unwrap();

    let mut call_ids = std::collections::BTreeSet::new();
    let mut call_lines = 0;
    for line in std::iter::once(first.to_string()).chain(lines.try_iter()) {
        let json: serde_json::Value = serde_json::from_str(&line).expect("every line is JSON");
        let message = json["message"].as_str().unwrap();
        if SERVER_LINES.iter().any(|m| message.starts_with(m)) {
            continue;
        }
        call_lines += 1;
        let call_id = json["spans"][0]["call_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no call id on a line about a call: {line}"));
        assert_eq!(json["spans"][0]["call_sid"], call.config.call_sid.as_str());
        call_ids.insert(call_id.to_owned());
    }
    assert_eq!(call_ids.len(), 1, "one call, one id");
    // Started, skipped a message, stream ended, session ended, at least.
    assert!(call_lines >= 4, "{call_lines} lines about the call");
}

#[test]
fn serve_refuses_to_start_without_the_auth_token_it_is_told_to_use() {
    let out = Command::new(env!("CARGO_BIN_EXE_voxpipe"))
        .args(["serve", "pipelines/parrot.toml", "--bind", "127.0.0.1:0"])
        .args([
            "--set",
            "transport.twilio.auth_token_env=VOXPIPE_TEST_UNSET_TOKEN",
        ])
        .env_remove("VOXPIPE_TEST_UNSET_TOKEN")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("VOXPIPE_TEST_UNSET_TOKEN")
            && stderr.contains("transport.twilio.auth_token_env"),
        "{stderr}"
    );
}
