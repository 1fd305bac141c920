//! A whole agent turn through the OpenAI-compatible services, against fake
//! servers: a user utterance goes to STT, the LLM calls a tool whose
//! arguments arrive in fragments, gets the result, streams two sentences,
//! the TTS speaks the first before the LLM finishes, and audio comes out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::sync::Arc;
use support::fake::openai::{FakeOpenAi, Part, Reply, finish_chunk, text_chunk, tool_chunk};

use serde_json::json;
use support::session::{FirstPush, run_observed};
use support::signal::hello;
use tokio::sync::Notify;
use voxpipe::conversation::{Role, SharedConversation, TOOL_IN_PROGRESS};
use voxpipe::frame::FrameBody;

fn agent_toml(server: &FakeOpenAi) -> String {
    format!(
        r#"
[pipeline]
name = "agent-test"

[[processor]]
type = "scripted_vad"
speech = [[1.5, 2.8]]

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
system_prompt = "You are a weather assistant."
tools = ["end_call"]

[[processor.http_tools]]
name = "get_weather"
description = "The weather in a city."
url = "{tool}"
parameters = {{ type = "object", properties = {{ city = {{ type = "string" }} }}, required = ["city"] }}

[[processor]]
type = "tts"
provider = "openai"
base_url = "{base}"
api_key_env = "OPENAI_API_KEY"

[[processor]]
type = "assistant_context"
"#,
        base = server.base_url,
        tool = server.tool_url("weather"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_utterance_becomes_a_tool_call_then_a_spoken_answer() {
    let server = FakeOpenAi::start().await;
    let first_audio = Arc::new(Notify::new());
    let audio_out = FirstPush::new(
        "tts",
        |body| matches!(body, FrameBody::OutputAudio(_)),
        Arc::clone(&first_audio),
    );
    server.push_transcription(Reply::Json(json!({"text": "What's the weather in Paris?"})));
    server.push_chat(Reply::Sse(vec![
        Part::Data(tool_chunk(0, Some("call_1"), Some("get_weather"), "")),
        Part::Data(tool_chunk(0, None, None, "{\"ci")),
        Part::Data(tool_chunk(0, None, None, "ty\": \"Pa")),
        Part::Data(tool_chunk(0, None, None, "ris\"}")),
        Part::Data(finish_chunk("tool_calls")),
        Part::Data("[DONE]".into()),
    ]));
    server.push_tool(Reply::Json(json!({"forecast": "sunny", "celsius": 21})));
    server.push_chat(Reply::Sse(vec![
        Part::Data(text_chunk("It is sunny")),
        Part::Data(text_chunk(" in Paris.")),
        Part::Data(text_chunk(" Take")),
        // The rest of the answer waits until the first sentence's audio
        // has come out of the TTS: speech must not wait for the LLM.
        Part::WaitFor(Arc::clone(&first_audio), "tts audio"),
        Part::Data(text_chunk(" sunglasses!")),
        Part::Data(finish_chunk("stop")),
        Part::Data("[DONE]".into()),
    ]));
    let speech = |secs| {
        Reply::Pcm(vec![
            Part::Raw(support::signal::tone_pcm(24_000, secs / 2.0)),
            Part::Raw(support::signal::tone_pcm(24_000, secs / 2.0)),
        ])
    };
    server.push_speech(speech(0.6));
    server.push_speech(speech(0.4));

    let run = run_observed(
        &agent_toml(&server),
        hello(4.5),
        &[("OPENAI_API_KEY", "sk-test")],
        vec![audio_out],
    )
    .await;
    assert_eq!(run.report.end_reason, "end_of_input");
    assert!(run.report.fatal_error.is_none());
    assert!(run.errors().is_empty(), "{:?}", run.errors());

    // The utterance went to STT as a WAV of the speech and its pre-roll.
    let uploads = server.received("audio/transcriptions");
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].authorization.as_deref(), Some("Bearer sk-test"));
    let parts = uploads[0].multipart();
    let (_, filename, wav) = parts.iter().find(|(name, _, _)| name == "file").unwrap();
    assert_eq!(filename.as_deref(), Some("utterance.wav"));
    let audio = voxpipe::audio::read_wav_from(&wav[..]).unwrap();
    let secs = audio.frames() as f64 / 16_000.0;
    assert!((1.55..=1.7).contains(&secs), "utterance of {secs} s");
    assert!(
        parts
            .iter()
            .any(|(name, _, value)| name == "model" && !value.is_empty())
    );

    // The tool got the arguments assembled from the fragments.
    let tool_calls = server.received("tools/weather");
    assert_eq!(tool_calls.len(), 1);
    assert_eq!(tool_calls[0].json(), json!({"city": "Paris"}));

    // The model was asked again with the call and its result, in the
    // OpenAI format.
    let chats = server.received("chat/completions");
    assert_eq!(chats.len(), 2);
    let first = chats[0].json();
    assert_eq!(first["stream"], json!(true));
    assert_eq!(
        first["messages"][0],
        json!({"role": "system", "content": "You are a weather assistant."})
    );
    assert_eq!(
        first["messages"][1],
        json!({"role": "user", "content": "What's the weather in Paris?"})
    );
    let tools: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["end_call", "get_weather"]);
    let second = chats[1].json();
    assert_eq!(
        second["messages"][2],
        json!({"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
               "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]})
    );
    assert_eq!(
        second["messages"][3],
        json!({"role": "tool", "content": "{\"forecast\":\"sunny\",\"celsius\":21}", "tool_call_id": "call_1"})
    );

    // The first sentence was spoken while the LLM was still writing.
    let log = server.log();
    let position = |line: &str| {
        log.iter()
            .position(|l| l == line)
            .unwrap_or_else(|| panic!("no `{line}` in {log:#?}"))
    };
    assert!(position("speech: It is sunny in Paris.") < position("chat 2: saw tts audio"));
    assert!(position("chat 2: saw tts audio") < position("chat 2: end"));
    assert!(position("chat 2: end") < position("speech: Take sunglasses!"));
    let tts_audio = run
        .pushes
        .iter()
        .position(|(from, _, f)| from == "tts" && matches!(f.body, FrameBody::OutputAudio(_)))
        .unwrap();
    let llm_end = run
        .pushes
        .iter()
        .position(|(from, _, f)| {
            from == "llm" && matches!(f.body, FrameBody::LlmResponseEnd { .. })
        })
        .unwrap();
    assert!(
        tts_audio < llm_end,
        "audio came out before the LLM finished"
    );

    // The events show each step in order.
    let names = run.event_names();
    let steps = [
        "user_started_speaking",
        "user_stopped_speaking",
        "transcription",
        "llm_response_started",
        "tool_call",
        "tool_result",
        "llm_text",
        "tts_started",
        "llm_response_ended",
        "tts_stopped",
    ];
    let positions: Vec<usize> = steps.iter().map(|s| run.first(s)).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "{steps:?} at {positions:?} in {names:?}"
    );
    assert!(names.contains(&"bot_started_speaking") && names.contains(&"bot_stopped_speaking"));
    let events = run.events();
    let (_, transcription) = &events[run.first("transcription")];
    assert_eq!(transcription["text"], json!("What's the weather in Paris?"));
    let (_, call) = &events[run.first("tool_call")];
    assert_eq!(call["name"], json!("get_weather"));
    assert_eq!(call["arguments"], json!("{\"city\": \"Paris\"}"));
    let ttfb: Vec<&str> = events
        .iter()
        .filter(|(name, fields)| *name == "metrics" && fields["metric"] == json!("ttfb"))
        .map(|(_, fields)| fields["processor"].as_str().unwrap())
        .collect();
    assert_eq!(
        ttfb,
        ["llm", "tts"],
        "time to first token and to first audio byte"
    );

    // Audio came out: both sentences, resampled from 24 kHz to 16 kHz.
    assert!(
        run.audio
            .iter()
            .all(|a| a.sample_rate == 16_000 && a.channels == 1)
    );
    let secs = run.audio_secs();
    assert!((0.98..=1.05).contains(&secs), "{secs} s of audio");

    // The conversation holds the turn as the OpenAI format expects, and
    // each completed turn was announced.
    let conversation = run.resources.get::<SharedConversation>("default").unwrap();
    let messages = conversation.lock().context.messages().to_vec();
    let roles: Vec<Role> = messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [Role::User, Role::Assistant, Role::Tool, Role::Assistant]
    );
    assert_eq!(
        messages[2].content.as_deref(),
        Some("{\"forecast\":\"sunny\",\"celsius\":21}")
    );
    assert_ne!(messages[2].content.as_deref(), Some(TOOL_IN_PROGRESS));
    assert_eq!(
        messages[3].content.as_deref(),
        Some("It is sunny in Paris. Take sunglasses!")
    );
    let mut seen = std::collections::HashSet::new();
    let mut turns: Vec<_> = run
        .pushes
        .iter()
        .filter(|(_, _, f)| seen.insert(f.id))
        .filter_map(|(_, _, f)| match &f.body {
            FrameBody::TurnCompleted(turn) => Some(turn.clone()),
            _ => None,
        })
        .collect();
    turns.sort_by_key(|t| t.index);
    let summary: Vec<(u64, Role, bool)> = turns
        .iter()
        .map(|t| (t.index, t.role, t.interrupted))
        .collect();
    assert_eq!(
        summary,
        [
            (0, Role::User, false),
            (1, Role::Tool, false),
            (2, Role::Assistant, false)
        ]
    );
    assert_eq!(turns[2].tool_calls[0].name, "get_weather");
    assert_eq!(turns[2].text, "It is sunny in Paris. Take sunglasses!");
}
