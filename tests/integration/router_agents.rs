//! Specialist agents: the shipped `pipelines/specialists.toml` routes a
//! catalogue question to the catalogue agent (by the router model's strict
//! JSON answer) and a loan question to the finance agent (by its keyword
//! rule), each answering with its own prompt and tools over the committed
//! documents, CSV and calculator, and the stored turn names the agent, on a
//! real Redis and on the embedded store. Then the router's bad answers:
//! "none", an unknown name, prose, a server refusing `json_schema`, an
//! error: the default agent answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use serde_json::{Value, json};
use support::fake::openai::{FakeOpenAi, Part, Reply, finish_chunk, text_answer, tool_chunk};
use support::processors::registry;
use support::redis_server::RedisServer;
use support::session::{RecordingSink, build};
use support::signal::hello;
use voxpipe::conversation::{Message, Reflection, Role};
use voxpipe::frame::{Frame, FrameBody};
use voxpipe::pipeline::EnvSource;
use voxpipe::pipeline::{NamedProcessor, SessionClock};
use voxpipe::pipeline_file::parse_pipeline;
use voxpipe::services::llm::OpenAiLlmConfig;
use voxpipe::session::{SessionOptions, run_session};
use voxpipe::store::Interaction;
use voxpipe::testing::run_test;
use voxpipe::transport::TransportEnds;
use voxpipe::transport::file::FileInput;
use voxpipe::transport::{OutputTransport, Pacing};

/// The shipped example, its VAD scripted (one utterance), its services on
/// `openai`, its context store `store` (`redis` or `memory`).
fn example(openai: &FakeOpenAi, store: &str) -> String {
    let text = std::fs::read_to_string("pipelines/specialists.toml").unwrap();
    assert!(text.contains("type = \"vad\"\n") && text.contains("store = \"memory\""));
    text.replace(
        "type = \"vad\"\n",
        "type = \"scripted_vad\"\nspeech = [[1.5, 2.8]]\n",
    )
    .replace("https://api.openai.com/v1", &openai.base_url)
    .replace("store = \"memory\"", &format!("store = \"{store}\""))
}

fn tool_call(id: &str, name: &str, arguments: &str) -> Reply {
    Reply::Sse(vec![
        Part::Data(tool_chunk(0, Some(id), Some(name), "")),
        Part::Data(tool_chunk(0, None, None, arguments)),
        Part::Data(finish_chunk("tool_calls")),
        Part::Data("[DONE]".into()),
    ])
}

