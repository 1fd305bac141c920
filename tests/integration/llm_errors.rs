//! The LLM client's error paths against a fake OpenAI-compatible server:
//! refused keys, rate limits, server errors before and after output,
//! malformed events, dropped connections and timeouts (in-stream refusals:
//! `llm_stream_refusals`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use support::fake::openai::{
    FakeOpenAi, Part, Reply, finish_chunk, role_chunk, text_answer, text_chunk,
};
use support::session::{build, error_frames, texts};
use voxpipe::conversation::{Message, Role};
use voxpipe::frame::FrameBody;
use voxpipe::services::llm::OpenAiLlmConfig;
use voxpipe::testing::{TestOutput, run_test};

const KEY: [(&str, &str); 1] = [("OPENAI_API_KEY", "sk-test")];

fn llm(server: &FakeOpenAi, extra: &str) -> voxpipe::pipeline::NamedProcessor {
    build::<OpenAiLlmConfig>(
        "llm",
        &format!(
            "base_url = \"{}\"\nmodel = \"m\"\napi_key_env = \"OPENAI_API_KEY\"\n{extra}",
            server.base_url
        ),
        &KEY,
    )
}

pub(crate) async fn ask(server: &FakeOpenAi, extra: &str) -> TestOutput {
    let messages = Arc::new(vec![Message::text(Role::User, "Hi")]);
    run_test(
        vec![llm(server, extra)],
        vec![FrameBody::LlmMessages(messages)],
    )
    .await
}

/// Fast retries, so tests in real time do not wait.
pub(crate) const FAST_RETRY: &str =
    "connection = { retry_initial_secs = 0.001, retry_max_secs = 0.002 }";

#[tokio::test]
async fn a_refused_key_is_a_clear_fatal_error_and_is_not_retried() {
    let server = FakeOpenAi::start().await;
    server.push_chat(Reply::error(
        401,
        "Incorrect API key provided: sk-test. You can find your API key at https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
    ));
    let out = ask(&server, FAST_RETRY).await;
    assert_eq!(server.received("chat/completions").len(), 1, "no retry");
    let errors = error_frames(&out.upstream);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].provider.as_deref(), Some("openai"));
    assert_eq!(errors[0].status, Some(401));
    assert!(errors[0].fatal);
    assert!(
        errors[0]
            .message
            .starts_with("HTTP 401: Incorrect API key provided"),
        "{}",
        errors[0].message
    );
}

// Real time: the code waits the second the server asks for. (Paused time
// cannot be used while a loopback server streams: the clock would jump to
// the next timeout whenever the runtime waits on the socket.)
#[tokio::test]
async fn a_rate_limit_is_retried_after_the_time_the_server_asks() {
    let server = FakeOpenAi::start().await;
    server.push_chat(Reply::Status {
        status: 429,
        body: r#"{"error":{"message":"Rate limit reached for requests","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#.into(),
        headers: vec![("retry-after", "1".into())],
    });
    server.push_chat(Reply::Sse(text_answer("Hello there.")));
    let out = ask(&server, "").await;
    let requests = server.received("chat/completions");
    assert_eq!(requests.len(), 2);
    assert!(
        requests[1].at - requests[0].at >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert!(
        error_frames(&out.upstream).is_empty(),
        "{:?}",
        error_frames(&out.upstream)
    );
    assert_eq!(texts(&out.downstream).concat(), "Hello there.");
}

#[tokio::test]
async fn server_errors_before_any_output_are_retried_then_reported() {
    let server = FakeOpenAi::start().await;
    server.push_chat(Reply::error(500, "The server had an error", "server_error"));
    server.push_chat(Reply::error(503, "Overloaded", "server_error"));
    server.push_chat(Reply::Sse(text_answer("Fine.")));
    let out = ask(&server, FAST_RETRY).await;
    assert_eq!(server.received("chat/completions").len(), 3);
    assert_eq!(texts(&out.downstream).concat(), "Fine.");
    assert!(error_frames(&out.upstream).is_empty());

    // Out of retries: the last error is reported, the session goes on.
    for _ in 0..3 {
        server.push_chat(Reply::error(502, "Bad gateway", "server_error"));
    }
    let out = ask(&server, FAST_RETRY).await;
    let errors = error_frames(&out.upstream);
    assert_eq!(
        (errors.len(), errors[0].status, errors[0].fatal),
        (1, Some(502), false)
    );
    assert!(out.outcome.fatal_error.is_none());
}

fn names(out: &TestOutput) -> Vec<&'static str> {
    out.downstream
        .iter()
        .map(|f| f.name())
        .filter(|n| *n != "Metrics")
        .collect()
}

