//! The TTS providers against fake servers: OpenAI-compatible speech over
//! HTTP and ElevenLabs over a WebSocket (Cartesia's in `tts_cartesia`);
//! sentences, spoken text, contexts, interruptions and error paths.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::time::Duration;

use serde_json::{Value, json};
use support::fake::openai::{FakeOpenAi, Part, Reply};
use support::session::{Live, build, error_frames, unique};
use voxpipe::frame::{Frame, FrameBody, SpokenText, SpokenTiming};
use voxpipe::services::tts::{ElevenLabsTtsConfig, OpenAiTtsConfig};
use voxpipe::testing::{TestOutput, run_test};

pub(crate) fn answer(pieces: &[&str]) -> Vec<FrameBody> {
    let mut frames = vec![FrameBody::LlmResponseStart];
    frames.extend(pieces.iter().map(|p| FrameBody::LlmText((*p).to_owned())));
    frames.push(FrameBody::LlmResponseEnd { failed: false });
    frames
}

pub(crate) fn names(out: &TestOutput) -> Vec<&'static str> {
    let mut names: Vec<&str> = out
        .downstream
        .iter()
        .map(Frame::name)
        .filter(|n| *n != "Metrics")
        .collect();
    names.dedup();
    names
}

pub(crate) fn spoken(frames: &[Frame]) -> Vec<SpokenText> {
    frames
        .iter()
        .filter_map(|f| match &f.body {
            FrameBody::TtsText(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

pub(crate) fn audio_secs(frames: &[Frame]) -> f64 {
    frames
        .iter()
        .filter_map(|f| match &f.body {
            FrameBody::OutputAudio(a) => {
                assert_eq!((a.sample_rate, a.channels), (16_000, 1));
                Some(a.duration().as_secs_f64())
            }
            _ => None,
        })
        .sum()
}

fn openai_tts(server: &FakeOpenAi, extra: &str) -> voxpipe::pipeline::NamedProcessor {
    build::<OpenAiTtsConfig>(
        "tts",
        &format!(
            "base_url = \"{}\"\nvoice = \"nova\"\napi_key_env = \"OPENAI_API_KEY\"\n{extra}",
            server.base_url
        ),
        &[("OPENAI_API_KEY", "sk-test")],
    )
}

const FAST: &str =
    "connection = { retry_initial_secs = 0.001, retry_max_secs = 0.002, read_timeout_secs = 0.3 }";

#[tokio::test]
async fn openai_speech_is_asked_per_sentence_and_resampled_to_the_pipeline() {
    let server = FakeOpenAi::start().await;
    // Pieces of odd sizes: samples split across reads must survive.
    let pcm = support::signal::tone_pcm(24_000, 0.3);
    server.push_speech(Reply::Pcm(
        pcm.chunks(333).map(|c| Part::Raw(c.to_vec())).collect(),
    ));
    server.push_speech(Reply::Pcm(vec![Part::Raw(support::signal::tone_pcm(
        24_000, 0.2,
    ))]));
    let out = run_test(
        vec![openai_tts(&server, "")],
        answer(&["Hello there. ", "How are ", "you?"]),
    )
    .await;

    let requests = server.received("audio/speech");
    assert_eq!(
        requests[0].json(),
        json!({"model": "gpt-4o-mini-tts", "input": "Hello there.", "voice": "nova", "response_format": "pcm"})
    );
    assert_eq!(requests[0].authorization.as_deref(), Some("Bearer sk-test"));
    assert_eq!(requests[1].json()["input"], json!("How are you?"));
    assert_eq!(
        names(&out),
        [
            "Start",
            "LlmResponseStart",
            "TtsStarted",
            "TtsText",
            "OutputAudio",
            "TtsText",
            "OutputAudio",
            "TtsStopped",
            "LlmResponseEnd",
            "End"
        ]
    );
    // The resampler's 10 ms delay line comes out at the end.
    let secs = audio_secs(&out.downstream);
    assert!((secs - 0.51).abs() < 0.005, "{secs} s");
    let said = spoken(&out.downstream);
    assert_eq!(said[0].text, "Hello there.");
    assert_eq!(said[0].start, Duration::ZERO);
    assert_eq!(said[1].timing, SpokenTiming::Sentence);
    assert!(
        (said[1].start.as_secs_f64() - 0.3).abs() < 0.02,
        "{:?}",
        said[1].start
    );
    assert!(error_frames(&out.upstream).is_empty());
}

#[tokio::test]
async fn text_before_a_tool_call_is_spoken_before_the_tool_runs() {
    let server = FakeOpenAi::start().await;
    for _ in 0..3 {
        server.push_speech(Reply::Pcm(vec![Part::Raw(support::signal::tone_pcm(
            24_000, 0.1,
        ))]));
    }
    let call = voxpipe::conversation::ToolCall {
        id: "call_1".into(),
        name: "weather".into(),
        arguments: "{}".into(),
    };
    let out = run_test(
        vec![openai_tts(&server, "")],
        vec![
            FrameBody::LlmResponseStart,
            FrameBody::LlmText("Sure. Let me".into()),
            FrameBody::LlmText(" check.".into()),
            FrameBody::FunctionCallInProgress(call),
            // The next round's text follows with no space between.
            FrameBody::LlmText("It's sunny.".into()),
            FrameBody::LlmResponseEnd { failed: false },
        ],
    )
    .await;
    let inputs: Vec<Value> = server
        .received("audio/speech")
        .iter()
        .map(|r| r.json()["input"].clone())
        .collect();
    // Before, "Let me check." waited for the next round and ran into it:
    // "Let me check.It's sunny.".
    assert_eq!(
        inputs,
        [json!("Sure."), json!("Let me check."), json!("It's sunny.")]
    );
    let said: Vec<String> = spoken(&out.downstream)
        .into_iter()
        .map(|s| s.text)
        .collect();
    assert_eq!(said, ["Sure.", "Let me check.", "It's sunny."]);
    assert!(error_frames(&out.upstream).is_empty());
}

#[tokio::test]
async fn openai_speech_refused_key_rate_limit_and_failure_mid_audio() {
    let server = FakeOpenAi::start().await;
    server.push_speech(Reply::error(
        401,
        "Incorrect API key provided.",
        "invalid_request_error",
    ));
    let out = run_test(vec![openai_tts(&server, FAST)], answer(&["Hi."])).await;
    let errors = error_frames(&out.upstream);
    assert_eq!((errors[0].status, errors[0].fatal), (Some(401), true));
    assert_eq!(errors[0].provider.as_deref(), Some("openai"));
    assert_eq!(server.received("audio/speech").len(), 1, "not retried");
    assert_eq!(
        names(&out),
        [
            "Start",
            "LlmResponseStart",
            "TtsStarted",
            "TtsStopped",
            "LlmResponseEnd",
            "End"
        ]
    );

    // 429 then success: retried before any audio, spoken once.
    server.push_speech(Reply::error(429, "Rate limit reached", "requests"));
    server.push_speech(Reply::Pcm(vec![Part::Raw(support::signal::tone_pcm(
        24_000, 0.25,
    ))]));
    let out = run_test(vec![openai_tts(&server, FAST)], answer(&["Again."])).await;
    assert!(error_frames(&out.upstream).is_empty());
    assert!(
        (audio_secs(&out.downstream) - 0.26).abs() < 0.005,
        "{}",
        audio_secs(&out.downstream)
    );

    // A failure once audio flowed is reported, not retried: nothing is
    // said twice, and the next sentence is still spoken.
    let before = server.received("audio/speech").len();
    server.push_speech(Reply::Pcm(vec![
        Part::Raw(support::signal::tone_pcm(24_000, 0.2)),
        Part::Abort,
    ]));
    server.push_speech(Reply::Pcm(vec![Part::Raw(support::signal::tone_pcm(
        24_000, 0.1,
    ))]));
    let out = run_test(
        vec![openai_tts(&server, FAST)],
        answer(&["First one. ", "Second one."]),
    )
    .await;
    assert_eq!(server.received("audio/speech").len() - before, 2);
    let errors = error_frames(&out.upstream);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].message.starts_with("request failed"),
        "{}",
        errors[0].message
    );
    assert!(
        (audio_secs(&out.downstream) - 0.31).abs() < 0.005,
        "{}",
        audio_secs(&out.downstream)
    );
    assert_eq!(spoken(&out.downstream).len(), 2);

    // A stall times out; the rest goes on.
    server.push_speech(Reply::Pcm(vec![
        Part::Raw(support::signal::tone_pcm(24_000, 0.1)),
        Part::Stall,
    ]));
    server.push_speech(Reply::Pcm(vec![Part::Raw(support::signal::tone_pcm(
        24_000, 0.1,
    ))]));
    let out = run_test(
        vec![openai_tts(&server, FAST)],
        answer(&["Slow one. ", "Quick one."]),
    )
    .await;
    assert_eq!(
        error_frames(&out.upstream)[0].message,
        "no data within 300ms"
    );
    assert!(
        (audio_secs(&out.downstream) - 0.21).abs() < 0.005,
        "{}",
        audio_secs(&out.downstream)
    );
}

fn elevenlabs(
    server: &support::fake::elevenlabs::FakeElevenLabs,
) -> voxpipe::pipeline::NamedProcessor {
    elevenlabs_with(server, "")
}

/// ElevenLabs on `server`, with more `connection` keys.
fn elevenlabs_with(
    server: &support::fake::elevenlabs::FakeElevenLabs,
    connection: &str,
) -> voxpipe::pipeline::NamedProcessor {
    build::<ElevenLabsTtsConfig>(
        "tts",
        &format!(
            "base_url = \"{}\"\nvoice_id = \"voice-1\"\nvoice_settings = {{ stability = 0.5 }}\n\
             connection = {{ retry_initial_secs = 0.001, retry_max_secs = 0.002{connection} }}",
            server.url
        ),
        &[("ELEVENLABS_API_KEY", "xi-test")],
    )
}

#[tokio::test]
async fn elevenlabs_holds_the_close_until_the_audio_has_started() {
    // ElevenLabs honours a `close_context` that comes before the synthesis
    // started with nothing at all (Pipecat #4681, #5271): sent right after
    // the last sentence, the response was silent and failed at the read
    // timeout.
    let server = support::fake::elevenlabs::FakeElevenLabs::start().await;
    server.push_script(support::fake::elevenlabs::Script {
        synthesis_delay: Some(Duration::from_millis(100)),
        ..Default::default()
    });
    let out = run_test(
        vec![elevenlabs_with(&server, ", read_timeout_secs = 3")],
        answer(&["Hello there. ", "Bye."]),
    )
    .await;
    assert!(
        error_frames(&out.upstream).is_empty(),
        "{:?}",
        error_frames(&out.upstream)
    );
    let words: Vec<String> = spoken(&out.downstream)
        .into_iter()
        .map(|s| s.text)
        .collect();
    assert_eq!(words, ["Hello", "there.", "Bye."]);
    assert!((audio_secs(&out.downstream) - 0.18).abs() < 0.005);
    let messages = &server.connections()[0].messages;
    assert_eq!(
        messages.last().unwrap(),
        &json!({"context_id": messages[0]["context_id"], "close_context": true}),
        "closed once, at the end"
    );
}

#[tokio::test]
async fn elevenlabs_speaks_a_context_per_response_with_timed_words() {
    let server = support::fake::elevenlabs::FakeElevenLabs::start().await;
    let mut inputs = answer(&["Hello there. ", "Bye."]);
    inputs.extend(answer(&["Again."]));
    let out = run_test(vec![elevenlabs(&server)], inputs).await;
    assert!(
        error_frames(&out.upstream).is_empty(),
        "{:?}",
        error_frames(&out.upstream)
    );

    let connections = server.connections();
    assert_eq!(connections.len(), 1, "one socket for the session");
    let support::fake::elevenlabs::Connection {
        voice,
        query,
        key,
        messages,
    } = &connections[0];
    assert_eq!(voice, "voice-1");
    assert!(
        query.contains("output_format=pcm_16000")
            && query.contains("model_id=eleven_flash_v2_5")
            && query.contains("inactivity_timeout=180"),
        "{query}"
    );
    assert_eq!(key.as_deref(), Some("xi-test"));
    let first_context = messages[0]["context_id"].as_str().unwrap().to_owned();
    // The close goes out once the last sentence's audio came: the next
    // response's messages may come before it.
    let first: Vec<&Value> = messages
        .iter()
        .filter(|m| m["context_id"] == first_context)
        .collect();
    assert_eq!(
        first,
        [
            &json!({"text": " ", "context_id": first_context, "voice_settings": {"stability": 0.5}}),
            &json!({"text": "Hello there. ", "context_id": first_context, "flush": true}),
            &json!({"text": "Bye. ", "context_id": first_context, "flush": true}),
            &json!({"context_id": first_context, "close_context": true}),
        ]
    );
    let second_context = messages
        .iter()
        .find_map(|m| m["context_id"].as_str().filter(|c| *c != first_context));
    assert!(second_context.is_some(), "a context per response");

    let said = spoken(&out.downstream);
    let words: Vec<&str> = said.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(words, ["Hello", "there.", "Bye.", "Again."]);
    assert!(said.iter().all(|s| s.timing == SpokenTiming::Word));
    // 10 ms per character: "Bye." starts after "Hello there. " (13 chars).
    assert_eq!(said[1].start, Duration::from_millis(60));
    assert_eq!(said[2].start, Duration::from_millis(130));
    assert_eq!(said[3].start, Duration::ZERO, "times restart per response");
    let stops = out
        .downstream
        .iter()
        .filter(|f| matches!(f.body, FrameBody::TtsStopped))
        .count();
    assert_eq!(stops, 2);
    assert!((audio_secs(&out.downstream) - 0.25).abs() < 0.005);
}

#[tokio::test]
async fn elevenlabs_refused_key_and_a_socket_lost_mid_response() {
    let server = support::fake::elevenlabs::FakeElevenLabs::start().await;
    server.push_script(support::fake::elevenlabs::Script {
        reject: Some((401, "Invalid API key".into())),
        ..Default::default()
    });
    let out = run_test(vec![elevenlabs(&server)], Vec::new()).await;
    let errors = error_frames(&out.upstream);
    assert_eq!((errors[0].status, errors[0].fatal), (Some(401), true));
    assert_eq!(errors[0].message, "HTTP 401: Invalid API key");
    assert_eq!(errors[0].provider.as_deref(), Some("elevenlabs"));

    server.push_script(support::fake::elevenlabs::Script {
        drop_after_audio: Some(1),
        ..Default::default()
    });
    let live = Live::start(vec![elevenlabs(&server)]);
    for frame in answer(&["First sentence. ", "Second sentence."]) {
        live.handle.queue_frame(frame).await;
    }
    live.wait_for("the end of the lost response", |b| {
        matches!(b, FrameBody::TtsStopped)
    })
    .await;
    for frame in answer(&["After the drop."]) {
        live.handle.queue_frame(frame).await;
    }
    live.wait_until("the second response", |pushes| {
        unique(pushes)
            .iter()
            .filter(|f| matches!(f.body, FrameBody::TtsStopped))
            .count()
            == 2
    })
    .await;
    let frames: Vec<Frame> = unique(&live.finish().await)
        .into_iter()
        .filter(|f| {
            !matches!(
                f.body,
                FrameBody::LlmResponseEnd { .. }
                    | FrameBody::LlmResponseStart
                    | FrameBody::LlmText(_)
            )
        })
        .collect();
    let errors = error_frames(&frames);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]
            .message
            .starts_with("connection closed before the response was complete"),
        "{}",
        errors[0].message
    );
    // The lost response still ended; the next one reconnected and spoke.
    let stops = frames
        .iter()
        .filter(|f| matches!(f.body, FrameBody::TtsStopped))
        .count();
    assert_eq!(stops, 2);
    assert_eq!(server.connections().len(), 2);
    let words: Vec<String> = spoken(&frames).into_iter().map(|s| s.text).collect();
    assert_eq!(words, ["First", "sentence.", "After", "the", "drop."]);
}

