//! The bot speaks first: `[pipeline] first_message` is spoken when the call
//! connects and kept as the first assistant turn (in Redis, and in the
//! LLM's context); with `llm_opens` the LLM writes the first words before
//! the caller says anything; a caller talking over the greeting cuts it,
//! and the context keeps only what was heard. Over a file session and a
//! Twilio media stream, against the fake OpenAI-compatible server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use support::fake::openai::{FakeOpenAi, Part, Reply, text_answer};
use support::fake::twilio_media::{CallConfig, FakeCall};
use support::mulaw::{decode, loud_frames, silence};
use support::processors::registry;
use support::redis_server::RedisServer;
use support::server::{Setup, TestServer};
use support::session::run_kept;
use support::signal::{hello, tone_pcm};
use voxpipe::conversation::Role;
use voxpipe::frame::FrameBody;
use voxpipe::pipeline::EnvSource;
use voxpipe::pipeline_file::parse_pipeline;
use voxpipe::store::Interaction;

const GREETING: &str = "Hello, this is Ava from Acme.";
const WAIT: Duration = Duration::from_secs(30);

/// An agent pipeline whose first processor is `vad` (a table's body) and
/// whose `[pipeline]` holds `opening`, its conversation kept in Redis.
fn agent_toml(openai: &FakeOpenAi, vad: &str, opening: &str) -> String {
    format!(
        r#"
[pipeline]
name = "opening-test"
{opening}

[[processor]]
{vad}

[[processor]]
type = "stt"
provider = "openai"
base_url = "{base}"
api_key_env = "OPENAI_API_KEY"

[[processor]]
type = "user_context"

[[processor]]
type = "llm"
provider = "openai"
base_url = "{base}"
model = "gpt-test"
api_key_env = "OPENAI_API_KEY"
system_prompt = "You call people for Acme."

[[processor]]
type = "tts"
provider = "openai"
base_url = "{base}"
api_key_env = "OPENAI_API_KEY"

[[processor]]
type = "assistant_context"

[context]
store = "redis"
url_env = "TEST_REDIS"
"#,
        base = openai.base_url,
    )
}

fn env(redis: &RedisServer) -> EnvSource {
    EnvSource::Fixed(Arc::new(HashMap::from([
        ("TEST_REDIS".to_owned(), redis.url()),
        ("OPENAI_API_KEY".to_owned(), "sk-test".to_owned()),
    ])))
}

fn speech(secs: f64) -> Reply {
    Reply::Pcm(vec![Part::Raw(tone_pcm(24_000, secs))])
}

