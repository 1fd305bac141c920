//! Pipecat's official JavaScript client against voxpipe, in real headless
//! Chromium: `@pipecat-ai/client-js` and `@pipecat-ai/small-webrtc-transport`
//! from npm, bundled at test time with esbuild (see
//! `tests/browser/pipecat.mjs`, which states each check). The first
//! pipeline has a VAD, a (fake) Deepgram STT and the parrot, so the
//! speaking callbacks and the user's transcripts both fire; the second an
//! LLM with a client tool and a TTS (a fake OpenAI for both), so the tool
//! runs in the browser and the bot's LLM, TTS and metrics messages flow.
//!
//! With `VOXPIPE_RTVI_CAPTURE=dir` the RTVI messages the client sent are
//! written to `dir/call.jsonl` and `dir/agent.jsonl` (how the fixtures in
//! `tests/fixtures/rtvi/` were made). Needs Debian's `chromium` and `npm ci` in `tests/browser/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use support::browser::{run_script, sample_wav};
use support::fake::cartesia::FakeCartesia;
use support::fake::deepgram::FakeDeepgram;
use support::fake::openai::{FakeOpenAi, Part, Reply, finish_chunk, text_answer, tool_chunk};
use support::server::TestServer;

fn pipeline(deepgram: &str) -> String {
    format!(
        r#"
[pipeline]
name = "pipecat-client"
sample_rate = 16000

[[processor]]
type = "vad"
engine = "silero"

[[processor]]
type = "stt"
provider = "deepgram"
base_url = "{deepgram}"

[[processor]]
type = "parrot"
"#
    )
}

