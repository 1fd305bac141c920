//! Tool calling through the LLM service, against a fake OpenAI-compatible
//! server and its tool endpoints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::sync::Arc;

use serde_json::{Value, json};
use support::fake::openai::{
    FakeOpenAi, Part, Reply, finish_chunk, ollama_tool_chunk, text_answer, tool_chunk,
};
use support::session::{Live, build, error_frames, unique};
use tokio::sync::Notify;
use voxpipe::conversation::{Message, Role, ToolCall};
use voxpipe::frame::{Frame, FrameBody};
use voxpipe::services::llm::{OpenAiLlmConfig, TOOL_CANCELLED};
use voxpipe::testing::run_test;

fn llm(server: &FakeOpenAi, extra: &str) -> voxpipe::pipeline::NamedProcessor {
    let tool = |name: &str, more: &str| {
        format!(
            "[[http_tools]]\nname = \"{name}\"\ndescription = \"{name}\"\nurl = \"{}\"\n\
             parameters = {{ type = \"object\", properties = {{ city = {{ type = \"string\" }}, tz = {{ type = \"string\" }} }} }}\n{more}\n",
            server.tool_url(name)
        )
    };
    build::<OpenAiLlmConfig>(
        "llm",
        &format!(
            "base_url = \"{}\"\nmodel = \"m\"\ntools = [\"end_call\"]\n{extra}\n{}{}{}",
            server.base_url,
            tool("weather", ""),
            tool("time", ""),
            tool("book", "cancel_on_interruption = false"),
        ),
        &[],
    )
}

fn tool_calls_done(parts: Vec<Part>) -> Reply {
    let mut parts = parts;
    parts.push(Part::Data(finish_chunk("tool_calls")));
    parts.push(Part::Data("[DONE]".into()));
    Reply::Sse(parts)
}

fn user(text: &str) -> FrameBody {
    FrameBody::LlmMessages(Arc::new(vec![Message::text(Role::User, text)]))
}

fn calls(frames: &[Frame]) -> Vec<ToolCall> {
    frames
        .iter()
        .filter_map(|f| match &f.body {
            FrameBody::FunctionCallInProgress(call) => Some(call.clone()),
            _ => None,
        })
        .collect()
}

