//! A side model (the router's classifier, the reviewer) refused a field
//! once is not sent it again: the session's next turn asks once, without
//! the refused temperature and token cap.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::router_agents::{asked, router_llm_with};
use crate::support;

use serde_json::Value;
use support::fake::openai::{FakeOpenAi, Reply, text_answer};
use support::session::{Live, Pushes};
use voxpipe::frame::FrameBody;

#[tokio::test]
async fn a_refused_token_cap_and_temperature_are_not_sent_again_on_the_next_turn() {
    let openai = FakeOpenAi::start().await;
    openai.refuse_temperature();
    openai.push_chats_for(
        "router-model",
        [
            Reply::Sse(text_answer(r#"{"agent": "catalogue"}"#)),
            Reply::Sse(text_answer(r#"{"agent": "catalogue"}"#)),
        ],
    );
    openai.chat_fallback(Reply::Sse(text_answer("Here you are.")));
    let live = Live::start(vec![router_llm_with(&openai, "max_tokens = 64")]);
    let ended = |n: usize| {
        move |pushes: &Pushes| {
            pushes
                .iter()
                .filter(|(from, _, f)| {
                    from == "llm" && matches!(f.body, FrameBody::LlmResponseEnd { .. })
                })
                .count()
                >= n
        }
    };
    live.handle.queue_frame(asked("Do you sell kettles?")).await;
    live.wait_until("the first answer", ended(1)).await;
    let first_turn = openai.chat_requests().len();
    live.handle.queue_frame(asked("And toasters?")).await;
    live.wait_until("the second answer", ended(2)).await;
    live.finish().await;
    let routing: Vec<Value> = openai
        .chat_requests()
        .into_iter()
        .filter(|c| c["model"] == "router-model")
        .collect();
    // The first turn pays the refusals (temperature, then the cap) ...
    assert_eq!(routing.len(), 4, "{routing:#?}");
    assert!(first_turn >= 3);
    // ... the second asks once, without either.
    assert!(routing[3].get("temperature").is_none(), "{}", routing[3]);
    assert!(routing[3].get("max_tokens").is_none(), "{}", routing[3]);
    assert_eq!(routing[3]["response_format"]["type"], "json_schema");
}