#[tokio::test]
async fn elevenlabs_closes_the_context_on_an_interruption() {
    let server = support::fake::elevenlabs::FakeElevenLabs::start().await;
    let live = Live::start(vec![elevenlabs(&server)]);
    live.handle.queue_frame(FrameBody::LlmResponseStart).await;
    live.handle
        .queue_frame(FrameBody::LlmText("One two three. And more".into()))
        .await;
    live.wait_for("audio", |b| matches!(b, FrameBody::OutputAudio(_)))
        .await;
    live.handle.queue_frame(FrameBody::Interruption).await;
    server
        .wait_until("close_context", |connections| {
            connections[0]
                .messages
                .iter()
                .any(|m| m.get("close_context").is_some())
        })
        .await;
    let frames = unique(&live.finish().await);
    let messages = &server.connections()[0].messages;
    let context = messages[0]["context_id"].clone();
    assert_eq!(
        messages.last().unwrap(),
        &json!({"context_id": context, "close_context": true})
    );
    assert!(
        !messages.iter().any(|m| m["text"] == json!("And more ")),
        "unsent text is dropped"
    );
    let after: Vec<&str> = frames
        .iter()
        .skip_while(|f| !matches!(f.body, FrameBody::Interruption))
        .map(Frame::name)
        .collect();
    assert!(
        !after.contains(&"OutputAudio") && !after.contains(&"TtsStopped"),
        "{after:?}"
    );
}
