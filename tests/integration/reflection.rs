//! Reflection: a reviewer reads each draft answer with the conversation
//! and the tool results before any of it is pushed. A draft contradicting
//! a tool result is rejected and the second draft goes out; a reviewer
//! that never approves lets the last draft out after `max_rounds`, marked
//! on the turn and in the `answer_reviewed` event; a reviewer that cannot
//! be asked lets the draft out unapproved. Against the fake
//! OpenAI-compatible server, over the committed catalogue CSV.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::sync::Arc;

use serde_json::{Value, json};
use support::fake::openai::{FakeOpenAi, Part, Reply, finish_chunk, text_answer, tool_chunk};
use support::session::{build, texts};
use voxpipe::conversation::{Message, Reflection, Role, Turn};
use voxpipe::frame::{Frame, FrameBody};
use voxpipe::processors::AssistantContextConfig;
use voxpipe::services::llm::OpenAiLlmConfig;
use voxpipe::testing::{TestOutput, run_test};

fn pipeline(openai: &FakeOpenAi, max_rounds: u32) -> Vec<voxpipe::pipeline::NamedProcessor> {
    pipeline_with(openai, max_rounds, "", "")
}

/// The pipeline, with `tools` (TOML tables) after the CSV tool and
/// `reviewer` (keys) in `[reflection]`.
fn pipeline_with(
    openai: &FakeOpenAi,
    max_rounds: u32,
    tools: &str,
    reviewer: &str,
) -> Vec<voxpipe::pipeline::NamedProcessor> {
    let llm = build::<OpenAiLlmConfig>(
        "llm",
        &format!(
            r#"
base_url = "{}"
model = "agent-model"
system_prompt = "You sell home goods."

[[csv_tools]]
name = "search_catalogue"
description = "Products."
path = "assets/specialists/catalogue.csv"
{tools}
[reflection]
model = "reviewer-model"
max_rounds = {max_rounds}
{reviewer}
"#,
            openai.base_url
        ),
        &[],
    );
    let assistant = build::<AssistantContextConfig>("assistant_context", "", &[]);
    vec![llm, assistant]
}

