//! `voxpipe run pipelines/agent.toml` against a fake OpenAI-compatible
//! server, through the binary, as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::process::Command;

use serde_json::{Value, json};
use support::fake::openai::{FakeOpenAi, Part, Reply, text_answer};

const AGENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/agent.toml");
const HELLO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/samples/hello.wav");

/// `--set processor.N.base_url=URL` for every processor of `pipeline` that
/// has a `base_url`, found by reading the file (so a processor added in
/// front, like a VAD, moves nothing).
fn base_url_overrides(pipeline: &str, url: &str) -> Vec<String> {
    let table: toml::Table = std::fs::read_to_string(pipeline).unwrap().parse().unwrap();
    table["processor"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, p)| p.get("base_url").is_some())
        .flat_map(|(i, _)| ["--set".to_owned(), format!("processor.{i}.base_url={url}")])
        .collect()
}

#[test]
fn run_agent_against_any_openai_compatible_server() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(FakeOpenAi::start());
    // Every request hears the sentence: the shipped agent may also send
    // the speech so far at a pause inside it (`transcribe_on_pause`), a
    // request whose transcript is then dropped.
    server.transcribe_with(|| Reply::Json(json!({"text": "Hello, can you hear me?"})));
    server.push_chat(Reply::Sse(text_answer(
        "Yes, I can hear you. How can I help?",
    )));
    server.push_speech(Reply::Pcm(vec![Part::Raw(support::signal::tone_pcm(
        24_000, 0.8,
    ))]));
    server.push_speech(Reply::Pcm(vec![Part::Raw(support::signal::tone_pcm(
        24_000, 0.6,
    ))]));

    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.wav");
    let store = format!(
        "context.path={}",
        dir.path().join("context.jsonl").display()
    );
    // One utterance: the sample's first sentence and the silence after it
    // (with the VAD in the pipeline, each utterance is its own turn).
    let hello = voxpipe::audio::read_wav(std::path::Path::new(HELLO)).unwrap();
    let utterance = dir.path().join("utterance.wav");
    let first = &hello.to_mono()[..hello.sample_rate as usize * 4];
    voxpipe::audio::write_wav(&utterance, hello.sample_rate, first).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_voxpipe"))
        .args([
            "run",
            AGENT,
            "--input",
            utterance.to_str().unwrap(),
            "--events",
            "--output",
            output.to_str().unwrap(),
            "--session-id",
            "agent-1",
            "--set",
            &store,
            // The fake transcribes one utterance per request, as scripted:
            // the shipped 0.2 s VAD stop would cut the sample's "Hello, can
            // you hear me?" in two at its comma.
            "--set",
            "processor.0.stop_secs=0.8",
        ])
        .args(base_url_overrides(AGENT, &server.base_url))
        .env("OPENAI_API_KEY", "sk-cli-test")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("sk-cli-test"),
        "the key must never be logged"
    );

    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    let at = |name: &str| {
        names
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| panic!("no {name} in {names:?}"))
    };
    assert!(at("session_started") < at("transcription"));
    assert!(at("transcription") < at("llm_response_started"));
    assert!(at("llm_response_started") < at("llm_text"));
    assert!(at("llm_text") < at("tts_started"));
    assert!(at("tts_started") < at("tts_stopped"));
    assert!(at("bot_started_speaking") < at("bot_stopped_speaking"));
    assert_eq!(
        events[at("transcription")]["text"],
        json!("Hello, can you hear me?")
    );
    let ended = events.last().unwrap();
    assert_eq!(ended["event"], json!("session_ended"));
    assert_eq!(ended["reason"], json!("end_of_input"));
    let spoken: Vec<String> = server
        .received("audio/speech")
        .iter()
        .map(|r| r.json()["input"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(spoken, ["Yes, I can hear you.", "How can I help?"]);
    assert!(
        server.received("chat/completions")[0]
            .authorization
            .as_deref()
            == Some("Bearer sk-cli-test")
    );

    // The answer is in the output, after the input's speech, at 16 kHz.
    let wav = voxpipe::audio::read_wav(&output).unwrap();
    assert_eq!(wav.sample_rate, 16_000);
    let samples = wav.to_mono();
    let loud = samples
        .chunks(320)
        .filter(|w| voxpipe::audio::pcm::rms(w) > 0.05)
        .count() as f64
        * 0.02;
    assert!((1.2..=1.5).contains(&loud), "{loud} s of bot audio");

    // The call and its turns are in the pipeline's context store.
    let shown = Command::new(env!("CARGO_BIN_EXE_voxpipe"))
        .args([
            "calls", "show", "agent-1", "--json", "-p", AGENT, "--set", &store,
        ])
        .output()
        .unwrap();
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let stored: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(stored["call"]["status"], json!("completed"));
    assert_eq!(stored["call"]["end_reason"], json!("end_of_input"));
    let turns: Vec<(&str, &str)> = stored["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["role"].as_str().unwrap(), t["text"].as_str().unwrap()))
        .collect();
    assert_eq!(
        turns,
        [
            ("user", "Hello, can you hear me?"),
            ("assistant", "Yes, I can hear you. How can I help?")
        ]
    );
}

#[test]
fn a_missing_key_is_a_clear_error_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!(
        "context.path={}",
        dir.path().join("context.jsonl").display()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_voxpipe"))
        .args(["run", AGENT, "--input", HELLO, "--set", &store])
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("OPENAI_API_KEY") && stderr.contains("api_key_env"),
        "{stderr}"
    );
}
