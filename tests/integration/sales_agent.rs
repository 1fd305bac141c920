//! The shipped self-improving sales agent, `pipelines/agent_sales.toml`,
//! as a user runs it: the file as shipped passes `voxpipe check`, and
//! loaded with `--set` overrides pointing every provider at the fake
//! OpenAI-compatible server and Redis at a test redis-server, a won call
//! goes through the loop (judged, learned from) and the next call's LLM
//! finds the learned rebuttal through its `search_context` tool, with the
//! winning tactic in its prompt.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use serde_json::{Value, json};
use support::fake::openai::{FakeOpenAi, Reply, verdict};
use support::processors::registry;
use support::redis_server::RedisServer;
use support::turns::converse;
use voxpipe::agent::SessionPrompt;
use voxpipe::config::Override;
use voxpipe::pipeline::EnvSource;
use voxpipe::pipeline_file::parse_pipeline_with_overrides;
use voxpipe::services::llm::tools::ToolRegistry;
use voxpipe::store::{Learned, Outcome};

const SALES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/agent_sales.toml");

const WON_CALL: &[&str] = &[
    "assistant: Hi, this is Ann from Acme. Do you have a minute?",
    "user: Honestly it is too expensive for us.",
    "assistant: Most clients pay it back in three months; I can show you the numbers.",
    "user: Fine, book it.",
];

/// What `--set` would say: every `base_url` (the processors' and the
/// sections') at `url`, Redis from `TEST_REDIS`.
fn overrides(text: &str, url: &str) -> Vec<Override> {
    let table: toml::Table = text.parse().unwrap();
    let mut specs = vec!["context.url_env=TEST_REDIS".to_owned()];
    for (i, processor) in table["processor"].as_array().unwrap().iter().enumerate() {
        if processor.get("base_url").is_some() {
            specs.push(format!("processor.{i}.base_url={url}"));
        }
    }
    for section in ["context.skills", "evaluator", "learning", "optimiser"] {
        specs.push(format!("{section}.base_url={url}"));
    }
    specs.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn the_shipped_sales_agent_checks() {
    let output = Command::new(env!("CARGO_BIN_EXE_voxpipe"))
        .args(["check", SALES])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn a_won_call_teaches_a_rebuttal_the_next_call_finds_with_search_context() {
    let redis = RedisServer::start();
    let openai = FakeOpenAi::judge().await;
    let text = std::fs::read_to_string(SALES).unwrap();
    let config = parse_pipeline_with_overrides(
        Path::new(SALES),
        &text,
        &overrides(&text, &openai.base_url),
        &registry(),
    )
    .unwrap();
    let env = EnvSource::Fixed(Arc::new(HashMap::from([
        ("TEST_REDIS".to_owned(), redis.url()),
        ("OPENAI_API_KEY".to_owned(), "sk-test".to_owned()),
    ])));
    let runtime = config.agent_runtime(&env).unwrap();
    let store = runtime.store().clone();

    // The won call: judged a success, then the learning model's pairs.
    openai.push_chats([
        verdict("success", 0.9, &["Offer a pilot"]),
        Reply::Completion(
            json!({"pairs": [{
                "objection": "It is too expensive for us",
                "rebuttal": "Show the payback in months",
                "target": "Turns price into return on investment",
            }]})
            .to_string(),
        ),
    ]);
    converse(&runtime, "won", "twilio", WON_CALL, "hangup").await;
    assert_eq!(runtime.worker("w1").unwrap().drain().await.unwrap(), 1);
    assert_eq!(redis.pending_jobs().await, 0);
    let call = store.call("won").await.unwrap().unwrap();
    assert_eq!(call.outcome, Some(Outcome::Success));
    assert!(
        matches!(call.learned, Some(Learned::Learned { .. })),
        "{:?}",
        call.learned
    );
    assert_eq!(store.test_cases().await.unwrap().len(), 1);

    // The next call: its LLM is built with the runtime's tools and finds
    // the learned rebuttal through search_context (after the library's
    // refresh, which `refresh_secs` runs on a live server).
    runtime.skills().unwrap().refresh().await.unwrap();
    let mut setup = config.session_setup("next");
    setup.env = env.clone();
    runtime.install_tools(&setup.resources);
    let llm = config
        .processors
        .iter()
        .position(|p| p.type_name == "llm")
        .unwrap();
    config.processors[llm].factory.build(&setup).unwrap();
    let tools = setup
        .resources
        .get::<ToolRegistry>(ToolRegistry::RESOURCE)
        .unwrap();
    let found = tools
        .get("search_context")
        .unwrap()
        .call(json!({"query": "that is too expensive"}))
        .await
        .unwrap();
    let found: Value = serde_json::from_str(&found.result).unwrap();
    assert_eq!(
        found["results"][0]["rebuttal"],
        "Show the payback in months"
    );
    let prompt = SessionPrompt::load(&*store, &call.segment, "Tactics:")
        .await
        .unwrap();
    assert!(
        prompt.render("Sell.").contains("- Offer a pilot"),
        "{prompt:?}"
    );
    let requests = openai.chat_requests();
    assert_eq!(requests.len(), 2, "the judge, then the learning model");
}