fn look_up_toaster() -> Reply {
    Reply::Sse(vec![
        Part::Data(tool_chunk(0, Some("call_1"), Some("search_catalogue"), "")),
        Part::Data(tool_chunk(0, None, None, r#"{"query": "toaster 2-slot"}"#)),
        Part::Data(finish_chunk("tool_calls")),
        Part::Data("[DONE]".into()),
    ])
}

fn verdict(approved: bool, critique: &str) -> Reply {
    Reply::Sse(text_answer(
        &json!({"approved": approved, "critique": critique}).to_string(),
    ))
}

async fn ask(openai: &FakeOpenAi, max_rounds: u32) -> TestOutput {
    ask_with(pipeline(openai, max_rounds)).await
}

async fn ask_with(pipeline: Vec<voxpipe::pipeline::NamedProcessor>) -> TestOutput {
    run_test(
        pipeline,
        vec![FrameBody::LlmMessages(Arc::new(vec![Message::text(
            Role::User,
            "How much is the two-slot toaster?",
        )]))],
    )
    .await
}

fn answer_turn(frames: &[Frame]) -> Arc<Turn> {
    frames
        .iter()
        .filter_map(|f| match &f.body {
            FrameBody::TurnCompleted(turn) if turn.role == Role::Assistant => {
                Some(Arc::clone(turn))
            }
            _ => None,
        })
        .next_back()
        .unwrap()
}

fn reviews(frames: &[Frame]) -> Vec<Reflection> {
    frames
        .iter()
        .filter_map(|f| match &f.body {
            FrameBody::AnswerReviewed(review) => Some(*review),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_draft_contradicting_the_tool_result_is_rejected_and_the_second_goes_out() {
    let openai = FakeOpenAi::start().await;
    openai.push_chats_for(
        "agent-model",
        [
            look_up_toaster(),
            Reply::Sse(text_answer("The two-slot toaster costs 19 euros.")),
            Reply::Sse(text_answer(
                "The two-slot toaster costs 24.50 euros, and 31 are in stock.",
            )),
        ],
    );
    openai.push_chats_for(
        "reviewer-model",
        [
            verdict(false, "The catalogue says 24.50 euros, not 19."),
            verdict(true, ""),
        ],
    );
    let out = ask(&openai, 2).await;

    // Only the approved draft was ever pushed: nothing of the first reached
    // the TTS or the client.
    assert_eq!(
        texts(&out.downstream),
        ["The two-slot toaster costs 24.50 euros, and 31 are in stock."]
    );
    assert_eq!(
        reviews(&out.downstream),
        [Reflection {
            rounds: 2,
            approved: true
        }]
    );
    let names = out.downstream_names();
    let reviewed = names.iter().position(|n| *n == "AnswerReviewed").unwrap();
    let text = names.iter().position(|n| *n == "LlmText").unwrap();
    assert!(reviewed < text, "{names:?}");
    let turn = answer_turn(&out.downstream);
    assert_eq!(
        turn.text,
        "The two-slot toaster costs 24.50 euros, and 31 are in stock."
    );
    assert_eq!(
        turn.reflection,
        Some(Reflection {
            rounds: 2,
            approved: true
        })
    );
    assert_eq!(turn.tool_calls.len(), 1);

    let chats = openai.chat_requests();
    let models: Vec<&str> = chats.iter().map(|c| c["model"].as_str().unwrap()).collect();
    assert_eq!(
        models,
        [
            "agent-model",
            "agent-model",
            "reviewer-model",
            "agent-model",
            "reviewer-model"
        ]
    );
    // The first review read the tool's result and the draft, in strict JSON.
    let review = &chats[2];
    assert_eq!(review["response_format"]["json_schema"]["name"], "review");
    assert!(review["tools"].is_null());
    let shown = review["messages"][1]["content"].as_str().unwrap();
    assert!(shown.contains("\"price_eur\":\"24.50\""), "{shown}");
    assert!(
        shown.ends_with("The two-slot toaster costs 19 euros."),
        "{shown}"
    );
    // The second draft was asked with the rejected draft and the critique.
    let again = chats[3]["messages"].as_array().unwrap();
    let n = again.len();
    assert_eq!(
        again[n - 2],
        json!({"role": "assistant", "content": "The two-slot toaster costs 19 euros."})
    );
    assert_eq!(again[n - 1]["role"], "system");
    assert!(
        again[n - 1]["content"]
            .as_str()
            .unwrap()
            .contains("The catalogue says 24.50 euros, not 19.")
    );
    assert_eq!(again[0]["content"], "You sell home goods.");
}

#[tokio::test]
async fn a_reviewer_that_never_approves_lets_the_last_draft_out_marked() {
    let openai = FakeOpenAi::start().await;
    openai.push_chats_for(
        "agent-model",
        [
            Reply::Sse(text_answer("First draft.")),
            Reply::Sse(text_answer("Second draft.")),
        ],
    );
    openai.chat_fallback_for("reviewer-model", verdict(false, "Still wrong."));
    let out = ask(&openai, 2).await;
    assert_eq!(texts(&out.downstream), ["Second draft."]);
    let marked = Reflection {
        rounds: 2,
        approved: false,
    };
    assert_eq!(reviews(&out.downstream), [marked]);
    assert_eq!(answer_turn(&out.downstream).reflection, Some(marked));
    let event = out
        .downstream
        .iter()
        .find_map(|f| voxpipe::events::event_of(&f.body).filter(|(n, _)| *n == "answer_reviewed"))
        .unwrap();
    assert_eq!(event.1, json!({"rounds": 2, "approved": false}));
    // Two drafts, two reviews: no third draft nobody would review.
    assert_eq!(openai.chat_requests().len(), 4);
}

#[tokio::test]
async fn a_reviewer_that_cannot_be_asked_or_talks_nonsense_lets_the_draft_out_unapproved() {
    for reviewer in [
        Reply::error(404, "no such model", "invalid_request_error"),
        Reply::Sse(text_answer("Looks fine to me!")),
    ] {
        let openai = FakeOpenAi::start().await;
        openai.push_chats_for("agent-model", [Reply::Sse(text_answer("The only draft."))]);
        openai.push_chats_for("reviewer-model", [reviewer]);
        let out = ask(&openai, 3).await;
        assert_eq!(texts(&out.downstream), ["The only draft."]);
        let marked = Reflection {
            rounds: 1,
            approved: false,
        };
        assert_eq!(answer_turn(&out.downstream).reflection, Some(marked));
        let models: Vec<Value> = openai
            .chat_requests()
            .iter()
            .map(|c| c["model"].clone())
            .collect();
        assert_eq!(models, ["agent-model", "reviewer-model"]);
    }
}

#[tokio::test]
async fn a_reviewer_thinking_past_the_side_limit_lets_the_draft_out_unapproved() {
    let openai = FakeOpenAi::start().await;
    openai.push_chats_for("agent-model", [Reply::Sse(text_answer("The only draft."))]);
    // Keep-alive comments every 2 s, as a reasoning model thinking: each
    // gap within the read timeout, the whole far past the side limit.
    let mut thinking = Vec::new();
    for _ in 0..30 {
        thinking.push(Part::Raw(b": thinking\n\n".to_vec()));
        thinking.push(Part::Pause(std::time::Duration::from_secs(2)));
    }
    thinking.push(Part::Stall);
    openai.push_chats_for("reviewer-model", [Reply::Sse(thinking)]);
    let started = std::time::Instant::now();
    let out = ask(&openai, 3).await;
    let took = started.elapsed();
    assert_eq!(texts(&out.downstream), ["The only draft."]);
    assert!(
        took < std::time::Duration::from_secs(15),
        "waited {took:?} for the reviewer"
    );
    let unreviewed = Reflection {
        rounds: 1,
        approved: false,
    };
    assert_eq!(answer_turn(&out.downstream).reflection, Some(unreviewed));
}

#[tokio::test]
async fn a_rewrite_that_fails_or_is_empty_lets_the_rejected_draft_out_unapproved() {
    for rewrite in [
        Reply::error(400, "context too long", "invalid_request_error"),
        Reply::Sse(text_answer("")),
    ] {
        let openai = FakeOpenAi::start().await;
        openai.push_chats_for(
            "agent-model",
            [Reply::Sse(text_answer("The usable draft.")), rewrite],
        );
        openai.push_chats_for("reviewer-model", [verdict(false, "Say it better.")]);
        let out = ask(&openai, 3).await;
        assert_eq!(texts(&out.downstream), ["The usable draft."]);
        let marked = Reflection {
            rounds: 1,
            approved: false,
        };
        assert_eq!(reviews(&out.downstream), [marked]);
        assert_eq!(answer_turn(&out.downstream).reflection, Some(marked));
    }
}

#[tokio::test]
async fn the_reviewer_never_reads_a_rejected_draft_as_said_to_the_user() {
    let openai = FakeOpenAi::start().await;
    openai.push_chats_for(
        "agent-model",
        [
            Reply::Sse(text_answer("First draft.")),
            Reply::Sse(text_answer("Second draft.")),
        ],
    );
    openai.push_chats_for(
        "reviewer-model",
        [verdict(false, "Still wrong."), verdict(true, "")],
    );
    let out = ask(&openai, 2).await;
    assert_eq!(texts(&out.downstream), ["Second draft."]);
    let chats = openai.chat_requests();
    let second_review = chats[3]["messages"][1]["content"].as_str().unwrap();
    assert!(!second_review.contains("First draft."), "{second_review}");
    assert!(second_review.ends_with("Second draft."), "{second_review}");
}

/// A booking tool with side effects (not `safe_to_run_early`), served by
/// the fake.
fn booking_tool(openai: &FakeOpenAi) -> String {
    format!(
        "[[http_tools]]\nname = \"book\"\ndescription = \"Reserves a product.\"\nurl = \"{}\"\n\
         parameters = {{ type = \"object\", properties = {{ product = {{ type = \"string\" }} }} }}\n",
        openai.tool_url("book")
    )
}

fn book_toaster(id: &str) -> Reply {
    Reply::Sse(vec![
        Part::Data(tool_chunk(0, Some(id), Some("book"), "")),
        Part::Data(tool_chunk(
            0,
            None,
            None,
            r#"{"product": "toaster 2-slot"}"#,
        )),
        Part::Data(finish_chunk("tool_calls")),
        Part::Data("[DONE]".into()),
    ])
}

#[tokio::test]
async fn a_rewrite_repeating_a_booking_reads_its_recorded_result_and_books_once() {
    let openai = FakeOpenAi::start().await;
    openai.push_tool(Reply::Json(json!({"reservation": "R-77"})));
    openai.push_chats_for(
        "agent-model",
        [
            book_toaster("call_1"),
            Reply::Sse(text_answer("Your toaster is reserved.")),
            // The rewrite asks for the same booking again.
            book_toaster("call_2"),
            Reply::Sse(text_answer("Your toaster is reserved: R-77.")),
        ],
    );
    openai.push_chats_for(
        "reviewer-model",
        [
            verdict(false, "Give the reservation number."),
            verdict(true, ""),
        ],
    );
    let out = ask_with(pipeline_with(&openai, 2, &booking_tool(&openai), "")).await;

    assert_eq!(texts(&out.downstream), ["Your toaster is reserved: R-77."]);
    assert_eq!(openai.received("/tools/book").len(), 1, "booked twice");
    let chats = openai.chat_requests();
    assert_eq!(chats.len(), 6, "{chats:#?}");
    // The rewrite is offered the lookup, not the booking.
    let offered: Vec<&str> = chats[3]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(offered, ["search_catalogue"]);
    // Its repeated call is answered with the booking's recorded result.
    let after_repeat = chats[4]["messages"].as_array().unwrap();
    let last = &after_repeat[after_repeat.len() - 1];
    assert_eq!(last["role"], "tool");
    assert_eq!(last["tool_call_id"], "call_2");
    let content: Value = serde_json::from_str(last["content"].as_str().unwrap()).unwrap();
    assert_eq!(
        content,
        json!({
            "not_run_again": true,
            "result_of_the_earlier_identical_call": {"reservation": "R-77"},
        })
    );
}

#[tokio::test]
async fn a_rewrite_never_runs_a_tool_with_side_effects_it_was_not_offered() {
    let openai = FakeOpenAi::start().await;
    openai.push_chats_for(
        "agent-model",
        [
            Reply::Sse(text_answer("I can reserve it for you.")),
            book_toaster("call_1"),
            Reply::Sse(text_answer("I have not reserved it yet.")),
        ],
    );
    openai.push_chats_for(
        "reviewer-model",
        [verdict(false, "Do not promise."), verdict(true, "")],
    );
    let out = ask_with(pipeline_with(&openai, 2, &booking_tool(&openai), "")).await;
    assert_eq!(texts(&out.downstream), ["I have not reserved it yet."]);
    assert!(openai.received("/tools/book").is_empty());
    let chats = openai.chat_requests();
    assert_eq!(chats.len(), 5, "{chats:#?}");
    // The rewrite's first request does not offer the booking ...
    assert_eq!(chats[2]["model"], "agent-model");
    assert!(
        !offered(&chats[2]).contains(&"book".to_owned()),
        "{}",
        chats[2]["tools"]
    );
    // ... and its second carries the answer to the call it made anyway.
    assert_eq!(chats[3]["model"], "agent-model");
    let after_call = chats[3]["messages"].as_array().unwrap();
    let answer = &after_call[after_call.len() - 1];
    assert_eq!(answer["role"], "tool");
    assert_eq!(answer["tool_call_id"], "call_1");
    let refused = answer["content"].as_str().unwrap();
    assert!(refused.contains("not run"), "{refused}");
    assert!(
        refused.contains("`book` is not offered to a corrected answer"),
        "{refused}"
    );
}

/// The names of the tools a chat request offers.
fn offered(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["function"]["name"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_rewrite_offered_no_tool_still_lists_them_when_its_history_holds_calls() {
    let openai = FakeOpenAi::start().await;
    openai.push_tool(Reply::Json(json!({"reservation": "R-77"})));
    openai.push_chats_for(
        "agent-model",
        [
            book_toaster("call_1"),
            Reply::Sse(text_answer("Done.")),
            Reply::Sse(text_answer("Your toaster is reserved: R-77.")),
        ],
    );
    openai.push_chats_for(
        "reviewer-model",
        [verdict(false, "Give the number."), verdict(true, "")],
    );
    // Only the booking: a rewrite is offered nothing.
    let llm = build::<OpenAiLlmConfig>(
        "llm",
        &format!(
            "base_url = \"{}\"\nmodel = \"agent-model\"\n{}\n[reflection]\nmodel = \"reviewer-model\"\n",
            openai.base_url,
            booking_tool(&openai)
        ),
        &[],
    );
    let assistant = build::<AssistantContextConfig>("assistant_context", "", &[]);
    let out = ask_with(vec![llm, assistant]).await;
    assert_eq!(texts(&out.downstream), ["Your toaster is reserved: R-77."]);
    let chats = openai.chat_requests();
    assert_eq!(chats.len(), 5, "{chats:#?}");
    // The rewrite's history holds the booking's call: servers that check it
    // against the tools (LiteLLM before Anthropic) need them listed, and
    // `tool_choice: "none"` keeps the rewrite from calling them.
    assert_eq!(chats[3]["model"], "agent-model");
    assert_eq!(offered(&chats[3]), ["book"], "{}", chats[3]);
    assert_eq!(chats[3]["tool_choice"], "none");
    assert_eq!(openai.received("/tools/book").len(), 1);
}

#[tokio::test]
async fn the_reviewers_requests_carry_its_token_cap() {
    let openai = FakeOpenAi::start().await;
    openai.push_chats_for("agent-model", [Reply::Sse(text_answer("The only draft."))]);
    openai.push_chats_for("reviewer-model", [verdict(true, "")]);
    let out = ask_with(pipeline_with(&openai, 2, "", "max_tokens = 300")).await;
    assert_eq!(texts(&out.downstream), ["The only draft."]);
    let chats = openai.chat_requests();
    assert_eq!(chats[1]["model"], "reviewer-model");
    assert_eq!(chats[1]["max_tokens"], 300);
    // The answer itself is not capped by the reviewer's key.
    assert!(chats[0].get("max_tokens").is_none(), "{}", chats[0]);
}
