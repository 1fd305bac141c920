//! In-stream refusals against a fake OpenAI-compatible server: an error
//! event after the 200 that refuses the request is not asked again, and
//! one that refuses the key ends the session as an HTTP 401 does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::llm_errors::{FAST_RETRY, ask, response_ends};
use crate::support::fake::openai::{FakeOpenAi, Part, Reply, role_chunk, text_answer};
use crate::support::session::{error_frames, texts};

#[tokio::test]
async fn a_stream_refusing_the_request_before_its_content_is_not_asked_again() {
    // OpenAI's refusal of too long a context, as an error event after the
    // 200: the same request would be refused again.
    let server = FakeOpenAi::start().await;
    let refusal = r#"{"error":{"message":"This model's maximum context length is 128000 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
    server.push_chat(Reply::Sse(vec![
        Part::Data(role_chunk()),
        Part::Data(refusal.into()),
    ]));
    let out = ask(&server, FAST_RETRY).await;
    assert_eq!(server.received("chat/completions").len(), 1, "asked once");
    let errors = error_frames(&out.upstream);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]
            .message
            .starts_with("This model's maximum context length"),
        "{}",
        errors[0].message
    );
    assert_eq!(errors[0].provider.as_deref(), Some("openai"));
    assert_eq!(response_ends(&out), [true]);

    // A passing error in the same place is still asked again.
    let overloaded = r#"{"error":{"message":"Our servers are overloaded.","type":"server_error","code":"server_is_overloaded"}}"#;
    server.push_chats([
        Reply::Sse(vec![
            Part::Data(role_chunk()),
            Part::Data(overloaded.into()),
        ]),
        Reply::Sse(text_answer("Fine.")),
    ]);
    let out = ask(&server, FAST_RETRY).await;
    assert_eq!(server.received("chat/completions").len(), 3);
    assert_eq!(texts(&out.downstream).concat(), "Fine.");
    assert_eq!(response_ends(&out), [false]);
}

#[tokio::test]
async fn a_key_refused_inside_the_stream_ends_the_session_as_a_401_does() {
    // A proxy (OpenRouter-like) that answers 200 and then refuses the key
    // in the stream, by kind or by a numeric code.
    let refusals = [
        r#"{"error":{"message":"Incorrect API key provided: sk-test.","type":"invalid_request_error","code":"invalid_api_key"}}"#,
        r#"{"error":{"message":"No auth credentials found","code":401}}"#,
    ];
    for refusal in refusals {
        let server = FakeOpenAi::start().await;
        server.push_chat(Reply::Sse(vec![
            Part::Data(role_chunk()),
            Part::Data(refusal.into()),
        ]));
        let out = ask(&server, FAST_RETRY).await;
        assert_eq!(server.received("chat/completions").len(), 1, "asked once");
        let errors = error_frames(&out.upstream);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].fatal, "{refusal}");
        assert_eq!(errors[0].provider.as_deref(), Some("openai"));
        assert!(out.outcome.fatal_error.is_some(), "{refusal}");
    }
}
