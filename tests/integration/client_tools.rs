//! Tools and the client app. Client tools (`[[processor.client_tools]]`):
//! the model calls a tool the client app runs; the client's result (a
//! `ClientToolResult` frame, as the WebRTC transport pushes for RTVI's
//! `llm-function-call-result`) is the tool's result, and no answer is a
//! tool error after the tool's timeout. And a tool can send the client app
//! a message (`ServerMessage`, RTVI `server-message`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::sync::Arc;

use serde_json::{Value, json};
use support::fake::openai::{FakeOpenAi, Part, Reply, finish_chunk, text_answer, tool_chunk};
use support::session::build;
use voxpipe::conversation::{Message, Role};
use voxpipe::frame::FrameBody;
use voxpipe::pipeline::{NamedProcessor, ProcessorFactory, SessionSetup};
use voxpipe::services::llm::OpenAiLlmConfig;
use voxpipe::services::llm::tools::{Tool, ToolError, ToolOutcome, ToolRegistry, ToolSpec};
use voxpipe::testing::run_test;

fn llm(server: &FakeOpenAi) -> voxpipe::pipeline::NamedProcessor {
    build::<OpenAiLlmConfig>(
        "llm",
        &format!(
            "base_url = \"{}\"\nmodel = \"m\"\n\n[[client_tools]]\nname = \"get_location\"\n\
             description = \"Where the user is.\"\ntimeout_secs = 1\n",
            server.base_url
        ),
        &[],
    )
}

fn asks_for_location(server: &FakeOpenAi) {
    server.push_chat(Reply::Sse(vec![
        Part::Data(tool_chunk(0, Some("call_loc"), Some("get_location"), "{}")),
        Part::Data(finish_chunk("tool_calls")),
        Part::Data("[DONE]".into()),
    ]));
    server.push_chat(Reply::Sse(text_answer("You are in Oslo.")));
}

fn user(text: &str) -> FrameBody {
    FrameBody::LlmMessages(Arc::new(vec![Message::text(Role::User, text)]))
}

/// The tool message the model got back in its second request.
fn tool_message(server: &FakeOpenAi) -> Value {
    let second = server.received("chat/completions")[1].json();
    second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .cloned()
        .unwrap()
}

#[tokio::test]
async fn the_clients_result_is_the_tools_result() {
    let server = FakeOpenAi::start().await;
    asks_for_location(&server);
    let out = run_test(
        vec![llm(&server)],
        vec![
            user("Where am I?"),
            FrameBody::ClientToolResult {
                tool_call_id: "call_loc".into(),
                result: r#"{"city":"Oslo"}"#.into(),
            },
        ],
    )
    .await;
    let message = tool_message(&server);
    assert_eq!(message["tool_call_id"], json!("call_loc"));
    assert_eq!(message["content"], json!(r#"{"city":"Oslo"}"#));
    let tools: Vec<Value> = server.chat_requests()[0]["tools"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(tools[0]["function"]["name"], json!("get_location"));
    assert!(out.downstream.iter().any(|f| matches!(
        &f.body,
        FrameBody::FunctionCallResult { call, .. } if call.id == "call_loc"
    )));
}

#[tokio::test]
async fn no_answer_from_the_client_is_a_tool_error_after_the_timeout() {
    let server = FakeOpenAi::start().await;
    asks_for_location(&server);
    let started = std::time::Instant::now();
    run_test(vec![llm(&server)], vec![user("Where am I?")]).await;
    let message = tool_message(&server);
    let content: Value = serde_json::from_str(message["content"].as_str().unwrap()).unwrap();
    assert!(
        content["error"]
            .as_str()
            .unwrap()
            .contains("no result within"),
        "{content}"
    );
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
}

/// A tool written in Rust that also tells the client app something.
struct Notify {
    spec: ToolSpec,
}

#[async_trait::async_trait]
impl Tool for Notify {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, _arguments: Value) -> Result<ToolOutcome, ToolError> {
        Ok(ToolOutcome::result("sent").with_server_message(json!({"toast": "Booked"})))
    }
}

#[tokio::test]
async fn a_tool_can_send_the_client_app_a_server_message() {
    let server = FakeOpenAi::start().await;
    server.push_chat(Reply::Sse(vec![
        Part::Data(tool_chunk(0, Some("call_n"), Some("notify"), "{}")),
        Part::Data(finish_chunk("tool_calls")),
        Part::Data("[DONE]".into()),
    ]));
    server.push_chat(Reply::Sse(text_answer("Done.")));
    let mut registry = ToolRegistry::builtin();
    registry.register(Arc::new(Notify {
        spec: ToolSpec {
            name: "notify".into(),
            description: "Tells the app.".into(),
            parameters: json!({"type": "object", "properties": {}}),
        },
    }));
    let setup = SessionSetup::new("test-session", 16_000);
    setup.resources.insert(ToolRegistry::RESOURCE, registry);
    let config: OpenAiLlmConfig = toml::from_str(&format!(
        "base_url = \"{}\"\nmodel = \"m\"\ntools = [\"notify\"]\n",
        server.base_url
    ))
    .unwrap();
    let llm = NamedProcessor {
        name: "llm".into(),
        processor: config.build(&setup).unwrap(),
    };
    let out = run_test(vec![llm], vec![user("Book it")]).await;
    let message = out
        .downstream
        .iter()
        .position(
            |f| matches!(&f.body, FrameBody::ServerMessage(data) if data["toast"] == "Booked"),
        )
        .expect("a server message");
    let result = out
        .downstream
        .iter()
        .position(|f| matches!(&f.body, FrameBody::FunctionCallResult { call, .. } if call.id == "call_n"))
        .expect("the result");
    assert!(message < result, "the message goes before the result");
}

#[test]
fn a_registered_tool_whose_schema_does_not_compile_fails_the_build() {
    let mut registry = ToolRegistry::builtin();
    registry.register(Arc::new(Notify {
        spec: ToolSpec {
            name: "notify".into(),
            description: "Tells the app.".into(),
            parameters: json!({"type": "object", "properties": {"a": {"type": "nonsense"}}}),
        },
    }));
    let setup = SessionSetup::new("test-session", 16_000);
    setup.resources.insert(ToolRegistry::RESOURCE, registry);
    let config: OpenAiLlmConfig = toml::from_str("model = \"m\"\ntools = [\"notify\"]\n").unwrap();
    let error = config.build(&setup).err().map(|e| e.to_string());
    assert!(
        error.as_deref().is_some_and(
            |e| e.starts_with("tool `notify`: its parameters are not a valid JSON Schema")
        ),
        "{error:?}"
    );
}
