//! The STT providers against fake servers: OpenAI-compatible transcription
//! per utterance, Deepgram live transcription; their error paths.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::time::Duration;

use serde_json::json;
use support::fake::deepgram::{FakeDeepgram, Script};
use support::fake::openai::{FakeOpenAi, Part, Reply};
use support::session::{Live, build, error_frames, unique};
use voxpipe::frame::{AudioFrame, Frame, FrameBody};
use voxpipe::services::stt::{DeepgramSttConfig, OpenAiSttConfig};
use voxpipe::testing::run_test;

/// `secs` of 20 ms input frames from `from`, a tone.
fn audio(from: f64, secs: f64) -> Vec<FrameBody> {
    let pcm = support::signal::tone_pcm(16_000, secs);
    pcm.chunks(640)
        .enumerate()
        .map(|(i, chunk)| {
            let samples: Vec<i16> = chunk
                .chunks(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            let pts = Duration::from_secs_f64(from) + Duration::from_millis(20 * i as u64);
            FrameBody::InputAudio(AudioFrame::from_samples(&samples, 16_000, 1, pts))
        })
        .collect()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn transcripts(frames: &[Frame]) -> Vec<(bool, String)> {
    frames
        .iter()
        .filter_map(|f| match &f.body {
            FrameBody::Transcription(t) => Some((true, t.text.clone())),
            FrameBody::InterimTranscription(t) => Some((false, t.text.clone())),
            _ => None,
        })
        .collect()
}

fn openai_stt(server: &FakeOpenAi, extra: &str) -> voxpipe::pipeline::NamedProcessor {
    openai_stt_reading_for(server, 0.3, extra)
}

/// [`openai_stt`] waiting up to `read_timeout_secs` for an answer.
fn openai_stt_reading_for(
    server: &FakeOpenAi,
    read_timeout_secs: f64,
    extra: &str,
) -> voxpipe::pipeline::NamedProcessor {
    build::<OpenAiSttConfig>(
        "stt",
        &format!(
            "base_url = \"{}\"\nmodel = \"whisper-1\"\nlanguage = \"en\"\napi_key_env = \"OPENAI_API_KEY\"\n\
             connection = {{ retry_initial_secs = 0.001, retry_max_secs = 0.002, read_timeout_secs = {read_timeout_secs} }}\n{extra}",
            server.base_url
        ),
        &[("OPENAI_API_KEY", "sk-test")],
    )
}

/// Two utterances: 0.5 s to 1.5 s and 2.5 s to 3.0 s, in 4 s of audio.
fn two_utterances() -> Vec<FrameBody> {
    let mut frames = audio(0.0, 1.6);
    frames.insert(35, FrameBody::UserStartedSpeaking { start: ms(500) });
    frames.push(FrameBody::UserStoppedSpeaking { end: ms(1500) });
    frames.extend(audio(1.6, 1.5));
    frames.push(FrameBody::UserStartedSpeaking { start: ms(2500) });
    frames.extend(audio(3.1, 0.9));
    frames.push(FrameBody::UserStoppedSpeaking { end: ms(3000) });
    frames
}

#[tokio::test]
async fn openai_transcribes_each_utterance_as_a_wav_in_order() {
    let server = FakeOpenAi::start().await;
    server.push_transcription(Reply::Json(json!({"text": "I'd like a table."})));
    server.push_transcription(Reply::Json(json!({"text": " For two. "})));
    let out = run_test(vec![openai_stt(&server, "")], two_utterances()).await;
    assert_eq!(
        transcripts(&out.downstream),
        [
            (true, "I'd like a table.".into()),
            (true, "For two.".into())
        ]
    );

    let uploads = server.received("transcriptions");
    let parts = uploads[0].multipart();
    let field = |name: &str| {
        parts
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, v)| String::from_utf8_lossy(v).to_string())
    };
    assert_eq!(field("model").as_deref(), Some("whisper-1"));
    assert_eq!(field("language").as_deref(), Some("en"));
    assert_eq!(field("response_format").as_deref(), Some("json"));
    let (_, _, wav) = parts.iter().find(|(n, _, _)| n == "file").unwrap();
    let wav = voxpipe::audio::read_wav_from(&wav[..]).unwrap();
    // 0.5 s to 1.5 s, with 0.3 s of pre-roll.
    assert_eq!(wav.frames(), 1300 * 16);
    let second = &uploads[1].multipart();
    let (_, _, wav) = second.iter().find(|(n, _, _)| n == "file").unwrap();
    assert_eq!(
        voxpipe::audio::read_wav_from(&wav[..]).unwrap().frames(),
        800 * 16
    );
}