/// The `failed` flag of each `LlmResponseEnd` pushed downstream.
pub(crate) fn response_ends(out: &TestOutput) -> Vec<bool> {
    out.downstream
        .iter()
        .filter_map(|f| match f.body {
            FrameBody::LlmResponseEnd { failed } => Some(failed),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn an_error_mid_stream_is_reported_without_retrying_what_was_said() {
    let server = FakeOpenAi::start().await;
    server.push_chat(Reply::Sse(vec![
        Part::Data(text_chunk("Hello")),
        Part::Data(text_chunk(" there.")),
        Part::Data(r#"{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}"#.into()),
    ]));
    let out = ask(&server, FAST_RETRY).await;
    assert_eq!(
        server.received("chat/completions").len(),
        1,
        "never retried once text went out"
    );
    assert_eq!(texts(&out.downstream), ["Hello", " there."], "said once");
    assert_eq!(
        names(&out),
        [
            "Start",
            "LlmResponseStart",
            "LlmText",
            "LlmText",
            "LlmResponseEnd",
            "End"
        ]
    );
    let errors = error_frames(&out.upstream);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].message.starts_with("The server had an error"),
        "{}",
        errors[0].message
    );
    assert_eq!(errors[0].provider.as_deref(), Some("openai"));
    assert!(!errors[0].fatal);
    assert_eq!(response_ends(&out), [true], "the response says it failed");
}

#[tokio::test]
async fn a_connection_dropped_mid_response_is_reported_without_a_retry() {
    let server = FakeOpenAi::start().await;
    server.push_chat(Reply::Sse(vec![
        Part::Data(text_chunk("Half an")),
        Part::Abort,
    ]));
    let out = ask(&server, FAST_RETRY).await;
    assert_eq!(server.received("chat/completions").len(), 1);
    assert_eq!(texts(&out.downstream), ["Half an"]);
    let errors = error_frames(&out.upstream);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].message.starts_with("request failed"),
        "{}",
        errors[0].message
    );
    assert!(names(&out).contains(&"LlmResponseEnd"));

    // A stream that just stops, without [DONE] or a finish reason.
    server.push_chat(Reply::Sse(vec![Part::Data(text_chunk("Cut"))]));
    let out = ask(&server, FAST_RETRY).await;
    assert!(
        error_frames(&out.upstream)[0]
            .message
            .contains("without a finish reason or [DONE]")
    );
}