/// The (role, content) of each message of a chat request.
fn messages(request: &Value) -> Vec<(String, String)> {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn pair(role: &str, content: &str) -> (String, String) {
    (role.to_owned(), content.to_owned())
}

/// Runs the pipeline `toml` over the sample speech (in real time, so the
/// greeting plays while the file is read, as on a call) as session
/// `call_id`, its turns kept in `redis`; returns the stored turns.
async fn run_call(
    toml: &str,
    redis: &RedisServer,
    call_id: &str,
    secs: f64,
) -> (support::session::Run, Vec<Interaction>) {
    let config = parse_pipeline(Path::new("test.toml"), toml, &registry()).unwrap();
    let runtime = config.agent_runtime(&env(redis)).unwrap();
    let store = runtime.store().clone();
    let run = run_kept(
        toml,
        hello(secs),
        &[("TEST_REDIS", &redis.url()), ("OPENAI_API_KEY", "sk-test")],
        Vec::new(),
        call_id,
        Some(&runtime),
        true,
    )
    .await;
    assert!(run.report.fatal_error.is_none(), "{:?}", run.errors());
    let turns = store.turns(call_id).await.unwrap();
    (run, turns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_greeting_is_heard_first_and_is_turn_zero_in_redis() {
    let redis = RedisServer::start();
    let openai = FakeOpenAi::start().await;
    openai.push_speech(speech(0.8));
    openai.push_transcription(Reply::Json(serde_json::json!({"text": "Who is this?"})));
    openai.push_chat(Reply::Sse(text_answer("Ava, from Acme.")));
    openai.push_speech(speech(0.5));
    let toml = agent_toml(
        &openai,
        "type = \"scripted_vad\"\nspeech = [[1.5, 2.8]]",
        &format!("first_message = \"{GREETING}\""),
    );
    let (run, turns) = run_call(&toml, &redis, "call-greeting", 5.0).await;

    // The greeting was the first thing synthesised, and the bot spoke
    // before the caller did.
    let speech_requests = openai.received("audio/speech");
    assert_eq!(speech_requests[0].json()["input"], GREETING);
    assert!(run.first("bot_started_speaking") < run.first("user_started_speaking"));

    // Turn 0 in Redis is the greeting, heard whole; then the caller.
    assert_eq!(turns[0].index, 0);
    assert_eq!(turns[0].role, Role::Assistant);
    assert_eq!(turns[0].text, GREETING);
    assert!(!turns[0].interrupted);
    assert_eq!(turns[1].role, Role::User);
    assert_eq!(turns[1].text, "Who is this?");
    // The answer keeps its voice-to-voice latency; the greeting answered
    // nobody and has none.
    assert_eq!(turns[0].latency_ms, None);
    assert_eq!(turns[2].role, Role::Assistant);
    assert!(
        turns[2].latency_ms.is_some_and(|ms| ms > 0),
        "{:?}",
        turns[2]
    );

    // The LLM's first request has the greeting in its history.
    let chats = openai.chat_requests();
    assert_eq!(
        messages(&chats[0]),
        [
            pair("system", "You call people for Acme."),
            pair("assistant", GREETING),
            pair("user", "Who is this?"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_llm_opens_before_the_caller_speaks() {
    let redis = RedisServer::start();
    let openai = FakeOpenAi::start().await;
    openai.push_chat(Reply::Sse(text_answer("Hi, Acme here.")));
    openai.push_speech(speech(0.6));
    openai.push_transcription(Reply::Json(serde_json::json!({"text": "Yes?"})));
    openai.push_chat(Reply::Sse(text_answer("Do you have a minute?")));
    let toml = agent_toml(
        &openai,
        "type = \"scripted_vad\"\nspeech = [[1.5, 2.8]]",
        "llm_opens = true",
    );
    let (run, turns) = run_call(&toml, &redis, "call-llm-opens", 5.0).await;

    // The first request went out before the caller spoke, with nothing
    // but the system prompt.
    let chats = openai.chat_requests();
    assert_eq!(
        messages(&chats[0]),
        [pair("system", "You call people for Acme.")]
    );
    assert!(run.first("llm_response_started") < run.first("user_started_speaking"));
    assert!(run.first("bot_started_speaking") < run.first("user_started_speaking"));

    assert_eq!(turns[0].role, Role::Assistant);
    assert_eq!(turns[0].text, "Hi, Acme here.");
    assert_eq!(turns[1].role, Role::User);
    assert_eq!(
        messages(&chats[1]),
        [
            pair("system", "You call people for Acme."),
            pair("assistant", "Hi, Acme here."),
            pair("user", "Yes?"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_talking_over_the_greeting_cuts_it_and_the_context_keeps_what_was_heard() {
    const LONG_GREETING: &str = "Hello, this is Ava calling from Acme about the order \
                                 you placed with us last week for two blue chairs.";
    let redis = RedisServer::start();
    let openai = FakeOpenAi::start().await;
    // Six seconds of greeting: the caller starts at 1.5 s.
    openai.push_speech(speech(6.0));
    openai.push_transcription(Reply::Json(
        serde_json::json!({"text": "Hello, can you hear me?"}),
    ));
    openai.push_chat(Reply::Sse(text_answer("Yes, I can.")));
    openai.push_speech(speech(0.5));
    let toml = agent_toml(
        &openai,
        "type = \"vad\"",
        &format!("first_message = \"{LONG_GREETING}\""),
    );
    let (run, turns) = run_call(&toml, &redis, "call-barge-in", 4.3).await;

    // The caller's speech interrupted the greeting.
    let cut = run
        .events()
        .into_iter()
        .find(|(name, _)| *name == "interruption")
        .expect("the greeting was interrupted");
    assert!(cut.1["cut_ms"].as_u64().unwrap() > 1_000, "{cut:?}");

    // Turn 0 is the part of the greeting that was heard: a prefix of its
    // words, not all of them.
    assert_eq!(turns[0].role, Role::Assistant);
    assert!(turns[0].interrupted);
    let heard: Vec<&str> = turns[0].text.split_whitespace().collect();
    let all: Vec<&str> = LONG_GREETING.split_whitespace().collect();
    assert!(!heard.is_empty() && heard.len() < all.len(), "{heard:?}");
    assert_eq!(heard, all[..heard.len()]);
    assert_eq!(turns[1].role, Role::User);

    // The LLM sees what the caller heard of it.
    let chats = openai.chat_requests();
    assert_eq!(
        messages(&chats[0])[1],
        pair("assistant", &turns[0].text),
        "{:?}",
        messages(&chats[0])
    );
    let spoken_turns: Vec<_> = run
        .pushes
        .iter()
        .filter_map(|(_, _, f)| match &f.body {
            FrameBody::TurnCompleted(turn) => Some(turn.index),
            _ => None,
        })
        .collect();
    assert!(spoken_turns.contains(&0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twilio_caller_hears_the_greeting_before_saying_anything() {
    let redis = RedisServer::start();
    let openai = FakeOpenAi::start().await;
    openai.push_speech(speech(0.6));
    let toml = format!(
        r#"
[pipeline]
name = "twilio-opening"
first_message = "{GREETING}"

[[processor]]
type = "user_context"

[[processor]]
type = "llm"
provider = "openai"
base_url = "{base}"
model = "gpt-test"
api_key_env = "OPENAI_API_KEY"

[[processor]]
type = "tts"
provider = "openai"
base_url = "{base}"
api_key_env = "OPENAI_API_KEY"

[[processor]]
type = "assistant_context"

[context]
store = "redis"
url_env = "TEST_REDIS"
"#,
        base = openai.base_url,
    );
    let config = parse_pipeline(Path::new("test.toml"), &toml, &registry()).unwrap();
    let runtime = Arc::new(config.agent_runtime(&env(&redis)).unwrap());
    let store = runtime.store().clone();
    let redis_url = redis.url();
    let server = TestServer::start(Setup {
        toml: Some(&toml),
        path: "test.toml",
        env: &[("OPENAI_API_KEY", "sk-test"), ("TEST_REDIS", &redis_url)],
        context: Some(Arc::clone(&runtime)),
        ..Setup::default()
    })
    .await;

    let call = FakeCall::connect(server.addr, CallConfig::new(1)).await;
    // The caller says nothing but silence; the bot's greeting (a tone)
    // plays to them and its mark comes back.
    call.say(silence(3_000));
    let record = call
        .wait_until(WAIT, |r| {
            loud_frames(&decode(&r.heard), 1_000.0) >= 25 && !r.marks_echoed.is_empty()
        })
        .await;
    assert!(record.unexpected.is_empty(), "{:?}", record.unexpected);
    call.stop();
    call.closed(WAIT).await;
    let session = server.sessions.ended(1, WAIT).await.remove(0);
    runtime.drain_writers(WAIT).await;

    let turns = store.turns(&session.session_id).await.unwrap();
    assert_eq!(turns.len(), 1, "{turns:?}");
    assert_eq!(turns[0].index, 0);
    assert_eq!(turns[0].role, Role::Assistant);
    assert_eq!(turns[0].text, GREETING);
    assert!(
        openai.chat_requests().is_empty(),
        "no LLM run was asked for"
    );
}

/// A pipeline that only greets: no VAD or STT, the LLM never asked.
fn greeter_toml(openai: &FakeOpenAi) -> String {
    format!(
        r#"
[pipeline]
name = "greeter"
first_message = "{GREETING}"

[[processor]]
type = "user_context"

[[processor]]
type = "llm"
provider = "openai"
base_url = "{base}"
model = "gpt-test"
api_key_env = "OPENAI_API_KEY"

[[processor]]
type = "tts"
provider = "openai"
base_url = "{base}"
api_key_env = "OPENAI_API_KEY"

[[processor]]
type = "assistant_context"
"#,
        base = openai.base_url,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_hears_the_whole_greeting_once_connected() {
    use support::webrtc::{connected_client, decode, envelope};
    let openai = FakeOpenAi::start().await;
    openai.push_speech(speech(1.0));
    let server = TestServer::with_toml(
        &greeter_toml(&openai),
        &[],
        &[("OPENAI_API_KEY", "sk-test")],
    )
    .await;
    let (client, offer) = voxpipe::transport::webrtc::ClientPeer::offer()
        .await
        .unwrap();
    let (mut client, _answer, events) = connected_client(&server.url(""), offer, client).await;
    let mut audio = client.take_audio().unwrap();

    // The greeting's text reaches the page, and a second of audio (50
    // packets of 20 ms) follows the connection: held until the connection
    // was up, none of it was sent into the void.
    let (_, spoken) = events
        .wait_for(|v| v["event"] == "tts_text", WAIT)
        .await
        .expect("the greeting was spoken");
    assert_eq!(spoken["text"], GREETING);
    let mut received = Vec::new();
    tokio::time::timeout(WAIT, async {
        while let Some(packet) = audio.recv().await {
            received.push(packet);
            if received.len() >= 48 {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} packets of the greeting", received.len()));
    // The fake's tone (peak 8000 of 32768: RMS 0.17 of full scale), steady
    // through the packets.
    let level = envelope(&decode(&received), 960);
    let loud = level.iter().filter(|rms| **rms > 0.12).count();
    assert!(loud >= 40, "{level:?}");
    assert_eq!(openai.received("audio/speech").len(), 1);
    assert!(openai.chat_requests().is_empty());
}

#[test]
fn an_opening_the_pipeline_cannot_carry_out_is_refused_at_load() {
    let parrot =
        "[pipeline]\nname = \"p\"\nfirst_message = \"Hi\"\n\n[[processor]]\ntype = \"parrot\"\n";
    let error = parse_pipeline(Path::new("parrot.toml"), parrot, &registry())
        .unwrap_err()
        .to_string();
    assert!(error.contains("parrot.toml:3"), "{error}");
    assert!(error.contains("pipeline.first_message"), "{error}");
    assert!(error.contains("`tts`"), "{error}");

    let both = "[pipeline]\nname = \"p\"\nfirst_message = \"Hi\"\nllm_opens = true\n";
    let error = parse_pipeline(Path::new("both.toml"), both, &registry())
        .unwrap_err()
        .to_string();
    assert!(error.contains("both.toml:4"), "{error}");
    assert!(error.contains("not both"), "{error}");

    let empty = "[pipeline]\nname = \"p\"\nfirst_message = \"  \"\n";
    let error = parse_pipeline(Path::new("empty.toml"), empty, &registry())
        .unwrap_err()
        .to_string();
    assert!(error.contains("empty"), "{error}");

    let typo = "[pipeline]\nname = \"p\"\nfirst_mesage = \"Hi\"\n";
    let error = parse_pipeline(Path::new("typo.toml"), typo, &registry())
        .unwrap_err()
        .to_string();
    assert!(error.contains("typo.toml:3"), "{error}");
}

#[test]
fn the_shipped_outbound_profile_pipeline_opens_with_its_consent_question() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/outbound_profile.toml");
    let config = voxpipe::pipeline_file::load_pipeline(&path, &[], &registry()).unwrap();
    match config.pipeline.opening() {
        Some(voxpipe::config::Opening::Message(text)) => {
            assert!(text.contains("recorded") && text.ends_with('?'), "{text}");
        }
        other => panic!("{other:?}"),
    }
}