/// The length of the WAV a transcription request uploaded, in ms.
fn uploaded_ms(upload: &support::fake::openai::Received) -> usize {
    let parts = upload.multipart();
    let (_, _, wav) = parts.iter().find(|(n, _, _)| n == "file").unwrap();
    voxpipe::audio::read_wav_from(&wav[..]).unwrap().frames() / 16
}

/// Speech from 0.5 s that pauses at 1.0 s: the frames up to the pause.
fn speech_then_pause() -> Vec<FrameBody> {
    let mut frames = audio(0.0, 1.1);
    frames.insert(35, FrameBody::UserStartedSpeaking { start: ms(500) });
    frames.push(FrameBody::UserPausedSpeaking { end: ms(1000) });
    frames
}

/// After [`speech_then_pause`]: audio on to `until` s, the VAD's stop with
/// speech ending at `end_ms`; every frame pushed once the transcript came.
async fn stop_at(live: Live, until: f64, end_ms: u64) -> Vec<Frame> {
    stop_at_after(live, 1.1, until, end_ms).await
}

/// [`stop_at`] for input that ended at `from` s.
async fn stop_at_after(live: Live, from: f64, until: f64, end_ms: u64) -> Vec<Frame> {
    for frame in audio(from, until - from) {
        live.handle.queue_frame(frame).await;
    }
    live.handle
        .queue_frame(FrameBody::UserStoppedSpeaking { end: ms(end_ms) })
        .await;
    live.wait_for("the transcript", |f| {
        matches!(f, FrameBody::Transcription(_))
    })
    .await;
    support::session::unique(&live.finish().await)
}

#[tokio::test]
async fn openai_transcribes_at_a_pause_and_the_stop_confirms_it() {
    let server = FakeOpenAi::start().await;
    server.push_transcription(Reply::Json(json!({"text": "I'd like a table."})));
    let live = Live::start(vec![openai_stt(&server, "transcribe_on_pause = true")]);
    for frame in speech_then_pause() {
        live.handle.queue_frame(frame).await;
    }
    // Sent at the pause, before any stop.
    let uploads = server
        .wait_for_requests("transcriptions", 1, Duration::from_secs(10))
        .await;
    assert_eq!(
        uploaded_ms(&uploads[0]),
        800,
        "0.5 s to 1.0 s, and 0.3 s pre-roll"
    );
    let pushes = stop_at(live, 1.3, 1000).await;
    assert_eq!(
        transcripts(&pushes),
        [(true, "I'd like a table.".into())],
        "one transcript"
    );
    assert_eq!(
        server.received("transcriptions").len(),
        1,
        "no second request"
    );
    let position = |wanted: fn(&FrameBody) -> bool| pushes.iter().position(|f| wanted(&f.body));
    assert!(
        position(|f| matches!(f, FrameBody::UserStoppedSpeaking { .. }))
            < position(|f| matches!(f, FrameBody::Transcription(_))),
        "the transcript waits for the stop"
    );
}