#[tokio::test]
async fn a_stream_failing_before_its_content_is_asked_again() {
    // An error event right after the 200, as OpenAI sends one.
    let server = FakeOpenAi::start().await;
    server.push_chat(Reply::Sse(vec![
        Part::Data(role_chunk()),
        Part::Data(r#"{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}"#.into()),
    ]));
    server.push_chat(Reply::Sse(text_answer("Fine.")));
    let out = ask(&server, FAST_RETRY).await;
    assert_eq!(server.received("chat/completions").len(), 2);
    assert_eq!(texts(&out.downstream).concat(), "Fine.");
    assert!(
        error_frames(&out.upstream).is_empty(),
        "{:?}",
        error_frames(&out.upstream)
    );
    assert_eq!(response_ends(&out), [false]);

    // A connection reset, then a stream that ends without a finish, before
    // any content.
    server.push_chat(Reply::Sse(vec![Part::Data(role_chunk()), Part::Abort]));
    server.push_chat(Reply::Sse(vec![Part::Data(role_chunk())]));
    server.push_chat(Reply::Sse(text_answer("Still fine.")));
    let out = ask(&server, FAST_RETRY).await;
    assert_eq!(server.received("chat/completions").len(), 5);
    assert_eq!(texts(&out.downstream).concat(), "Still fine.");
    assert!(error_frames(&out.upstream).is_empty());

    // Out of retries (two by default): the last error is reported.
    let failing = || {
        Reply::Sse(vec![Part::Data(
            r#"{"error":{"message":"Overloaded","type":"server_error","param":null,"code":null}}"#
                .into(),
        )])
    };
    server.push_chats([failing(), failing(), failing()]);
    let out = ask(&server, FAST_RETRY).await;
    assert_eq!(server.received("chat/completions").len(), 8);
    let errors = error_frames(&out.upstream);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].message, "Overloaded");
    assert_eq!(response_ends(&out), [true]);
}

#[tokio::test]
async fn status_and_stream_retries_share_one_bound() {
    // Two 503s, then streams failing with an error event after the 200,
    // over and over: `max_retries` (2) retries in all, not per kind.
    let server = FakeOpenAi::start().await;
    let failing = || {
        Reply::Sse(vec![Part::Data(
            r#"{"error":{"message":"Overloaded","type":"server_error","param":null,"code":null}}"#
                .into(),
        )])
    };
    for _ in 0..2 {
        server.push_chat(Reply::error(503, "Overloaded", "server_error"));
        server.push_chat(Reply::error(503, "Overloaded", "server_error"));
        server.push_chat(failing());
    }
    for _ in 0..6 {
        server.push_chat(failing());
    }
    let out = ask(&server, FAST_RETRY).await;
    assert_eq!(
        server.received("chat/completions").len(),
        3,
        "max_retries + 1"
    );
    let errors = error_frames(&out.upstream);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(response_ends(&out), [true]);
}

#[tokio::test]
async fn a_stream_broken_after_its_finish_reason_is_whole() {
    // A reset where `[DONE]` should be, after the finish reason.
    let server = FakeOpenAi::start().await;
    server.push_chat(Reply::Sse(vec![
        Part::Data(text_chunk("All ")),
        Part::Data(text_chunk("said.")),
        Part::Data(finish_chunk("stop")),
        Part::Abort,
    ]));
    let out = ask(&server, FAST_RETRY).await;
    assert!(
        error_frames(&out.upstream).is_empty(),
        "{:?}",
        error_frames(&out.upstream)
    );
    assert_eq!(texts(&out.downstream).concat(), "All said.");
    assert_eq!(response_ends(&out), [false]);
    assert_eq!(server.received("chat/completions").len(), 1);

    // A silence there: the read timeout ends the stream, not the answer.
    server.push_chat(Reply::Sse(vec![
        Part::Data(text_chunk("Quiet.")),
        Part::Data(finish_chunk("stop")),
        Part::Stall,
    ]));
    let out = ask(&server, "connection = { read_timeout_secs = 0.3 }").await;
    assert!(error_frames(&out.upstream).is_empty());
    assert_eq!(texts(&out.downstream).concat(), "Quiet.");
    assert_eq!(response_ends(&out), [false]);
}

