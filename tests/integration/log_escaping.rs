//! Log injection: values from the network (a `streamSid`, a `callSid`, an
//! event name) cannot start a new line, write raw ESC bytes, or make huge
//! lines in the default text log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use support::served_binary::ServedBinary;

/// The log lines of a server in `log_format` that was sent a stream with
/// hostile ids and event names (control characters, 60,000 characters).
async fn lines_logged_for_a_hostile_stream(log_format: &str) -> Vec<String> {
    let mut server = ServedBinary::start("pipelines/parrot.toml", &[], log_format, None);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/twilio/ws", server.addr))
        .await
        .unwrap();
    let sid = "MZ1\n2026-01-01T00:00:00Z  INFO FORGED stream line\u{1b}[2J";
    let start = json!({
        "event": "start", "sequenceNumber": "1", "streamSid": sid,
        "start": {
            "streamSid": sid, "accountSid": "AC1",
            // Long enough that only the log's own cut keeps lines short.
            "callSid": format!("CA1\nFORGED call line{}", "c".repeat(20_000)),
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {},
        },
    });
    let junk = [
        json!({"event": "dance\nFORGED event line\u{1b}]0;title\u{7}", "streamSid": sid}),
        json!({"event": "x".repeat(60_000), "streamSid": sid}),
        json!({"event": "media", "streamSid": "MZ2\nFORGED other stream", "media": {"payload": ""}}),
    ];
    ws.send(Message::text(start.to_string())).await.unwrap();
    for message in &junk {
        ws.send(Message::text(message.to_string())).await.unwrap();
    }
    ws.send(Message::text(
        json!({"event": "stop", "streamSid": sid}).to_string(),
    ))
    .await
    .unwrap();
    // The server closes the stream once the session is over.
    while let Some(Ok(message)) = ws.next().await {
        if message.is_close() {
            break;
        }
    }
    server.terminate();
    let exit = tokio::task::spawn_blocking(move || {
        let exit = server.wait_exit(Duration::from_secs(60));
        (exit, server)
    })
    .await
    .unwrap();
    assert!(exit.0.expect("exited").success());
    exit.1.drain_lines()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newline_in_a_logged_field_cannot_start_a_new_log_line() {
    let lines = lines_logged_for_a_hostile_stream("text").await;

    assert!(
        lines
            .iter()
            .any(|l| l.contains("media stream started") && l.contains(r"MZ1\n2026")),
        "the stream's start is logged, its newline escaped: {lines:#?}"
    );
    for line in &lines {
        assert!(
            !line.contains("FORGED") || line.contains(r"\nFORGED"),
            "forged: {line}"
        );
        assert!(!line.contains('\u{1b}'), "raw ESC: {line:?}");
        assert!(!line.contains('\u{7}'), "raw BEL: {line:?}");
        assert!(line.len() < 4_096, "a line of {} bytes", line.len());
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains(r"dance\nFORGED event line\u{1b}")),
        "the skipped event is logged, escaped: {lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_stay_single_objects_of_bounded_size() {
    let lines = lines_logged_for_a_hostile_stream("json").await;
    let mut logged = Vec::new();
    for line in &lines {
        assert!(line.len() < 4_096, "a line of {} bytes", line.len());
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("not one JSON object ({err}): {line:?}"));
        logged.push(value);
    }
    let messages: Vec<String> = logged.iter().map(|v| v.to_string()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains(r"dance\nFORGED event line\u001b")),
        "the skipped event is logged, escaped: {lines:#?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("more chars]")),
        "the 20,000-character call id is logged, cut: {lines:#?}"
    );
}
