//! A whole agent session with its memory: STT, the aggregators, an LLM that
//! calls `search_context`, TTS, against fake OpenAI-compatible servers, on a
//! real redis-server. The system prompt comes from the segment prompt and
//! the tactics, every turn the aggregators complete lands in Redis, and the
//! session-end evaluation feeds the refinement loop.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::fake::openai::{FakeOpenAi, Part, Reply, finish_chunk, text_answer, tool_chunk};
use support::processors::registry;
use support::redis_server::RedisServer;
use support::session::RecordingSink;
use support::signal::hello;
use voxpipe::conversation::Role;
use voxpipe::pipeline::EnvSource;
use voxpipe::pipeline::{NamedProcessor, SessionClock};
use voxpipe::pipeline_file::parse_pipeline;
use voxpipe::session::{SessionOptions, run_session};
use voxpipe::store::{CallStatus, Outcome, PromptKey, TacticsList};
use voxpipe::transport::TransportEnds;
use voxpipe::transport::file::FileInput;
use voxpipe::transport::{OutputTransport, Pacing};

fn agent_toml(openai: &FakeOpenAi) -> String {
    format!(
        r#"
[pipeline]
name = "sales-agent"

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
system_prompt = "The TOML's prompt, used when the store has none."
tools = ["search_context"]

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

[context.skills]
base_url = "{base}"

[evaluator]
base_url = "{base}"
model = "judge-test"
"#,
        base = openai.base_url,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_call_is_stored_turn_by_turn_searches_skills_and_is_judged() {
    let redis = RedisServer::start();
    let openai = FakeOpenAi::start().await;
    let config =
        parse_pipeline(Path::new("agent.toml"), &agent_toml(&openai), &registry()).unwrap();
    let env = EnvSource::Fixed(Arc::new(HashMap::from([
        ("TEST_REDIS".to_owned(), redis.url()),
        ("OPENAI_API_KEY".to_owned(), "sk-test".to_owned()),
    ])));
    let context = config.agent_runtime(&env).unwrap();
    let store = context.store().clone();
    let retail = PromptKey::Industry {
        industry: "retail".into(),
    };
    store
        .set_prompt(&retail, "You sell shelving to shops.")
        .await
        .unwrap();
    store
        .add_tactics(TacticsList::Base, &["Ask about their store size".into()])
        .await
        .unwrap();
    let skills = context.skills().unwrap();
    skills
        .add(
            "It is too expensive for us",
            "Show the cost per shelf per year",
        )
        .await
        .unwrap();

    // The caller objects; the model looks the objection up, then answers.
    openai.push_transcription(Reply::Json(json!({"text": "It's too expensive."})));
    openai.push_chat(Reply::Sse(vec![
        Part::Data(tool_chunk(0, Some("call_1"), Some("search_context"), "")),
        Part::Data(tool_chunk(0, None, None, "{\"query\": \"too expensive\"}")),
        Part::Data(finish_chunk("tool_calls")),
        Part::Data("[DONE]".into()),
    ]));
    openai.push_chat(Reply::Sse(text_answer(
        "Per shelf and year it costs less than a coffee.",
    )));

    let mut setup = config.session_setup("call-7");
    setup.env = env.clone();
    setup
        .custom_parameters
        .insert("industry".into(), "retail".into());
    let memory = context.open_session(&setup, "twilio").await;
    let ends = TransportEnds {
        input: NamedProcessor::new("transport.input", FileInput::new(hello(5.0), 16_000, false)),
        output: NamedProcessor::new(
            "transport.output",
            OutputTransport::new(
                RecordingSink::default(),
                Pacing::InboundAudio { realtime: false },
            ),
        ),
    };
    let report = run_session(
        &config.processors,
        ends,
        SessionOptions {
            setup,
            clock: SessionClock::audio(),
            observers: Vec::new(),
            memory: Some(memory.clone()),
        },
    )
    .await
    .unwrap();
    assert_eq!(report.end_reason, "end_of_input");
    assert!(report.fatal_error.is_none());
    let written = memory.finished(Duration::from_secs(10)).await.unwrap();
    assert!(written.unwritten.is_empty(), "{:?}", written.unwritten);

    // The LLM started from the segment's prompt and the tactics, and was
    // offered search_context.
    let chats = openai.received("chat/completions");
    let first = chats[0].json();
    assert_eq!(
        first["messages"][0]["content"],
        "You sell shelving to shops.\n\nWinning tactics to use when appropriate:\n\
         - Ask about their store size"
    );
    assert_eq!(first["tools"][0]["function"]["name"], "search_context");
    // The tool answered from the skills.
    let second = chats[1].json();
    let tool_message = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap();
    let result: Value = serde_json::from_str(tool_message["content"].as_str().unwrap()).unwrap();
    assert_eq!(
        result["results"][0]["rebuttal"],
        "Show the cost per shelf per year"
    );

    // Every turn the aggregators completed is in Redis, in order.
    let turns = store.turns("call-7").await.unwrap();
    let roles: Vec<Role> = turns.iter().map(|t| t.role).collect();
    assert_eq!(roles.first(), Some(&Role::User));
    assert_eq!(turns[0].text, "It's too expensive.");
    assert!(roles.contains(&Role::Tool), "{roles:?}");
    let last = turns.last().unwrap();
    assert_eq!(last.role, Role::Assistant);
    assert_eq!(last.text, "Per shelf and year it costs less than a coffee.");
    let indices: Vec<u64> = turns.iter().map(|t| t.index).collect();
    assert_eq!(indices, (0..turns.len() as u64).collect::<Vec<_>>());
    let call = store.call("call-7").await.unwrap().unwrap();
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(
        call.prompt_source.as_deref(),
        Some("prompt:segment:*:retail")
    );

    // The judge reads the stored transcript; a success promotes its tactics.
    openai.push_chat(Reply::Json(json!({
        "id": "chatcmpl-judge",
        "object": "chat.completion",
        "created": 1,
        "model": "judge-test",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
            "content": "{\"outcome\": \"success\", \"score\": 0.8, \"tactics\": [\"Cost per unit\"], \"reason\": \"Handled the objection.\"}"}}]
    })));
    assert_eq!(context.worker("w").unwrap().drain().await.unwrap(), 1);
    let judged = &openai.received("chat/completions")[2].json();
    assert_eq!(judged["model"], "judge-test");
    assert!(
        judged["messages"][1]["content"]
            .as_str()
            .unwrap()
            .contains("user: It's too expensive.\n"),
        "{judged}"
    );
    let call = store.call("call-7").await.unwrap().unwrap();
    assert_eq!(call.outcome, Some(Outcome::Success));
    assert_eq!(
        store.tactics(TacticsList::Winning).await.unwrap(),
        ["Cost per unit"]
    );
}