#[tokio::test]
async fn openai_sends_at_a_pause_once_the_audio_reaches_it() {
    let server = FakeOpenAi::start().await;
    server.push_transcription(Reply::Json(json!({"text": "I'd like a table."})));
    let live = Live::start(vec![openai_stt(&server, "transcribe_on_pause = true")]);
    // The pause at 1.0 s is reported while the audio kept ends at 0.9 s
    // (as with input frames longer than the pause).
    let mut frames = audio(0.0, 0.9);
    frames.insert(35, FrameBody::UserStartedSpeaking { start: ms(500) });
    frames.push(FrameBody::UserPausedSpeaking { end: ms(1000) });
    for frame in frames {
        live.handle.queue_frame(frame).await;
    }
    let pushes = stop_at_after(live, 0.9, 1.3, 1000).await;
    assert_eq!(transcripts(&pushes), [(true, "I'd like a table.".into())]);
    let uploads = server.received("transcriptions");
    assert_eq!(uploads.len(), 1, "sent at the pause, confirmed by the stop");
    assert_eq!(
        uploaded_ms(&uploads[0]),
        800,
        "all the speech up to the pause"
    );
}

#[tokio::test]
async fn openai_drops_the_transcript_of_a_pause_the_user_spoke_through() {
    let server = FakeOpenAi::start().await;
    // The request sent at the pause never answers: going on cancels it.
    server.push_transcription(Reply::Hang);
    server.push_transcription(Reply::Json(json!({"text": "I'd like a table for two."})));
    // No retry of the hanging request within the test.
    let live = Live::start(vec![openai_stt_reading_for(
        &server,
        30.0,
        "transcribe_on_pause = true",
    )]);
    for frame in speech_then_pause() {
        live.handle.queue_frame(frame).await;
    }
    server
        .wait_for_requests("transcriptions", 1, Duration::from_secs(10))
        .await;
    // The user goes on until 1.5 s.
    let pushes = stop_at(live, 1.7, 1500).await;
    assert_eq!(
        transcripts(&pushes),
        [(true, "I'd like a table for two.".into())]
    );
    let uploads = server.received("transcriptions");
    assert_eq!(uploads.len(), 2);
    assert_eq!(uploaded_ms(&uploads[1]), 1300, "the whole utterance");
}

#[tokio::test]
async fn openai_without_a_vad_transcribes_the_whole_input_at_the_end() {
    let server = FakeOpenAi::start().await;
    let out = run_test(vec![openai_stt(&server, "")], audio(0.0, 2.0)).await;
    assert_eq!(transcripts(&out.downstream), [(true, "Hello.".into())]);
    let upload = &server.received("transcriptions")[0].multipart();
    let (_, _, wav) = upload.iter().find(|(n, _, _)| n == "file").unwrap();
    assert_eq!(
        voxpipe::audio::read_wav_from(&wav[..]).unwrap().frames(),
        32_000
    );
}

#[tokio::test]
async fn openai_transcription_error_paths() {
    let server = FakeOpenAi::start().await;
    server.push_transcription(Reply::error(
        401,
        "Incorrect API key provided.",
        "invalid_request_error",
    ));
    let out = run_test(vec![openai_stt(&server, "")], audio(0.0, 0.5)).await;
    let errors = error_frames(&out.upstream);
    assert_eq!((errors[0].status, errors[0].fatal), (Some(401), true));
    assert_eq!(server.received("transcriptions").len(), 1, "no retry");

    server.push_transcription(Reply::error(429, "Rate limit reached", "requests"));
    server.push_transcription(Reply::error(500, "Server error", "server_error"));
    server.push_transcription(Reply::Json(json!({"text": "Got it."})));
    let out = run_test(vec![openai_stt(&server, "")], audio(0.0, 0.5)).await;
    assert!(error_frames(&out.upstream).is_empty());
    assert_eq!(transcripts(&out.downstream), [(true, "Got it.".into())]);
    assert_eq!(server.received("transcriptions").len(), 4);

    server.push_transcription(Reply::Pcm(vec![Part::Raw(b"{\"te".to_vec()), Part::Stall]));
    let out = run_test(vec![openai_stt(&server, "")], audio(0.0, 0.5)).await;
    assert_eq!(
        error_frames(&out.upstream)[0].message,
        "no data within 300ms"
    );

    server.push_transcription(Reply::Text("Service Unavailable".into()));
    let out = run_test(vec![openai_stt(&server, "")], audio(0.0, 0.5)).await;
    assert!(
        error_frames(&out.upstream)[0]
            .message
            .starts_with("malformed response: not a transcription")
    );
}