/// Runs `tests/browser/pipecat.mjs` against `server` with `args`, and
/// returns what it saw.
async fn pipecat_client(server: &TestServer, scenario: &str, args: &[&str]) -> serde_json::Value {
    let mut all: Vec<OsString> = vec![
        "--server".into(),
        server.url("").into(),
        "--wav".into(),
        sample_wav().into(),
        "--scenario".into(),
        scenario.into(),
    ];
    all.extend(args.iter().map(OsString::from));
    if let Some(dir) = std::env::var_os("VOXPIPE_RTVI_CAPTURE") {
        all.push("--capture".into());
        all.push(PathBuf::from(dir).join(format!("{scenario}.jsonl")).into());
    }
    let packages = ["playwright-core", "esbuild", "@pipecat-ai/client-js"];
    let stdout = run_script("pipecat.mjs", &packages, &all, Duration::from_secs(120)).await;
    let seen: serde_json::Value = serde_json::from_str(&stdout).expect("the script prints JSON");
    assert_eq!(seen["botReady"]["version"], "2.1.0", "{seen}");
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipecats_client_connects_talks_and_disconnects_the_bot() {
    let deepgram = FakeDeepgram::start().await;
    let server = TestServer::with_toml(
        &pipeline(&deepgram.url),
        &[],
        &[("DEEPGRAM_API_KEY", "dg-test")],
    )
    .await;
    let seen = pipecat_client(&server, "call", &["--transcript"]).await;

    let sessions = server.sessions.ended(1, Duration::from_secs(20)).await;
    assert_eq!(sessions[0].end_reason.as_deref(), Some("disconnect_bot"));
    assert!(!sessions[0].cancelled, "disconnectBot() ends gracefully");
    assert_eq!(
        seen["sessionInfo"]["session_id"],
        sessions[0].session_id.as_str()
    );
    assert_eq!(
        sessions[0].keys,
        ['1', '2', '#'],
        "sendDTMF reached the pipeline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipecats_client_starts_its_bot_on_start_and_reads_a_refusal() {
    // The runner flow apps use: startBotAndConnect() on /start, a bearer
    // key guarding it. Without the key, startBot() must fail with the
    // status and reason (client-js reads a JSON `detail`).
    let deepgram = FakeDeepgram::start().await;
    let server = TestServer::with_toml(
        &pipeline(&deepgram.url),
        &["server.start_token_env=START_TOKEN"],
        &[("DEEPGRAM_API_KEY", "dg-test"), ("START_TOKEN", "s3cret")],
    )
    .await;
    let seen = pipecat_client(
        &server,
        "call",
        &["--connect", "start", "--start-key", "s3cret"],
    )
    .await;

    assert_eq!(seen["refusedStart"]["status"], 401, "{seen}");
    assert!(
        seen["refusedStart"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("bearer key")),
        "{seen}"
    );
    let sessions = server.sessions.ended(1, Duration::from_secs(20)).await;
    assert_eq!(sessions[0].end_reason.as_deref(), Some("disconnect_bot"));
    assert_eq!(
        seen["sessionInfo"]["session_id"],
        sessions[0].session_id.as_str()
    );
}

fn agent_pipeline(openai: &FakeOpenAi) -> String {
    format!(
        r#"
[pipeline]
name = "pipecat-agent"
sample_rate = 16000

[[processor]]
type = "user_context"

[[processor]]
type = "llm"
provider = "openai"
base_url = "{base}"
model = "gpt-test"

[[processor.client_tools]]
name = "get_location"
description = "Where the user is, from the browser."

[[processor]]
type = "tts"
provider = "openai"
base_url = "{base}"

[[processor]]
type = "assistant_context"
"#,
        base = openai.base_url
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipecats_client_hears_the_greeting_the_bot_speaks_as_it_connects() {
    let openai = FakeOpenAi::start().await;
    let toml = agent_pipeline(&openai).replace(
        "sample_rate = 16000\n",
        "sample_rate = 16000\nfirst_message = \"Hello! How can I help?\"\n",
    );
    assert!(toml.contains("first_message"));
    let server = TestServer::with_toml(&toml, &[], &[]).await;
    let seen = pipecat_client(&server, "greeting", &[]).await;
    // The greeting starts as the peer connection comes up, before or
    // after the client's `client-ready`: either way the client sees it
    // announced, then spoken, as one segment.
    let outputs = seen["botOutput"].as_array().unwrap();
    let segments = |status: &str| -> Vec<(u64, String)> {
        outputs
            .iter()
            .filter(|o| o["spoken_status"] == status)
            .map(|o| {
                (
                    o["segment_id"].as_u64().unwrap(),
                    o["text"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let announced = segments("new");
    let texts: Vec<&str> = announced.iter().map(|(_, text)| text.as_str()).collect();
    assert_eq!(texts.join(" "), "Hello! How can I help?", "{outputs:?}");
    assert_eq!(segments("completed"), announced, "every sentence spoken");
    assert!(
        openai.received("chat/completions").is_empty(),
        "no LLM for a first_message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reacts_conversation_shows_a_word_timing_tts_answer_as_its_sentence() {
    // Cartesia times each word; a 2.x client gets the sentence they make,
    // as Pipecat sends it, not a segment a word (which client-react showed
    // run together).
    let openai = FakeOpenAi::start().await;
    let cartesia = FakeCartesia::start().await;
    openai.push_chat(Reply::Sse(vec![
        Part::Data(tool_chunk(0, Some("call_loc"), Some("get_location"), "{}")),
        Part::Data(finish_chunk("tool_calls")),
        Part::Data("[DONE]".into()),
    ]));
    openai.push_chat(Reply::Sse(text_answer("You are in Oslo.")));
    let tts = format!(
        "type = \"tts\"\nprovider = \"cartesia\"\nurl = \"{}\"\nvoice_id = \"v1\"\napi_key_env = \"CARTESIA_API_KEY\"\n",
        cartesia.url
    );
    let toml = agent_pipeline(&openai).replace(
        &format!(
            "type = \"tts\"\nprovider = \"openai\"\nbase_url = \"{}\"\n",
            openai.base_url
        ),
        &tts,
    );
    assert!(toml.contains("cartesia"), "{toml}");
    let server = TestServer::with_toml(&toml, &[], &[("CARTESIA_API_KEY", "ck-test")]).await;
    let seen = pipecat_client(&server, "agent", &[]).await;
    let outputs = seen["botOutput"].as_array().unwrap();
    assert!(
        outputs.iter().all(|o| o["aggregated_by"] == "sentence"),
        "{outputs:?}"
    );
    let conversation = seen["conversation"].as_array().unwrap();
    let answer = conversation
        .iter()
        .find(|m| m["role"] == "assistant")
        .unwrap();
    let parts = answer["parts"].as_array().unwrap();
    assert_eq!(
        parts.len(),
        1,
        "one part for the sentence: {conversation:?}"
    );
    assert_eq!(parts[0]["spoken"], "You are in Oslo.", "{conversation:?}");
    // Each word's progress as it is heard (Pipecat's `in-progress`), then
    // `completed` at the last, of that one segment.
    let progress: Vec<(&str, &str)> = outputs
        .iter()
        .filter(|o| o["spoken_status"] != "new")
        .map(|o| {
            (
                o["spoken_status"].as_str().unwrap(),
                o["spoken_progress"]["accumulated_text"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        progress,
        [
            ("in-progress", "You"),
            ("in-progress", "You are"),
            ("in-progress", "You are in"),
            ("completed", "You are in Oslo.")
        ],
        "{outputs:?}"
    );
    // client-react's part of it grew with them: one part throughout, its
    // spoken text ever longer, and spoken in part before spoken whole.
    let states = seen["assistantStates"].as_array().unwrap();
    let mut spoken = Vec::new();
    for parts in states {
        assert_eq!(parts.as_array().unwrap().len(), 1, "{states:?}");
        spoken.push(parts[0]["spoken"].as_str().unwrap());
    }
    assert!(
        spoken.windows(2).all(|w| w[1].starts_with(w[0])),
        "{spoken:?}"
    );
    assert!(
        spoken
            .iter()
            .any(|s| !s.is_empty() && *s != "You are in Oslo."),
        "never spoken in part: {spoken:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipecats_client_runs_a_client_tool_and_hears_the_answer() {
    let openai = FakeOpenAi::start().await;
    openai.push_chat(Reply::Sse(vec![
        Part::Data(tool_chunk(0, Some("call_loc"), Some("get_location"), "{}")),
        Part::Data(finish_chunk("tool_calls")),
        Part::Data("[DONE]".into()),
    ]));
    openai.push_chat(Reply::Sse(text_answer("You are in Oslo.")));
    let server = TestServer::with_toml(&agent_pipeline(&openai), &[], &[]).await;
    let seen = pipecat_client(&server, "agent", &[]).await;

    assert_eq!(
        seen["toolCalls"][0]["functionName"], "get_location",
        "{seen}"
    );
    assert_eq!(seen["botText"], "You are in Oslo.");
    // What the LLM was asked, and what it answered a sentence at a time
    // (`onUserLlmText`, `onBotTranscript`).
    assert_eq!(seen["userLlmText"], json!(["Where am I?"]), "{seen}");
    assert_eq!(seen["botTranscript"], json!(["You are in Oslo."]), "{seen}");
    // client-react's conversation (what a React app renders): the user's
    // question, the browser tool's call, and the answer, spoken whole.
    let conversation = seen["conversation"].as_array().unwrap();
    let user = conversation.iter().find(|m| m["role"] == "user").unwrap();
    assert_eq!(user["parts"][0]["text"], "Where am I?", "{conversation:?}");
    assert!(
        conversation.iter().any(|m| m["role"] == "function_call"
            && m["functionCall"]["name"] == "get_location"
            && m["functionCall"]["status"] == "completed"),
        "{conversation:?}"
    );
    let answer = conversation
        .iter()
        .find(|m| m["role"] == "assistant")
        .unwrap();
    let parts = answer["parts"].as_array().unwrap();
    let spoken: Vec<&str> = parts
        .iter()
        .map(|p| p["spoken"].as_str().unwrap())
        .collect();
    assert_eq!(spoken.join(" "), "You are in Oslo.", "{conversation:?}");
    assert!(
        parts.iter().all(|p| p["unspoken"] == ""),
        "{conversation:?}"
    );
    // Protocol 2's bot-output: the spoken text as a segment, new then
    // completed, as client-react's conversation reads it.
    let outputs = seen["botOutput"].as_array().unwrap();
    let status = |s: &str| outputs.iter().find(|o| o["spoken_status"] == s).cloned();
    let (new, done) = (status("new").unwrap(), status("completed").unwrap());
    assert_eq!(new["segment_id"], done["segment_id"], "{outputs:?}");
    assert_eq!(done["spoken_progress"]["accumulated_text"], done["text"]);
    let second = openai.received("chat/completions")[1].json();
    let tool = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .cloned()
        .unwrap();
    assert_eq!(tool["tool_call_id"], "call_loc");
    assert_eq!(
        tool["content"], r#"{"city":"Oslo"}"#,
        "the browser's answer"
    );
    let sessions = server.sessions.ended(1, Duration::from_secs(20)).await;
    assert_eq!(sessions[0].end_reason.as_deref(), Some("hangup"));
}
