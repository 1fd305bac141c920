//! A Python WebRTC peer against voxpipe: aiortc 1.16 (from PyPI, as a
//! Python client of Pipecat's SmallWebRTC transport is built on), not this
//! crate's own WebRTC stack. `tests/python/aiortc_peer.py` offers on
//! `POST /api/offer`, opens the `chat` data channel and says RTVI's
//! `client-ready`, plays `assets/samples/hello.wav` as its microphone, and
//! reports what came back. Needs `tests/python/.venv` (tests/run makes it
//! from `tests/python/requirements.txt`) or `VOXPIPE_PYTHON` naming a
//! Python with aiortc.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use support::browser::sample_wav;
use support::server::TestServer;

fn python() -> PathBuf {
    let path = std::env::var_os("VOXPIPE_PYTHON")
        .filter(|path| !path.is_empty())
        .map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/.venv/bin/python"),
            PathBuf::from,
        );
    assert!(
        path.exists(),
        "no Python with aiortc at {}: run tests/run, or `python3 -m venv tests/python/.venv && \
         tests/python/.venv/bin/pip install -r tests/python/requirements.txt`, or set VOXPIPE_PYTHON",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aiortc_peer_speaks_rtvi_and_hears_the_parrot() {
    let server = TestServer::parrot(&[]).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/aiortc_peer.py");
    let mut peer = tokio::process::Command::new(python());
    peer.arg(&script)
        .arg("--server")
        .arg(server.url(""))
        .arg("--wav")
        .arg(sample_wav())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), peer.output())
        .await
        .expect("the peer finishes")
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the peer failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(&stdout).expect("the peer prints JSON");

    assert_eq!(seen["offerStatus"], 200, "{seen}");
    assert!(
        seen["connectionStates"]
            .as_array()
            .unwrap()
            .contains(&"connected".into()),
        "ICE and DTLS connect: {seen}"
    );
    assert_eq!(seen["botReady"]["version"], "2.1.0", "{seen}");
    // The bot heard the WAV and answered it, in RTVI, in order.
    let rtvi: Vec<&str> = seen["rtvi"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|kind| kind.as_str())
        .collect();
    let position = |kind: &str| {
        rtvi.iter()
            .position(|k| *k == kind)
            .unwrap_or_else(|| panic!("no {kind} in {rtvi:?}"))
    };
    assert!(position("bot-ready") < position("user-started-speaking"));
    assert!(position("user-started-speaking") < position("user-stopped-speaking"));
    assert!(position("user-stopped-speaking") < position("bot-started-speaking"));
    // The parrot's audio arrived as Opus at 48 kHz, loud: half a second at
    // least before the bot stopped speaking.
    assert_eq!(seen["finished"], true, "the bot spoke and stopped: {seen}");
    assert_eq!(seen["sampleRates"], serde_json::json!([48_000]), "{seen}");
    assert!(seen["loudFrames"].as_u64().unwrap() >= 25, "{seen}");
    assert!(
        seen["firstLoudSecs"].as_f64().unwrap() >= seen["botStartedSecs"].as_f64().unwrap() - 0.1,
        "no bot audio before the bot started speaking: {seen}"
    );

    // Closing the peer connection hangs up.
    let sessions = server.sessions.ended(1, Duration::from_secs(30)).await;
    // The pc_id the peer got is a capability of its own, not the call id.
    let pc_id = seen["pcId"].as_str().unwrap();
    assert!(pc_id.starts_with("pc-"), "{seen}");
    assert_ne!(sessions[0].session_id, pc_id);
    assert_eq!(sessions[0].end_reason.as_deref(), Some("hangup"), "{seen}");
    assert!(!sessions[0].cancelled);
}