fn approve() -> Reply {
    Reply::Sse(text_answer(r#"{"approved": true, "critique": ""}"#))
}

/// Runs one call of the example, the caller saying `said`, and returns
/// its stored turns.
async fn call(
    openai: &FakeOpenAi,
    store: &str,
    redis_url: &str,
    id: &str,
    said: &str,
) -> Vec<Interaction> {
    let config = parse_pipeline(
        Path::new("pipelines/specialists.toml"),
        &example(openai, store),
        &registry(),
    )
    .unwrap();
    let env = EnvSource::Fixed(Arc::new(HashMap::from([
        ("REDIS_URL".to_owned(), redis_url.to_owned()),
        ("OPENAI_API_KEY".to_owned(), "sk-test".to_owned()),
    ])));
    let runtime = config.agent_runtime(&env).unwrap();
    openai.push_transcription(Reply::Json(json!({ "text": said })));
    let mut setup = config.session_setup(id);
    setup.env = env;
    let memory = runtime.open_session(&setup, "file").await;
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
    assert!(report.fatal_error.is_none(), "{:?}", report.fatal_error);
    let written = memory.finished(Duration::from_secs(20)).await.unwrap();
    assert!(written.unwritten.is_empty(), "{:?}", written.unwritten);
    runtime.store().turns(id).await.unwrap()
}

fn tool_names(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The catalogue question: routed by the router model, answered from the
/// committed CSV, approved by the reviewer.
async fn catalogue_call(store: &str, redis_url: &str) -> (FakeOpenAi, Vec<Interaction>) {
    let openai = FakeOpenAi::start().await;
    openai.push_chats([
        Reply::Sse(text_answer(r#"{"agent": "catalogue"}"#)),
        tool_call(
            "call_1",
            "search_catalogue",
            r#"{"query": "Nova desk lamp"}"#,
        ),
        Reply::Sse(text_answer(
            "The Nova desk lamp costs 19 euros and is in stock.",
        )),
        approve(),
    ]);
    let turns = call(
        &openai,
        store,
        redis_url,
        "call-catalogue",
        "How much is the Nova desk lamp?",
    )
    .await;
    (openai, turns)
}

fn check_catalogue_call(openai: &FakeOpenAi, turns: &[Interaction]) {
    let chats = openai.chat_requests();
    assert_eq!(chats.len(), 4, "router, two rounds, review");
    // The router: a strict JSON schema naming the agents, the question in it.
    let format = &chats[0]["response_format"];
    assert_eq!(format["type"], "json_schema");
    assert_eq!(format["json_schema"]["strict"], true);
    assert_eq!(
        format["json_schema"]["schema"]["properties"]["agent"]["enum"],
        json!(["information", "catalogue", "finance", "none"])
    );
    assert!(chats[0]["tools"].is_null());
    let routed = chats[0]["messages"][1]["content"].as_str().unwrap();
    assert!(
        routed.ends_with("user: How much is the Nova desk lamp?\n"),
        "{routed}"
    );
    // The catalogue agent: the shared prompt, then its own; only its tools.
    let system = chats[1]["messages"][0]["content"].as_str().unwrap();
    assert!(system.starts_with("You work for Casa Viva"), "{system}");
    assert!(
        system.contains("You are the catalogue assistant."),
        "{system}"
    );
    assert_eq!(tool_names(&chats[1]), ["end_call", "search_catalogue"]);
    // The tool read the committed CSV.
    let tool = turns.iter().find(|t| t.role == Role::Tool).unwrap();
    let result: Value = serde_json::from_str(&tool.text).unwrap();
    assert_eq!(result["rows"][0]["sku"], "L-400");
    assert_eq!(result["rows"][0]["price_eur"], "19.00");
    // The reviewer saw the tool result and the draft.
    let review = chats[3]["messages"][1]["content"].as_str().unwrap();
    assert!(review.contains("\"price_eur\":\"19.00\""), "{review}");
    assert!(review.ends_with("The Nova desk lamp costs 19 euros and is in stock."));
    // The stored answer names its agent and its review.
    let answer = turns.last().unwrap();
    assert_eq!(answer.role, Role::Assistant);
    assert_eq!(
        answer.text,
        "The Nova desk lamp costs 19 euros and is in stock."
    );
    assert_eq!(answer.agent.as_deref(), Some("catalogue"));
    assert_eq!(
        answer.reflection,
        Some(Reflection {
            rounds: 1,
            approved: true
        })
    );
    assert_eq!(turns[0].role, Role::User);
    assert_eq!(turns[0].agent, None);
}

/// The loan question: the finance agent's keyword rule routes it (no router
/// request), and its calculator answers.
async fn finance_call(store: &str, redis_url: &str) -> Vec<Interaction> {
    let openai = FakeOpenAi::start().await;
    openai.push_chats([
        tool_call(
            "call_2",
            "loan_payment",
            r#"{"principal": 10000, "annual_rate_percent": 5, "term_months": 60}"#,
        ),
        Reply::Sse(text_answer("That is 188.71 euros a month.")),
        approve(),
    ]);
    let turns = call(
        &openai,
        store,
        redis_url,
        "call-finance",
        "What would a loan of 10000 euros at 5 percent over five years cost me monthly?",
    )
    .await;
    let chats = openai.chat_requests();
    assert_eq!(chats.len(), 3, "no router request: two rounds and a review");
    assert!(chats[0]["response_format"].is_null());
    assert_eq!(tool_names(&chats[0]), ["loan_payment", "end_call"]);
    let system = chats[0]["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("You are the finance assistant."),
        "{system}"
    );
    let tool = turns.iter().find(|t| t.role == Role::Tool).unwrap();
    let result: Value = serde_json::from_str(&tool.text).unwrap();
    assert_eq!(result["monthly_payment"], json!(188.71));
    let answer = turns.last().unwrap();
    assert_eq!(answer.agent.as_deref(), Some("finance"));
    assert_eq!(answer.text, "That is 188.71 euros a month.");
    turns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_routes_catalogue_and_loan_questions_and_redis_keeps_the_agent() {
    let redis = RedisServer::start();
    let (openai, turns) = catalogue_call("redis", &redis.url()).await;
    check_catalogue_call(&openai, &turns);
    finance_call("redis", &redis.url()).await;

    // As Redis holds it: the agent and the review in the item's JSON.
    let mut client = redis.client().await;
    let items: Vec<String> = client
        .lrange("call:call-catalogue:interactions", 0, -1)
        .await
        .unwrap();
    let last: Value = serde_json::from_str(items.last().unwrap()).unwrap();
    assert_eq!(last["agent"], "catalogue");
    assert_eq!(last["reflection"], json!({"rounds": 1, "approved": true}));
    let first: Value = serde_json::from_str(&items[0]).unwrap();
    assert!(first.get("agent").is_none(), "{first}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_keeps_the_agent_too() {
    let (openai, turns) = catalogue_call("memory", "redis://unused").await;
    check_catalogue_call(&openai, &turns);
    finance_call("memory", "redis://unused").await;
}

/// An LLM with three agents and no keyword rules.
fn router_llm(openai: &FakeOpenAi) -> NamedProcessor {
    router_llm_with(openai, "")
}

/// The router LLM with `router_keys` added to `[router]`.
pub(crate) fn router_llm_with(openai: &FakeOpenAi, router_keys: &str) -> NamedProcessor {
    build::<OpenAiLlmConfig>(
        "llm",
        &format!(
            r#"
base_url = "{}"
model = "agent-model"
tools = ["loan_payment"]

[router]
default_agent = "information"
model = "router-model"
{router_keys}

[[agents]]
name = "catalogue"
description = "Products and prices."
system_prompt = "You are the catalogue assistant."

[[agents]]
name = "information"
description = "Everything else."
system_prompt = "You are the information assistant."

[[agents]]
name = "finance"
description = "Loans and monthly payments."
system_prompt = "You are the finance assistant."
tools = ["loan_payment"]
model = "finance-model"
"#,
            openai.base_url
        ),
        &[],
    )
}

pub(crate) fn asked(text: &str) -> FrameBody {
    FrameBody::LlmMessages(Arc::new(vec![Message::text(Role::User, text)]))
}

fn selected(frames: &[Frame]) -> Vec<(String, &'static str)> {
    frames
        .iter()
        .filter_map(|f| match &f.body {
            FrameBody::AgentSelected { agent, by } => Some((agent.to_string(), *by)),
            _ => None,
        })
        .collect()
}

/// Asks the router LLM one question, the router answering `routed`;
/// returns the agents selected and the answering request.
async fn route(routed: Reply, refuse_json_schema: bool) -> (Vec<(String, &'static str)>, Value) {
    let openai = FakeOpenAi::start().await;
    if refuse_json_schema {
        openai.refuse_json_schema();
    }
    openai.push_chats_for("router-model", [routed]);
    openai.chat_fallback(Reply::Sse(text_answer("Here you are.")));
    let out = run_test(
        vec![router_llm(&openai)],
        vec![asked("How much a month for a 10000 euro loan?")],
    )
    .await;
    let chats = openai.chat_requests();
    let answering = chats
        .iter()
        .find(|c| c["model"] != "router-model")
        .unwrap()
        .clone();
    (selected(&out.downstream), answering)
}

#[tokio::test]
async fn the_router_model_sends_a_loan_question_to_finance() {
    let (agents, answering) =
        route(Reply::Sse(text_answer(r#"{"agent": "finance"}"#)), false).await;
    assert_eq!(agents, [("finance".to_owned(), "llm")]);
    assert_eq!(answering["model"], "finance-model");
    assert_eq!(tool_names(&answering), ["loan_payment"]);
    assert_eq!(
        answering["messages"][0]["content"],
        "You are the finance assistant."
    );
    assert_eq!(
        answering["messages"][1]["content"],
        "How much a month for a 10000 euro loan?"
    );
}

#[tokio::test]
async fn a_router_answer_naming_no_agent_leaves_the_turn_to_the_default_agent() {
    for answer in [
        r#"{"agent": "none"}"#,
        r#"{"agent": "sales"}"#,
        r#"{"department": "finance"}"#,
        "I think finance would fit.",
    ] {
        let (agents, answering) = route(Reply::Sse(text_answer(answer)), false).await;
        assert_eq!(agents, [("information".to_owned(), "default")], "{answer}");
        assert_eq!(answering["model"], "agent-model");
        assert!(
            answering["tools"].is_null(),
            "the information agent has no tools"
        );
        assert_eq!(
            answering["messages"][0]["content"],
            "You are the information assistant."
        );
    }
    // A router that cannot be asked: the default agent answers all the same.
    let (agents, _) = route(
        Reply::error(404, "model not found", "invalid_request_error"),
        false,
    )
    .await;
    assert_eq!(agents, [("information".to_owned(), "default")]);
}

#[tokio::test]
async fn a_server_without_structured_outputs_is_asked_again_without_the_schema() {
    let openai = FakeOpenAi::start().await;
    openai.refuse_json_schema();
    openai.push_chats_for(
        "router-model",
        [Reply::Sse(text_answer(
            "```json\n{\"agent\": \"catalogue\"}\n```",
        ))],
    );
    openai.chat_fallback(Reply::Sse(text_answer("Here you are.")));
    let out = run_test(
        vec![router_llm(&openai)],
        vec![asked("Do you sell kettles?")],
    )
    .await;
    assert_eq!(selected(&out.downstream), [("catalogue".to_owned(), "llm")]);
    let formats = openai.response_formats();
    assert_eq!(formats[0]["type"], "json_schema", "refused with 400");
    assert!(formats[1].is_null(), "asked again without it");
}

#[tokio::test]
async fn a_reasoning_model_refusing_the_temperature_is_asked_again_without_it() {
    // OpenAI's o-series and gpt-5 take only their default temperature.
    let openai = FakeOpenAi::start().await;
    openai.refuse_temperature();
    openai.push_chats_for(
        "router-model",
        [Reply::Sse(text_answer(r#"{"agent": "catalogue"}"#))],
    );
    openai.chat_fallback(Reply::Sse(text_answer("Here you are.")));
    let out = run_test(
        vec![router_llm(&openai)],
        vec![asked("Do you sell kettles?")],
    )
    .await;
    assert_eq!(selected(&out.downstream), [("catalogue".to_owned(), "llm")]);
    let routing: Vec<Value> = openai
        .chat_requests()
        .into_iter()
        .filter(|c| c["model"] == "router-model")
        .collect();
    assert_eq!(routing.len(), 2);
    assert_eq!(routing[0]["temperature"], json!(0.0), "refused with 400");
    assert!(routing[1].get("temperature").is_none(), "asked without it");
    assert_eq!(
        routing[1]["response_format"]["type"], "json_schema",
        "the format the server did not refuse is kept"
    );

    // A server refusing both: each is dropped in turn.
    let openai = FakeOpenAi::start().await;
    openai.refuse_temperature();
    openai.refuse_json_schema();
    openai.push_chats_for(
        "router-model",
        [Reply::Sse(text_answer(r#"{"agent": "catalogue"}"#))],
    );
    openai.chat_fallback(Reply::Sse(text_answer("Here you are.")));
    let out = run_test(
        vec![router_llm(&openai)],
        vec![asked("Do you sell kettles?")],
    )
    .await;
    assert_eq!(selected(&out.downstream), [("catalogue".to_owned(), "llm")]);
    let routing = openai
        .chat_requests()
        .into_iter()
        .filter(|c| c["model"] == "router-model")
        .count();
    assert_eq!(routing, 3);
}

#[tokio::test]
async fn the_routers_requests_carry_its_token_cap() {
    let openai = FakeOpenAi::start().await;
    openai.push_chats_for(
        "router-model",
        [Reply::Sse(text_answer(r#"{"agent": "catalogue"}"#))],
    );
    openai.chat_fallback(Reply::Sse(text_answer("Here you are.")));
    let llm = router_llm_with(&openai, "max_tokens = 64\ntimeout_secs = 4");
    let out = run_test(vec![llm], vec![asked("Do you sell kettles?")]).await;
    assert_eq!(selected(&out.downstream), [("catalogue".to_owned(), "llm")]);
    let chats = openai.chat_requests();
    assert_eq!(chats[0]["model"], "router-model");
    assert_eq!(chats[0]["max_tokens"], 64);
    assert!(chats[1].get("max_tokens").is_none(), "{}", chats[1]);
}

#[tokio::test]
async fn a_reasoning_model_refusing_the_token_cap_is_asked_again_without_it() {
    let openai = FakeOpenAi::start().await;
    openai.refuse_temperature();
    openai.push_chats_for(
        "router-model",
        [Reply::Sse(text_answer(r#"{"agent": "catalogue"}"#))],
    );
    openai.chat_fallback(Reply::Sse(text_answer("Here you are.")));
    let llm = router_llm_with(&openai, "max_tokens = 64");
    let out = run_test(vec![llm], vec![asked("Do you sell kettles?")]).await;
    assert_eq!(selected(&out.downstream), [("catalogue".to_owned(), "llm")]);
    let routing: Vec<Value> = openai
        .chat_requests()
        .into_iter()
        .filter(|c| c["model"] == "router-model")
        .collect();
    // Refused for the temperature, then for the cap, then answered.
    assert_eq!(routing.len(), 3, "{routing:#?}");
    assert_eq!(routing[1]["max_tokens"], 64);
    assert!(routing[2].get("max_tokens").is_none());
    assert_eq!(routing[2]["response_format"]["type"], "json_schema");
}

#[tokio::test]
async fn agents_naming_unknown_tools_or_defaults_are_refused_at_build() {
    let config: OpenAiLlmConfig = toml::from_str(
        "model = \"m\"\n[[agents]]\nname = \"a\"\ndescription = \"d\"\nsystem_prompt = \"p\"\ntools = [\"search_web\"]\n",
    )
    .unwrap();
    let setup = voxpipe::pipeline::SessionSetup::new("s", 16_000);
    let error = voxpipe::pipeline::ProcessorFactory::build(&config, &setup)
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("agent `a`: unknown tool `search_web`"),
        "{error}"
    );
    let config: OpenAiLlmConfig =
        toml::from_str("model = \"m\"\n[router]\ndefault_agent = \"x\"\n").unwrap();
    let error = voxpipe::pipeline::ProcessorFactory::build(&config, &setup)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("needs [[processor.agents]]"), "{error}");
    let unknown_key = toml::from_str::<OpenAiLlmConfig>(
        "model = \"m\"\n[[agents]]\nname = \"a\"\ndescription = \"d\"\nsystem_prompt = \"p\"\nprompt = \"x\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        unknown_key.contains("unknown field `prompt`"),
        "{unknown_key}"
    );
}

#[tokio::test]
async fn agents_may_name_tools_an_mcp_server_could_offer_and_no_others() {
    let build = |tools: &str| {
        let config: OpenAiLlmConfig = toml::from_str(&format!(
            "model = \"m\"\n\
             [[mcp_servers]]\nname = \"crm\"\ncommand = \"/nonexistent/crm\"\ntool_prefix = \"crm_\"\n\
             [[mcp_servers]]\nname = \"files\"\ncommand = \"/nonexistent/files\"\n\
             tool_prefix = \"files_\"\ntools = [\"read.text\"]\n\
             [[agents]]\nname = \"a\"\ndescription = \"d\"\nsystem_prompt = \"p\"\ntools = {tools}\n"
        ))
        .unwrap();
        let setup = voxpipe::pipeline::SessionSetup::new("s", 16_000);
        voxpipe::pipeline::ProcessorFactory::build(&config, &setup)
            .err()
            .map(|e| e.to_string())
    };
    // Any tool after `crm_`; only the allowed one after `files_`, named
    // as the model sees it.
    assert_eq!(build("[\"crm_lookup\", \"files_read_text\"]"), None);
    for unknown in ["search_web", "files_write", "crm_"] {
        let error = build(&format!("[\"{unknown}\"]")).unwrap_or_default();
        assert!(
            error.contains(&format!("agent `a`: unknown tool `{unknown}`")),
            "{unknown}: {error}"
        );
    }
}
