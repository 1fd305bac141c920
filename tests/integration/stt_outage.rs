//! A speech-to-text outage during an utterance loses no turn: a request
//! refused before any answer is tried again within the utterance's budget,
//! and an utterance that still cannot be transcribed is kept as an
//! untranscribed turn, with an error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::time::Duration;

use serde_json::json;
use support::fake::openai::{FakeOpenAi, Reply};
use support::session::{build, error_frames};
use voxpipe::frame::{AudioFrame, Frame, FrameBody};
use voxpipe::services::stt::{OpenAiSttConfig, UNTRANSCRIBED};
use voxpipe::testing::run_test;

/// Half a second of 20 ms input frames (no VAD: one utterance, sent when
/// the input ends).
fn utterance() -> Vec<FrameBody> {
    let pcm = support::signal::tone_pcm(16_000, 0.5);
    pcm.chunks(640)
        .enumerate()
        .map(|(i, chunk)| {
            let samples: Vec<i16> = chunk
                .chunks(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            let pts = Duration::from_millis(20 * i as u64);
            FrameBody::InputAudio(AudioFrame::from_samples(&samples, 16_000, 1, pts))
        })
        .collect()
}

fn stt(server: &FakeOpenAi, budget_secs: f64) -> voxpipe::pipeline::NamedProcessor {
    build::<OpenAiSttConfig>(
        "stt",
        &format!(
            "base_url = \"{}\"\nmodel = \"whisper-1\"\napi_key_env = \"OPENAI_API_KEY\"\n\
             connection = {{ response_timeout_secs = {budget_secs}, retry_initial_secs = 0.1, retry_max_secs = 0.4 }}\n",
            server.base_url
        ),
        &[("OPENAI_API_KEY", "sk-test")],
    )
}

fn transcripts(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .filter_map(|f| match &f.body {
            FrameBody::Transcription(t) => Some(t.text.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn an_utterance_during_an_outage_is_transcribed_once_the_service_is_back() {
    // Refused for 1.5 s; the utterance may wait 10 s for its words.
    let server = FakeOpenAi::start_after_outage(Duration::from_millis(1_500)).await;
    server.push_transcription(Reply::Json(json!({"text": "Still here."})));
    let out = run_test(vec![stt(&server, 10.0)], utterance()).await;
    assert_eq!(transcripts(&out.downstream), ["Still here."]);
    assert!(error_frames(&out.upstream).is_empty());
    assert_eq!(server.received("transcriptions").len(), 1);
}

#[tokio::test]
async fn an_utterance_that_cannot_be_transcribed_in_its_budget_is_kept_with_an_error() {
    // Refused for longer than the utterance's 1 s budget.
    let server = FakeOpenAi::start_after_outage(Duration::from_secs(30)).await;
    let out = run_test(vec![stt(&server, 1.0)], utterance()).await;
    assert_eq!(transcripts(&out.downstream), [UNTRANSCRIBED]);
    let errors = error_frames(&out.upstream);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(!errors[0].fatal);
}