#[tokio::test]
async fn nothing_after_done_is_read() {
    // A gateway that resets the connection after `[DONE]`: the answer was
    // whole, and it is neither failed nor asked again.
    let server = FakeOpenAi::start().await;
    let mut parts = text_answer("All there.");
    parts.push(Part::Abort);
    server.push_chat(Reply::Sse(parts));
    let out = ask(&server, FAST_RETRY).await;
    assert!(
        error_frames(&out.upstream).is_empty(),
        "{:?}",
        error_frames(&out.upstream)
    );
    assert_eq!(texts(&out.downstream).concat(), "All there.");
    assert_eq!(response_ends(&out), [false]);
    assert_eq!(server.received("chat/completions").len(), 1);

    // One that leaves the body open after `[DONE]`: the turn does not wait
    // on it (the read timeout is far beyond the test's run).
    let mut parts = text_answer("Done here.");
    parts.push(Part::Stall);
    server.push_chat(Reply::Sse(parts));
    let out = ask(&server, "connection = { read_timeout_secs = 60 }").await;
    assert!(error_frames(&out.upstream).is_empty());
    assert_eq!(texts(&out.downstream).concat(), "Done here.");
    assert_eq!(response_ends(&out), [false]);
}

#[tokio::test]
async fn a_malformed_event_is_reported_and_skipped() {
    let server = FakeOpenAi::start().await;
    server.push_chat(Reply::Sse(vec![
        Part::Raw(b": keep-alive comment\n\n".to_vec()),
        Part::Data(text_chunk("Hello")),
        Part::Data("{\"choices\": [ this is not json".into()),
        Part::Data(text_chunk(" world.")),
        Part::Data(finish_chunk("stop")),
        Part::Data("[DONE]".into()),
    ]));
    let out = ask(&server, "").await;
    assert_eq!(
        texts(&out.downstream).concat(),
        "Hello world.",
        "nothing else lost"
    );
    let errors = error_frames(&out.upstream);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .message
            .starts_with("malformed response: not a chat-completion chunk"),
        "{}",
        errors[0].message
    );
    assert!(!errors[0].fatal);
    assert_eq!(
        response_ends(&out),
        [false],
        "a skipped event fails nothing"
    );
}

#[tokio::test]
async fn a_reply_that_is_not_an_event_stream_is_an_error() {
    let server = FakeOpenAi::start().await;
    server.push_chat(Reply::Text("<html>proxy login</html>".into()));
    let out = ask(&server, "").await;
    assert!(
        error_frames(&out.upstream)[0]
            .message
            .contains("expected an event stream")
    );
}

#[tokio::test(start_paused = true)]
async fn a_stalled_stream_times_out() {
    let server = FakeOpenAi::start().await;
    server.push_chat(Reply::Sse(vec![
        Part::Data(text_chunk("Well")),
        Part::Stall,
    ]));
    let out = ask(
        &server,
        "connection = { read_timeout_secs = 5, response_timeout_secs = 5 }",
    )
    .await;
    let errors = error_frames(&out.upstream);
    // Paused time jumps to the next timer whenever the runtime waits on the
    // socket: which of the two timeouts fires first does not matter.
    assert!(
        errors[0].message.starts_with("no ") && errors[0].message.ends_with("within 5s"),
        "{}",
        errors[0].message
    );
    assert!(texts(&out.downstream).len() <= 1);
    assert!(names(&out).contains(&"LlmResponseEnd"));
}

/// `: OPENROUTER PROCESSING` and a blank line, once a second for `secs`
/// seconds: the comment OpenRouter sends while a model has said nothing.
fn processing_comments(secs: u32) -> Vec<Part> {
    (0..secs)
        .flat_map(|_| {
            [
                Part::Raw(b": OPENROUTER PROCESSING\n\n".to_vec()),
                Part::Pause(Duration::from_secs(1)),
            ]
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn comment_lines_alone_do_not_hold_off_the_read_timeout_once_the_answer_has_begun() {
    let server = FakeOpenAi::start().await;
    // The answer begins, then a minute of keep-alives, then the rest, which
    // the turn must not wait for.
    let mut parts = vec![Part::Data(text_chunk("It is "))];
    parts.extend(processing_comments(60));
    parts.extend(text_answer("too late."));
    server.push_chat(Reply::Sse(parts));
    // A response timeout the clock cannot jump to first: only the read
    // timeout can fire.
    let out = ask(
        &server,
        "connection = { read_timeout_secs = 5, response_timeout_secs = 60 }",
    )
    .await;
    let waited = server.received("chat/completions")[0].at.elapsed();
    let errors = error_frames(&out.upstream);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].message, "no event within 5s");
    assert_eq!(texts(&out.downstream).concat(), "It is ");
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(10),
        "the turn ended after {waited:?}"
    );
    assert!(names(&out).contains(&"LlmResponseEnd"));
}