fn deepgram(server: &FakeDeepgram, extra: &str) -> voxpipe::pipeline::NamedProcessor {
    build::<DeepgramSttConfig>(
        "stt",
        &format!(
            "base_url = \"{}\"\nconnection = {{ retry_initial_secs = 0.001, retry_max_secs = 0.002 }}\n{extra}",
            server.url
        ),
        &[("DEEPGRAM_API_KEY", "dg-test")],
    )
}

#[tokio::test]
async fn deepgram_streams_audio_and_pushes_interim_then_final_results() {
    let server = FakeDeepgram::start().await;
    let mut frames = audio(0.0, 1.2);
    frames.push(FrameBody::UserStoppedSpeaking { end: ms(1100) });
    let out = run_test(vec![deepgram(&server, "")], frames).await;
    assert!(
        error_frames(&out.upstream).is_empty(),
        "{:?}",
        error_frames(&out.upstream)
    );
    let connections = server.connections();
    assert_eq!(connections.len(), 1);
    let connection = &connections[0];
    assert!(
        connection
            .query
            .starts_with("encoding=linear16&sample_rate=16000&channels=1&model=nova-3")
    );
    assert!(connection.query.contains("interim_results=true"));
    assert_eq!(connection.authorization.as_deref(), Some("Token dg-test"));
    assert_eq!(
        connection.audio.len(),
        1.2f64.mul_add(32_000.0, 0.0) as usize
    );
    assert_eq!(
        connection.texts,
        [r#"{"type":"Finalize"}"#, r#"{"type":"CloseStream"}"#]
    );
    assert!(connection.ended);
    assert_eq!(
        transcripts(&out.downstream),
        [
            (false, "Hello".into()),
            (false, "Hello".into()),
            (true, "Hello there.".into())
        ]
    );
    let names: Vec<&str> = out
        .downstream
        .iter()
        .map(Frame::name)
        .filter(|n| *n != "InputAudio")
        .collect();
    assert_eq!(names.last(), Some(&"End"));
}

#[tokio::test]
async fn deepgram_keeps_the_socket_alive_while_no_audio_flows() {
    let server = FakeDeepgram::start().await;
    let live = Live::start(vec![deepgram(&server, "keepalive_secs = 0.05")]);
    server
        .wait_until("two keep-alives", |connections| {
            connections.first().is_some_and(|c| c.texts.len() >= 2)
        })
        .await;
    live.finish().await;
    let texts = &server.connections()[0].texts;
    assert!(
        texts[..2].iter().all(|t| t == r#"{"type":"KeepAlive"}"#),
        "{texts:?}"
    );
    assert_eq!(
        texts.last().map(String::as_str),
        Some(r#"{"type":"CloseStream"}"#)
    );
}

#[tokio::test]
async fn deepgram_reconnects_without_losing_the_utterance_in_flight() {
    let server = FakeDeepgram::start().await;
    server.push_script(Script {
        drop_after_bytes: Some(32_000),
        ..Script::default()
    });
    server.push_script(Script {
        transcript: "Book a table for two.".into(),
        ..Script::default()
    });
    let out = run_test(vec![deepgram(&server, "")], audio(0.0, 1.5)).await;
    let connections = server.connections();
    assert_eq!(connections.len(), 2);
    let (first, second) = (&connections[0], &connections[1]);
    assert!(first.audio.len() >= 32_000);
    assert!(
        second.audio.starts_with(&first.audio),
        "the unconfirmed audio is sent again first"
    );
    assert_eq!(
        second.audio.len(),
        48_000,
        "and nothing else is lost or doubled"
    );
    let finals: Vec<String> = transcripts(&out.downstream)
        .into_iter()
        .filter(|(f, _)| *f)
        .map(|(_, t)| t)
        .collect();
    assert_eq!(finals, ["Book a table for two."]);
}

#[tokio::test]
async fn deepgram_a_socket_that_answers_nothing_is_replaced_and_the_utterance_kept() {
    // The first socket takes the audio and never answers (a hung server,
    // or a path that died without TCP noticing).
    let server = FakeDeepgram::start().await;
    server.push_script(Script {
        hang: true,
        ..Script::default()
    });
    server.push_script(Script {
        transcript: "Book a table for two.".into(),
        ..Script::default()
    });
    let stt = build::<DeepgramSttConfig>(
        "stt",
        &format!(
            "base_url = \"{}\"\nconnection = {{ read_timeout_secs = 0.3, retry_initial_secs = 0.001, retry_max_secs = 0.002 }}",
            server.url
        ),
        &[("DEEPGRAM_API_KEY", "dg-test")],
    );
    let live = Live::start(vec![stt]);
    for frame in audio(0.0, 2.5) {
        live.handle.queue_frame(frame).await;
    }
    server
        .wait_until("a second socket", |connections| connections.len() >= 2)
        .await;
    live.handle
        .queue_frame(FrameBody::UserStoppedSpeaking { end: ms(2500) })
        .await;
    live.wait_for(
        "the final",
        |b| matches!(b, FrameBody::Transcription(t) if t.text == "Book a table for two."),
    )
    .await;
    let frames = unique(&live.finish().await);
    let connections = server.connections();
    assert_eq!(
        connections[1].audio, connections[0].audio,
        "the audio it never answered goes again"
    );
    let errors = error_frames(&frames);
    assert!(
        errors.iter().any(|e| e.message.contains("no data within")),
        "{errors:?}"
    );
}

#[tokio::test]
async fn deepgram_refused_key_and_malformed_messages_are_reported() {
    let server = FakeDeepgram::start().await;
    server.push_script(Script {
        reject: Some((401, "Invalid credentials.".into())),
        ..Script::default()
    });
    let out = run_test(vec![deepgram(&server, "")], audio(0.0, 0.2)).await;
    let errors = error_frames(&out.upstream);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!((errors[0].status, errors[0].fatal), (Some(401), true));
    assert_eq!(errors[0].provider.as_deref(), Some("deepgram"));
    assert_eq!(errors[0].message, "HTTP 401: Invalid credentials.");

    server.push_script(Script {
        send_first: Some("this is not json".into()),
        ..Script::default()
    });
    let out = run_test(vec![deepgram(&server, "")], audio(0.0, 0.2)).await;
    let errors = error_frames(&out.upstream);
    assert!(
        errors[0]
            .message
            .starts_with("malformed response: not a Deepgram message"),
        "{}",
        errors[0].message
    );
    assert_eq!(
        transcripts(&out.downstream).last(),
        Some(&(true, "Hello there.".into())),
        "the stream went on"
    );
}

#[tokio::test]
async fn deepgram_an_oversized_message_drops_the_socket_and_the_utterance_survives() {
    let server = FakeDeepgram::start().await;
    // 3 MiB in one message: over the 2 MiB a provider message may take.
    server.push_script(Script {
        send_first: Some(format!(
            r#"{{"type":"Metadata","junk":"{}"}}"#,
            "x".repeat(3 << 20)
        )),
        ..Script::default()
    });
    server.push_script(Script::default());
    let out = run_test(vec![deepgram(&server, "")], audio(0.0, 1.0)).await;
    assert_eq!(server.connections().len(), 2, "refused, then reconnected");
    assert_eq!(
        transcripts(&out.downstream).last(),
        Some(&(true, "Hello there.".into()))
    );
}

#[tokio::test]
async fn deepgram_a_flood_of_malformed_messages_is_reported_three_times() {
    let server = FakeDeepgram::start().await;
    server.push_script(Script {
        send_first: Some("this is not json".into()),
        send_first_times: 5_000,
        ..Script::default()
    });
    let out = run_test(vec![deepgram(&server, "")], audio(0.0, 0.2)).await;
    let errors = error_frames(&out.upstream);
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert_eq!(
        transcripts(&out.downstream).last(),
        Some(&(true, "Hello there.".into())),
        "the stream went on"
    );
}
