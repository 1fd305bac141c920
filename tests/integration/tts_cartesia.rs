//! Cartesia's TTS socket against its fake: a context per response, word
//! times, a fresh context after a tool call, cancellation and errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;
use crate::tts_services::{answer, audio_secs, names, spoken};

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::session::{Live, build, error_frames, unique};
use tokio::sync::Notify;
use voxpipe::frame::FrameBody;
use voxpipe::services::tts::CartesiaTtsConfig;
use voxpipe::testing::run_test;

fn cartesia(server: &support::fake::cartesia::FakeCartesia) -> voxpipe::pipeline::NamedProcessor {
    cartesia_with(server, "")
}

fn cartesia_with(
    server: &support::fake::cartesia::FakeCartesia,
    extra: &str,
) -> voxpipe::pipeline::NamedProcessor {
    build::<CartesiaTtsConfig>(
        "tts",
        &format!(
            "url = \"{}\"\nvoice_id = \"v-1\"\nsample_rate = 24000\n{extra}",
            server.url
        ),
        &[("CARTESIA_API_KEY", "ck-test")],
    )
}

#[tokio::test]
async fn cartesia_continues_one_context_per_response_and_times_words() {
    let server = support::fake::cartesia::FakeCartesia::start().await;
    let out = run_test(
        vec![cartesia(&server)],
        answer(&["It is sunny. ", "Take a hat."]),
    )
    .await;
    assert!(
        error_frames(&out.upstream).is_empty(),
        "{:?}",
        error_frames(&out.upstream)
    );
    let support::fake::cartesia::Connection {
        query,
        key,
        messages,
    } = &server.connections()[0];
    assert_eq!(query, "cartesia_version=2025-04-16");
    assert_eq!(key.as_deref(), Some("ck-test"));
    let transcripts: Vec<(Value, Value)> = messages
        .iter()
        .map(|m| (m["transcript"].clone(), m["continue"].clone()))
        .collect();
    assert_eq!(
        transcripts,
        [
            (json!("It is sunny. "), json!(true)),
            (json!("Take a hat. "), json!(true)),
            (json!(""), json!(false))
        ]
    );
    assert_eq!(
        messages[0]["output_format"],
        json!({"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000})
    );
    assert_eq!(messages[0]["voice"], json!({"mode": "id", "id": "v-1"}));
    assert!(
        messages
            .iter()
            .all(|m| m["context_id"] == messages[0]["context_id"])
    );
    let said = spoken(&out.downstream);
    let words: Vec<&str> = said.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(words, ["It", "is", "sunny.", "Take", "a", "hat."]);
    assert_eq!(
        said[3].start,
        Duration::from_millis(130),
        "placed in the context's audio"
    );
    // 24 kHz from the provider, 16 kHz in the pipeline.
    let secs = audio_secs(&out.downstream);
    assert!((secs - 0.26).abs() < 0.005, "{secs}");
    assert_eq!(names(&out).last(), Some(&"End"));
}

#[tokio::test]
async fn cartesia_text_after_a_tool_call_goes_to_a_fresh_context() {
    // The fake's contexts expire once their audio has gone out, as
    // Cartesia's do a second after it: a tool call takes longer.
    let server = support::fake::cartesia::FakeCartesia::start().await;
    server.push_script(support::fake::cartesia::Script {
        expire_spoken_contexts: true,
        ..Default::default()
    });
    let call = voxpipe::conversation::ToolCall {
        id: "call_1".into(),
        name: "weather".into(),
        arguments: "{}".into(),
    };
    let out = run_test(
        vec![cartesia(&server)],
        vec![
            FrameBody::LlmResponseStart,
            FrameBody::LlmText("Let me check.".into()),
            FrameBody::FunctionCallInProgress(call),
            FrameBody::LlmText("It's sunny.".into()),
            FrameBody::LlmResponseEnd { failed: false },
        ],
    )
    .await;
    // Before, "It's sunny." went to the expired context: refused, unsaid.
    assert!(
        error_frames(&out.upstream).is_empty(),
        "{:?}",
        error_frames(&out.upstream)
    );
    let messages = &server.connections()[0].messages;
    let sent: Vec<(Value, Value)> = messages
        .iter()
        .map(|m| (m["transcript"].clone(), m["continue"].clone()))
        .collect();
    assert_eq!(
        sent,
        [
            (json!("Let me check. "), json!(true)),
            (json!(""), json!(false)),
            (json!("It's sunny. "), json!(true)),
            (json!(""), json!(false))
        ]
    );
    assert_ne!(messages[2]["context_id"], messages[0]["context_id"]);
    let said = spoken(&out.downstream);
    let words: Vec<&str> = said.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(words, ["Let", "me", "check.", "It's", "sunny."]);
    assert_eq!(
        said[3].start,
        Duration::from_millis(140),
        "timed after the first context's audio"
    );
    let kinds = names(&out);
    let count = |name| kinds.iter().filter(|n| **n == name).count();
    assert_eq!(
        (count("TtsStarted"), count("TtsStopped")),
        (1, 1),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn cartesia_cancels_the_context_on_an_interruption_and_reports_errors() {
    let server = support::fake::cartesia::FakeCartesia::start().await;
    let live = Live::start(vec![cartesia(&server)]);
    live.handle.queue_frame(FrameBody::LlmResponseStart).await;
    live.handle
        .queue_frame(FrameBody::LlmText("First words. More".into()))
        .await;
    live.wait_for("audio", |b| matches!(b, FrameBody::OutputAudio(_)))
        .await;
    live.handle.queue_frame(FrameBody::Interruption).await;
    server
        .wait_until("cancel", |connections| {
            connections[0]
                .messages
                .iter()
                .any(|m| m.get("cancel").is_some())
        })
        .await;
    live.finish().await;
    let messages = &server.connections()[0].messages;
    assert_eq!(
        messages.last().unwrap(),
        &json!({"context_id": messages[0]["context_id"], "cancel": true})
    );

    server.push_script(support::fake::cartesia::Script {
        error: Some("Voice not found.".into()),
        ..Default::default()
    });
    let out = run_test(vec![cartesia(&server)], answer(&["Hello."])).await;
    let errors = error_frames(&out.upstream);
    assert_eq!(errors[0].message, "Voice not found.");
    assert_eq!(errors[0].provider.as_deref(), Some("cartesia"));
    assert!(
        names(&out).ends_with(&["TtsStopped", "LlmResponseEnd", "End"]),
        "{:?}",
        names(&out)
    );
}

#[tokio::test]
async fn cartesia_an_oversized_message_fails_the_utterance_not_the_memory() {
    let server = support::fake::cartesia::FakeCartesia::start().await;
    // 3 MiB of audio in one message: over the 2 MiB a provider message may
    // take, so the read fails instead of buffering it.
    server.push_script(support::fake::cartesia::Script {
        oversized_chunk: Some(3 << 20),
        ..Default::default()
    });
    let out = run_test(vec![cartesia(&server)], answer(&["Hello."])).await;
    let errors = error_frames(&out.upstream);
    assert!(
        errors
            .iter()
            .any(|e| e.message.contains("Message too long")),
        "{errors:?}"
    );
    assert!(!names(&out).contains(&"OutputAudio"), "{:?}", names(&out));
    assert!(names(&out).ends_with(&["End"]), "{:?}", names(&out));
}

#[tokio::test]
async fn cartesia_an_interruption_while_the_socket_connects_takes_effect_at_once() {
    let server = support::fake::cartesia::FakeCartesia::start().await;
    // The warm-up is refused, so the first text opens the socket; that
    // handshake is held until the test lets it through.
    server.push_script(support::fake::cartesia::Script {
        reject: Some((503, "overloaded".into())),
        ..Default::default()
    });
    let handshake = Arc::new(Notify::new());
    server.push_script(support::fake::cartesia::Script {
        hold_handshake: Some(Arc::clone(&handshake)),
        ..Default::default()
    });
    let live = Live::start(vec![cartesia_with(
        &server,
        "connection = { max_retries = 0, response_timeout_secs = 60 }",
    )]);
    live.wait_for("the refused warm-up", |b| matches!(b, FrameBody::Error(_)))
        .await;
    live.handle.queue_frame(FrameBody::LlmResponseStart).await;
    live.handle
        .queue_frame(FrameBody::LlmText("Stale words. More".into()))
        .await;
    server
        .wait_until("the socket's handshake", |connections| {
            !connections.is_empty()
        })
        .await;
    live.handle.queue_frame(FrameBody::Interruption).await;
    // A response with nothing to say ends as soon as the engine reads it,
    // after the interruption: the engine is not stuck behind the connect.
    live.handle.queue_frame(FrameBody::LlmResponseStart).await;
    live.handle
        .queue_frame(FrameBody::LlmResponseEnd { failed: false })
        .await;
    live.wait_for_from("tts", "the empty response's end", |b| {
        matches!(b, FrameBody::LlmResponseEnd { .. })
    })
    .await;
    handshake.notify_one();
    for frame in answer(&["Fresh words."]) {
        live.handle.queue_frame(frame).await;
    }
    live.wait_for("the fresh response's audio", |b| {
        matches!(b, FrameBody::TtsStopped)
    })
    .await;
    let frames = unique(&live.finish().await);
    let transcripts: Vec<Value> = server.connections()[0]
        .messages
        .iter()
        .map(|m| m["transcript"].clone())
        .collect();
    assert_eq!(
        transcripts,
        [json!("Fresh words. "), json!("")],
        "the interrupted text never reaches the provider"
    );
    let words: Vec<String> = spoken(&frames).into_iter().map(|s| s.text).collect();
    assert_eq!(words, ["Fresh", "words."]);
}