#[tokio::test]
async fn keep_alives_before_the_first_event_hold_a_thinking_model_open_past_the_read_timeout() {
    // A model thinking for longer than the read timeout, the server saying
    // so with comments (real time: a paused clock could jump to the read
    // deadline while the answer is in flight).
    let server = FakeOpenAi::start().await;
    let mut parts: Vec<Part> = (0..6)
        .flat_map(|_| {
            [
                Part::Raw(b": OPENROUTER PROCESSING\n\n".to_vec()),
                Part::Pause(Duration::from_millis(300)),
            ]
        })
        .collect();
    parts.extend(text_answer("Thought about it."));
    server.push_chat(Reply::Sse(parts));
    let out = ask(&server, "connection = { read_timeout_secs = 1 }").await;
    assert!(
        error_frames(&out.upstream).is_empty(),
        "{:?}",
        error_frames(&out.upstream)
    );
    assert_eq!(texts(&out.downstream).concat(), "Thought about it.");
}

#[tokio::test(start_paused = true)]
async fn keep_alives_alone_end_the_turn_at_the_thinking_limit() {
    let server = FakeOpenAi::start().await;
    // Comments for ever: the turn ends at the limit, not never.
    let mut parts = processing_comments(300);
    parts.extend(text_answer("Far too late."));
    server.push_chat(Reply::Sse(parts));
    let out = ask(
        &server,
        "connection = { read_timeout_secs = 5, response_timeout_secs = 60 }",
    )
    .await;
    let waited = server.received("chat/completions")[0].at.elapsed();
    let errors = error_frames(&out.upstream);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].message, "no event within 120s");
    assert!(texts(&out.downstream).is_empty());
    assert!(
        waited >= Duration::from_secs(120) && waited < Duration::from_secs(126),
        "the turn ended after {waited:?}"
    );
}

#[tokio::test]
async fn an_answer_after_keep_alives_within_the_read_timeout_is_spoken() {
    // A model thinking for a while, the server saying so with comments
    // (real time: a paused clock could jump past the answer in flight).
    let server = FakeOpenAi::start().await;
    let mut parts: Vec<Part> = (0..5)
        .flat_map(|_| {
            [
                Part::Raw(b": keep-alive\n\n".to_vec()),
                Part::Pause(Duration::from_millis(100)),
            ]
        })
        .collect();
    parts.extend(text_answer("Here it is."));
    server.push_chat(Reply::Sse(parts));
    let out = ask(&server, "connection = { read_timeout_secs = 5 }").await;
    assert!(error_frames(&out.upstream).is_empty());
    assert_eq!(texts(&out.downstream).concat(), "Here it is.");
}

#[tokio::test(start_paused = true)]
async fn a_server_that_never_answers_times_out() {
    // Accepts connections and never says a word.
    let addr = support::net::silent_server().await;
    let processor = build::<OpenAiLlmConfig>(
        "llm",
        &format!(
            "base_url = \"http://{addr}/v1\"\nmodel = \"m\"\nconnection = {{ response_timeout_secs = 3 }}"
        ),
        &[],
    );
    let messages = Arc::new(vec![Message::text(Role::User, "Hi")]);
    let out = run_test(vec![processor], vec![FrameBody::LlmMessages(messages)]).await;
    assert_eq!(
        error_frames(&out.upstream)[0].message,
        "no response within 3s"
    );
}