fn results(frames: &[Frame]) -> Vec<(String, String)> {
    frames
        .iter()
        .filter_map(|f| match &f.body {
            FrameBody::FunctionCallResult { call, result } => {
                Some((call.id.clone(), result.clone()))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn several_calls_in_one_response_are_assembled_by_index_and_answered_in_order() {
    let server = FakeOpenAi::start().await;
    server.push_chat(tool_calls_done(vec![
        Part::Data(tool_chunk(0, Some("call_a"), Some("weather"), "")),
        Part::Data(tool_chunk(1, Some("call_b"), Some("time"), "")),
        Part::Data(tool_chunk(0, None, None, "{\"city\"")),
        Part::Data(tool_chunk(1, None, None, "{\"tz\": \"UTC\"}")),
        Part::Data(tool_chunk(0, None, None, ": \"Oslo\"}")),
    ]));
    server.push_chat(Reply::Sse(text_answer("Cold, and it is noon.")));
    let out = run_test(vec![llm(&server, "")], vec![user("Weather and time?")]).await;

    let made = calls(&out.downstream);
    assert_eq!(
        made.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["weather", "time"]
    );
    assert_eq!(made[0].arguments, "{\"city\": \"Oslo\"}");
    let mut bodies: Vec<Value> = server
        .received("/tools/")
        .iter()
        .map(|r| r.json())
        .collect();
    bodies.sort_by_key(|b| b.to_string());
    assert_eq!(bodies, [json!({"city": "Oslo"}), json!({"tz": "UTC"})]);
    assert_eq!(results(&out.downstream).len(), 2);

    let second = server.received("chat/completions")[1].json();
    let messages = second["messages"].as_array().unwrap();
    assert_eq!(messages[1]["tool_calls"].as_array().unwrap().len(), 2);
    assert_eq!(messages[2]["tool_call_id"], json!("call_a"));
    assert_eq!(messages[3]["tool_call_id"], json!("call_b"));
    assert_eq!(messages[2]["content"], json!("{\"ok\":true}"));
    assert!(error_frames(&out.upstream).is_empty());
}

#[tokio::test]
async fn parallel_calls_sharing_an_index_stay_apart_by_their_ids() {
    // Ollama: every call whole in a chunk of its own, all with index 0.
    let server = FakeOpenAi::start().await;
    server.push_chat(tool_calls_done(vec![
        Part::Data(ollama_tool_chunk(0, "call_a", "weather", r#"{"city":"A"}"#)),
        Part::Data(ollama_tool_chunk(0, "call_b", "weather", r#"{"city":"B"}"#)),
    ]));
    server.push_chat(Reply::Sse(text_answer("Both mild.")));
    let out = run_test(vec![llm(&server, "")], vec![user("Weather in A and B?")]).await;

    let made: Vec<(String, String)> = calls(&out.downstream)
        .into_iter()
        .map(|c| (c.name, c.arguments))
        .collect();
    assert_eq!(
        made,
        [
            ("weather".to_owned(), r#"{"city":"A"}"#.to_owned()),
            ("weather".to_owned(), r#"{"city":"B"}"#.to_owned()),
        ]
    );
    let mut bodies: Vec<String> = server
        .received("/tools/")
        .iter()
        .map(|r| r.json().to_string())
        .collect();
    bodies.sort();
    assert_eq!(bodies, [r#"{"city":"A"}"#, r#"{"city":"B"}"#]);
    let second = server.received("chat/completions")[1].json();
    let ids: Vec<&Value> = second["messages"][1]["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["id"])
        .collect();
    assert_eq!(ids, [&json!("call_a"), &json!("call_b")]);
    assert!(error_frames(&out.upstream).is_empty());
}

#[tokio::test]
async fn bad_arguments_and_unknown_tools_are_answered_with_an_error_and_never_run() {
    let server = FakeOpenAi::start().await;
    server.push_chat(tool_calls_done(vec![
        Part::Data(tool_chunk(0, Some("c0"), Some("weather"), "{\"city\": 3}")),
        Part::Data(tool_chunk(1, Some("c1"), Some("weather"), "{\"city\": ")),
        Part::Data(tool_chunk(2, Some("c2"), Some("teleport"), "{}")),
    ]));
    server.push_chat(Reply::Sse(text_answer("Sorry.")));
    let out = run_test(vec![llm(&server, "")], vec![user("?")]).await;
    assert!(server.received("/tools/").is_empty(), "no tool ran");
    let answers: Vec<Value> = results(&out.downstream)
        .into_iter()
        .map(|(_, r)| serde_json::from_str(&r).unwrap())
        .collect();
    assert_eq!(
        answers[0],
        json!({"error": "the arguments do not match the tool's schema: /city: 3 is not of type \"string\""})
    );
    let told = answers[1]["error"].as_str().unwrap();
    assert!(
        told.starts_with("the arguments are not valid JSON")
            && told.ends_with("the arguments written were: {\"city\": "),
        "{told}"
    );
    assert_eq!(
        answers[2],
        json!({"error": "there is no tool named `teleport`"})
    );

    // The next request's history replays every call with arguments that
    // are JSON (vLLM and LiteLLM parse them, and refuse the request if
    // not); what was written is only in the tool's error result.
    let second = server.received("chat/completions")[1].json();
    let replayed = second["messages"][1]["tool_calls"].as_array().unwrap();
    assert_eq!(replayed.len(), 3);
    for call in replayed {
        let arguments = call["function"]["arguments"].as_str().unwrap();
        assert!(
            serde_json::from_str::<Value>(arguments).is_ok_and(|v| v.is_object()),
            "{call}"
        );
    }
    assert_eq!(replayed[1]["function"]["arguments"], json!("{}"));
    let frames = calls(&out.downstream);
    assert_eq!(
        frames[1].arguments, "{}",
        "the frame the history is made from"
    );
}

#[tokio::test]
async fn a_slow_tool_times_out_and_the_model_is_told() {
    let server = FakeOpenAi::start().await;
    server.push_chat(tool_calls_done(vec![Part::Data(tool_chunk(
        0,
        Some("c"),
        Some("weather"),
        "{}",
    ))]));
    server.push_tool(Reply::Pcm(vec![Part::Stall]));
    server.push_chat(Reply::Sse(text_answer("The weather service is slow.")));
    let out = run_test(
        vec![llm(&server, "tool_timeout_secs = 0.2")],
        vec![user("?")],
    )
    .await;
    let (_, result) = &results(&out.downstream)[0];
    assert_eq!(
        result,
        "{\"error\":\"the tool gave no result within 200ms\"}"
    );
    assert_eq!(server.received("chat/completions").len(), 2);
}

#[tokio::test]
async fn the_round_after_the_cap_must_answer_in_text() {
    let server = FakeOpenAi::start().await;
    let call = || {
        tool_calls_done(vec![Part::Data(tool_chunk(
            0,
            Some("c"),
            Some("weather"),
            "{}",
        ))])
    };
    server.push_chat(call());
    // The capped round still asks for a tool: it is ignored.
    server.push_chat(call());
    let out = run_test(vec![llm(&server, "max_tool_rounds = 1")], vec![user("?")]).await;
    let chats = server.received("chat/completions");
    assert_eq!(chats.len(), 2);
    assert_eq!(chats[0].json()["tool_choice"], json!("auto"));
    assert_eq!(chats[1].json()["tool_choice"], json!("none"));
    assert_eq!(server.received("/tools/").len(), 1);
    assert_eq!(calls(&out.downstream).len(), 1);
}

#[tokio::test]
async fn end_call_ends_the_session_after_the_goodbye() {
    let server = FakeOpenAi::start().await;
    server.push_chat(tool_calls_done(vec![Part::Data(tool_chunk(
        0,
        Some("c"),
        Some("end_call"),
        "{\"reason\": \"done\"}",
    ))]));
    server.push_chat(Reply::Sse(text_answer("Goodbye!")));
    let out = run_test(vec![llm(&server, "")], vec![user("That's all, bye.")]).await;
    let chats = server.received("chat/completions");
    assert_eq!(
        chats[1].json()["tool_choice"],
        json!("none"),
        "the goodbye is asked for in text"
    );
    let names: Vec<&str> = out
        .downstream
        .iter()
        .map(Frame::name)
        .filter(|n| *n != "Metrics")
        .collect();
    assert_eq!(
        names,
        [
            "Start",
            "LlmResponseStart",
            "FunctionCallInProgress",
            "FunctionCallResult",
            "LlmText",
            "LlmResponseEnd",
            "End"
        ]
    );
    let end_requests: Vec<&str> = out
        .upstream
        .iter()
        .filter_map(|f| match &f.body {
            FrameBody::EndRequest { reason } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(end_requests, ["end_call"]);

    // Said together with the call: no second request.
    server.push_chat(tool_calls_done(vec![
        Part::Data(support::fake::openai::text_chunk("Bye now.")),
        Part::Data(tool_chunk(0, Some("c"), Some("end_call"), "{}")),
    ]));
    let out = run_test(vec![llm(&server, "")], vec![user("Bye.")]).await;
    assert_eq!(server.received("chat/completions").len(), 3);
    assert!(
        out.upstream
            .iter()
            .any(|f| matches!(&f.body, FrameBody::EndRequest { reason } if reason == "end_call"))
    );
}

#[tokio::test]
async fn an_interruption_cancels_a_cancellable_tool_and_records_it() {
    let server = FakeOpenAi::start().await;
    server.push_chat(tool_calls_done(vec![Part::Data(tool_chunk(
        0,
        Some("slow"),
        Some("weather"),
        "{}",
    ))]));
    server.push_tool(Reply::Pcm(vec![Part::Stall]));
    let live = Live::start(vec![llm(&server, "tool_timeout_secs = 60")]);
    live.handle.queue_frame(user("?")).await;
    live.wait_for("the tool call", |b| {
        matches!(b, FrameBody::FunctionCallInProgress(_))
    })
    .await;
    live.handle.queue_frame(FrameBody::Interruption).await;
    live.wait_for("a result", |b| {
        matches!(b, FrameBody::FunctionCallResult { .. })
    })
    .await;
    let frames = unique(&live.finish().await);
    assert_eq!(
        results(&frames),
        [("slow".to_owned(), TOOL_CANCELLED.to_owned())]
    );
    assert_eq!(
        server.received("chat/completions").len(),
        1,
        "the response was abandoned"
    );
}

#[tokio::test]
async fn a_tool_marked_not_cancellable_finishes_and_is_recorded_after_an_interruption() {
    let server = FakeOpenAi::start().await;
    let release = Arc::new(Notify::new());
    server.push_chat(tool_calls_done(vec![Part::Data(tool_chunk(
        0,
        Some("booking"),
        Some("book"),
        "{}",
    ))]));
    server.push_tool(Reply::Pcm(vec![
        Part::WaitFor(Arc::clone(&release), "release"),
        Part::Raw(b"{\"booked\": true}".to_vec()),
    ]));
    let live = Live::start(vec![llm(&server, "tool_timeout_secs = 60")]);
    live.handle.queue_frame(user("Book it.")).await;
    live.wait_for("the tool call", |b| {
        matches!(b, FrameBody::FunctionCallInProgress(_))
    })
    .await;
    live.handle.queue_frame(FrameBody::Interruption).await;
    live.wait_for("the interruption", |b| matches!(b, FrameBody::Interruption))
        .await;
    release.notify_one();
    live.wait_for("the result", |b| {
        matches!(b, FrameBody::FunctionCallResult { .. })
    })
    .await;
    let frames = unique(&live.finish().await);
    assert_eq!(
        results(&frames),
        [("booking".to_owned(), "{\"booked\": true}".to_owned())]
    );
    let interruption = frames
        .iter()
        .position(|f| matches!(f.body, FrameBody::Interruption))
        .unwrap();
    let result = frames
        .iter()
        .position(|f| matches!(f.body, FrameBody::FunctionCallResult { .. }))
        .unwrap();
    assert!(interruption < result);
    assert_eq!(server.received("chat/completions").len(), 1);
}

/// Two contexts in a row, the first answer still streaming when the second
/// comes: the server, and the response frames the LLM pushed, in order.
async fn two_contexts(allow_interruptions: bool) -> (FakeOpenAi, Vec<&'static str>) {
    let server = FakeOpenAi::start().await;
    let hold = Arc::new(Notify::new());
    server.push_chat(Reply::Sse(vec![
        Part::Data(support::fake::openai::text_chunk("First answer,")),
        Part::WaitFor(Arc::clone(&hold), "release"),
        Part::Data(support::fake::openai::text_chunk(" finished.")),
        Part::Data(finish_chunk("stop")),
        Part::Data("[DONE]".into()),
    ]));
    server.push_chat(Reply::Sse(text_answer("Second answer.")));
    let live = Live::start_with(vec![llm(&server, "")], |params| {
        params.allow_interruptions = allow_interruptions;
    });
    live.handle.queue_frame(user("One?")).await;
    live.wait_for("the first text", |b| matches!(b, FrameBody::LlmText(_)))
        .await;
    live.handle.queue_frame(user("Two?")).await;
    if allow_interruptions {
        live.wait_until("the second answer", |pushes| {
            pushes
                .iter()
                .filter(|(_, _, f)| matches!(f.body, FrameBody::LlmResponseStart))
                .count()
                == 2
        })
        .await;
    }
    hold.notify_one();
    let names = unique(&live.finish().await)
        .iter()
        .map(Frame::name)
        .filter(|n| matches!(*n, "LlmResponseStart" | "LlmText" | "LlmResponseEnd"))
        .collect();
    (server, names)
}

#[tokio::test]
async fn a_new_context_replaces_the_answer_in_flight() {
    let (_server, names) = two_contexts(true).await;
    assert_eq!(
        names,
        [
            "LlmResponseStart",
            "LlmText",
            "LlmResponseEnd",
            "LlmResponseStart",
            "LlmText",
            "LlmText",
            "LlmResponseEnd"
        ],
        "the first answer ends where it was"
    );
}

#[tokio::test]
async fn without_interruptions_the_answer_in_flight_finishes_first() {
    let (server, names) = two_contexts(false).await;
    assert_eq!(
        names,
        [
            "LlmResponseStart",
            "LlmText",
            "LlmText",
            "LlmResponseEnd",
            "LlmResponseStart",
            "LlmText",
            "LlmText",
            "LlmResponseEnd"
        ]
    );
    assert_eq!(server.received("chat/completions").len(), 2);
}
