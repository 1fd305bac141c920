//! Preemptive replies and the turn-end decision, between `user_context` and
//! `assistant_context` with a real LLM and TTS client against the fake
//! OpenAI server: a reply prepared during the wait for the turn's end is
//! held (not played, not recorded), plays the frame the turn ends, is never
//! heard when the user goes on, and runs no tool with side effects early.
//! The session runs on an audio clock the test moves, so every decision
//! falls on a known frame however loaded the machine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::clocked::Session;
use support::fake::openai::{FakeOpenAi, Part, Reply, finish_chunk, text_answer, tool_chunk};
use support::session::build;
use voxpipe::conversation::{Role, SharedConversation};
use voxpipe::frame::{Direction, FrameBody, TranscriptionFrame};
use voxpipe::pipeline::NamedProcessor;
use voxpipe::processors::{AssistantContextAggregator, UserContextAggregator};
use voxpipe::services::llm::OpenAiLlmConfig;
use voxpipe::services::tts::OpenAiTtsConfig;
use voxpipe::vad::{EndOfTurnModel, TurnEndParams};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn params() -> TurnEndParams {
    TurnEndParams {
        preemptive_secs: Duration::ZERO,
        complete_secs: ms(300),
        fallback_secs: ms(1_200),
        end_probability: 0.5,
    }
}

/// `user_context ▶ llm ▶ tts ▶ assistant_context`, the LLM with an HTTP
/// tool `book` (side effects: not safe to run early) and `lookup` (safe).
fn pipeline(
    server: &FakeOpenAi,
    conversation: &SharedConversation,
    model: Option<Box<dyn EndOfTurnModel>>,
    preemptive: bool,
) -> Vec<NamedProcessor> {
    let tool = |name: &str, more: &str| {
        format!(
            "[[http_tools]]\nname = \"{name}\"\ndescription = \"{name}\"\nurl = \"{}\"\n{more}\n",
            server.tool_url(name)
        )
    };
    let user = UserContextAggregator::new(conversation.clone(), ms(1_000), true).with_turn_end(
        params(),
        model,
        preemptive,
    );
    vec![
        NamedProcessor::new("user_context", user),
        build::<OpenAiLlmConfig>(
            "llm",
            &format!(
                "base_url = \"{}\"\nmodel = \"m\"\n{}{}",
                server.base_url,
                tool("book", ""),
                tool("lookup", "safe_to_run_early = true"),
            ),
            &[],
        ),
        build::<OpenAiTtsConfig>(
            "tts",
            &format!("base_url = \"{}\"\nvoice = \"nova\"\n", server.base_url),
            &[],
        ),
        NamedProcessor::new(
            "assistant_context",
            AssistantContextAggregator::new(conversation.clone()),
        ),
    ]
}

fn transcription(text: &str) -> FrameBody {
    FrameBody::Transcription(TranscriptionFrame {
        text: text.into(),
        user_id: None,
        language: None,
        at: Duration::ZERO,
    })
}

fn interim(text: &str) -> FrameBody {
    FrameBody::InterimTranscription(TranscriptionFrame {
        text: text.into(),
        user_id: None,
        language: None,
        at: Duration::ZERO,
    })
}

/// The user speaks from 100 ms to 1 s, `words` transcribed at 900 ms; the
/// VAD's short stop comes at 1.2 s.
async fn says(session: &Session, words: FrameBody) {
    session
        .at(100, FrameBody::UserStartedSpeaking { start: ms(100) })
        .await;
    session.at(900, words).await;
    session
        .at(1_200, FrameBody::UserStoppedSpeaking { end: ms(1_000) })
        .await;
}

/// Waits until the TTS has synthesized a (prepared) reply to its end.
async fn reply_synthesized(session: &Session) {
    session
        .live
        .wait_for_from("tts", "the prepared reply, synthesized", |b| {
            matches!(b, FrameBody::TtsStopped)
        })
        .await;
}

/// Whether anything of a reply (words, audio, tool calls) is among `bodies`.
fn any_reply(bodies: &[FrameBody]) -> bool {
    bodies.iter().any(|b| {
        matches!(
            b,
            FrameBody::LlmText(_)
                | FrameBody::TtsText(_)
                | FrameBody::OutputAudio(_)
                | FrameBody::FunctionCallInProgress(_)
                | FrameBody::FunctionCallResult { .. }
        )
    })
}

/// The words the TTS spoke, as they went past.
fn spoken(bodies: &[FrameBody]) -> Vec<String> {
    bodies
        .iter()
        .filter_map(|b| match b {
            FrameBody::TtsText(t) => Some(t.text.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_prepared_reply_is_held_unheard_and_plays_the_frame_the_turn_ends() {
    let server = FakeOpenAi::start().await;
    server.push_chat(Reply::Sse(text_answer("A pizza it is.")));
    let conversation = SharedConversation::default();
    let session = Session::start(pipeline(&server, &conversation, None, true));
    session
        .at(100, FrameBody::UserStartedSpeaking { start: ms(100) })
        .await;
    session
        .at(900, transcription("I would like a pizza."))
        .await;
    // The VAD's short stop, 200 ms after the speech ended at 1 s.
    session
        .at(1_200, FrameBody::UserStoppedSpeaking { end: ms(1_000) })
        .await;
    session
        .live
        .wait_for_from("tts", "the prepared reply, synthesized", |b| {
            matches!(b, FrameBody::TtsStopped)
        })
        .await;
    // Prepared to the end, and all of it seen by assistant_context, yet
    // nothing of it was played or recorded.
    session.settled().await;
    assert!(!any_reply(&session.pushed_by("assistant_context")));
    assert!(conversation.lock().context.messages().is_empty());

    // 280 ms of silence: not yet the end of the turn.
    session.audio(1_280).await;
    session.settled().await;
    assert!(
        !session
            .pushed_by("user_context")
            .iter()
            .any(|b| matches!(b, FrameBody::PreemptiveReplyConfirmed))
    );
    assert!(!any_reply(&session.pushed_by("assistant_context")));
    // The next frame, 300 ms: the turn ends and the reply goes out with it,
    // with no further input.
    session.audio(1_300).await;
    session
        .live
        .wait_for_from("assistant_context", "the reply played", |b| {
            matches!(b, FrameBody::OutputAudio(_))
        })
        .await;
    let pushes = session.live.finish().await;
    let position = |from: &str, matching: fn(&FrameBody) -> bool| {
        pushes
            .iter()
            .position(|(f, d, frame)| {
                f == from && *d == Direction::Downstream && matching(&frame.body)
            })
            .unwrap()
    };
    let confirmed = position("user_context", |b| {
        matches!(b, FrameBody::PreemptiveReplyConfirmed)
    });
    let last_input = pushes
        .iter()
        .rposition(|(f, _, frame)| {
            f == "user_context" && matches!(frame.body, FrameBody::InputAudio(_))
        })
        .unwrap();
    assert!(last_input < confirmed, "decided on the 1.3 s frame itself");
    assert!(
        position("assistant_context", |b| matches!(
            b,
            FrameBody::OutputAudio(_)
        )) > confirmed
    );
    assert_eq!(
        server.chat_requests().len(),
        1,
        "one LLM request: the prepared one"
    );
    let messages = conversation.lock().context.messages().to_vec();
    assert_eq!(messages[0].role, Role::User);
    assert_eq!(
        messages[0].content.as_deref(),
        Some("I would like a pizza.")
    );
    assert_eq!(messages[1].role, Role::Assistant);
}

#[tokio::test]
async fn a_prepared_reply_is_never_heard_when_the_user_goes_on() {
    let server = FakeOpenAi::start().await;
    server.push_chats([
        Reply::Sse(text_answer("Which pizza?")),
        Reply::Sse(text_answer("A pizza and a salad.")),
    ]);
    let conversation = SharedConversation::default();
    let session = Session::start(pipeline(&server, &conversation, None, true));
    says(&session, transcription("I would like a pizza")).await;
    session
        .live
        .wait_for_from("tts", "the first prepared reply's audio", |b| {
            matches!(b, FrameBody::OutputAudio(_))
        })
        .await;
    // A 600 ms hesitation mid-phrase: the turn goes on.
    session.audio(1_580).await;
    session
        .at(1_600, FrameBody::UserStartedSpeaking { start: ms(1_600) })
        .await;
    session
        .live
        .wait_for_from("assistant_context", "the discard", |b| {
            matches!(b, FrameBody::Interruption)
        })
        .await;
    session.at(2_400, transcription("and a salad.")).await;
    session
        .at(2_800, FrameBody::UserStoppedSpeaking { end: ms(2_600) })
        .await;
    for t in (2_820..=2_900).step_by(20) {
        session.audio(t).await;
    }
    session
        .live
        .wait_for_from("assistant_context", "the second reply played", |b| {
            matches!(b, FrameBody::OutputAudio(_))
        })
        .await;
    session
        .live
        .wait_for_from("assistant_context", "the second reply's end", |b| {
            matches!(b, FrameBody::LlmResponseEnd { .. })
        })
        .await;
    let discarded = session
        .pushed_by("user_context")
        .iter()
        .filter(|b| matches!(b, FrameBody::PreemptiveReplyDiscarded))
        .count();
    assert_eq!(discarded, 1);
    let heard = spoken(&session.pushed_by("assistant_context"));
    assert_eq!(
        heard,
        ["A pizza and a salad."],
        "the first reply never went out"
    );
    let _pushes = session.live.finish().await;
    let requests = server.chat_requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(last_user(&requests[0]), "I would like a pizza");
    assert_eq!(last_user(&requests[1]), "I would like a pizza and a salad.");
    let messages = conversation.lock().context.messages().to_vec();
    let users: Vec<_> = messages
        .iter()
        .filter(|m| m.role == Role::User)
        .map(|m| m.content.clone().unwrap_or_default())
        .collect();
    assert_eq!(users, ["I would like a pizza and a salad."]);
    let assistant: Vec<_> = messages
        .iter()
        .filter(|m| m.role == Role::Assistant)
        .map(|m| m.content.clone().unwrap_or_default())
        .collect();
    assert_eq!(assistant, ["A pizza and a salad."]);
}

#[tokio::test]
async fn a_prepared_reply_another_interruption_cancelled_is_asked_for_again() {
    let server = FakeOpenAi::start().await;
    server.push_chats([
        Reply::Sse(text_answer("A pizza it is.")),
        Reply::Sse(text_answer("A pizza it is.")),
    ]);
    let conversation = SharedConversation::default();
    let session = Session::start(pipeline(&server, &conversation, None, true));
    says(&session, transcription("I would like a pizza.")).await;
    reply_synthesized(&session).await;
    // An interruption the decision did not ask for (typed text, say)
    // cancels the prepared reply.
    session.at(1_250, FrameBody::Interruption).await;
    session
        .live
        .wait_for_from("assistant_context", "the interruption", |b| {
            matches!(b, FrameBody::Interruption)
        })
        .await;
    // The turn ends at 1.3 s and is answered: not a confirmation of a reply
    // that is gone.
    for t in (1_260..=1_300).step_by(20) {
        session.audio(t).await;
    }
    session
        .live
        .wait_for_from("assistant_context", "the reply played", |b| {
            matches!(b, FrameBody::OutputAudio(_))
        })
        .await;
    // Said, as a discard is: clients holding the reply drop it.
    let discarded = session
        .pushed_by("user_context")
        .iter()
        .filter(|b| matches!(b, FrameBody::PreemptiveReplyDiscarded))
        .count();
    assert_eq!(discarded, 1);
    let _pushes = session.live.finish().await;
    assert_eq!(server.chat_requests().len(), 2, "asked for again");
    let messages = conversation.lock().context.messages().to_vec();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(messages[1].content.as_deref(), Some("A pizza it is."));
}

/// The last user message of an LLM request.
fn last_user(request: &serde_json::Value) -> String {
    request["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_streaming_interim_prepares_the_reply_before_the_final_comes() {
    let server = FakeOpenAi::start().await;
    server.push_chat(Reply::Sse(text_answer("A pizza it is.")));
    let conversation = SharedConversation::default();
    let session = Session::start(pipeline(&server, &conversation, None, true));
    says(&session, interim("i would like a pizza")).await;
    // No final yet: the interim's words go to the LLM at the stop.
    reply_synthesized(&session).await;
    session.settled().await;
    assert_eq!(server.chat_requests().len(), 1);
    assert!(!any_reply(&session.pushed_by("assistant_context")));
    // The final, 400 ms after the speech ended, punctuated: the same words.
    session
        .at(1_400, transcription("I would like a pizza."))
        .await;
    session
        .live
        .wait_for_from("assistant_context", "the reply played", |b| {
            matches!(b, FrameBody::OutputAudio(_))
        })
        .await;
    let user = session.pushed_by("user_context");
    let _pushes = session.live.finish().await;
    let requests = server.chat_requests();
    assert_eq!(requests.len(), 1, "the prepared reply stood");
    assert_eq!(last_user(&requests[0]), "i would like a pizza");
    assert!(
        user.iter()
            .any(|b| matches!(b, FrameBody::PreemptiveReplyConfirmed))
    );
    assert!(
        !user
            .iter()
            .any(|b| matches!(b, FrameBody::PreemptiveReplyDiscarded))
    );
    let messages = conversation.lock().context.messages().to_vec();
    assert_eq!(
        messages[0].content.as_deref(),
        Some("I would like a pizza."),
        "the turn is recorded as the final says it"
    );
    assert_eq!(messages[1].content.as_deref(), Some("A pizza it is."));
}

#[tokio::test]
async fn a_reply_prepared_from_an_interim_is_confirmed_when_the_session_ends() {
    let server = FakeOpenAi::start().await;
    server.push_chat(Reply::Sse(text_answer("A pizza it is.")));
    let conversation = SharedConversation::default();
    let session = Session::start(pipeline(&server, &conversation, None, true));
    says(&session, interim("i would like a pizza")).await;
    reply_synthesized(&session).await;
    // The input ends before the final comes: the interim is the turn.
    let pushes = session.live.finish().await;
    let from = |name: &str| -> Vec<FrameBody> {
        pushes
            .iter()
            .filter(|(f, d, _)| f == name && *d == Direction::Downstream)
            .map(|(_, _, frame)| frame.body.clone())
            .collect()
    };
    assert!(
        from("user_context")
            .iter()
            .any(|b| matches!(b, FrameBody::PreemptiveReplyConfirmed))
    );
    assert_eq!(spoken(&from("assistant_context")), ["A pizza it is."]);
    assert_eq!(server.chat_requests().len(), 1, "not asked again");
    let messages = conversation.lock().context.messages().to_vec();
    let said: Vec<_> = messages
        .iter()
        .map(|m| (m.role, m.content.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        said,
        [
            (Role::User, "i would like a pizza".to_owned()),
            (Role::Assistant, "A pizza it is.".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_reply_prepared_for_other_words_is_discarded_unheard_when_the_session_ends() {
    let server = FakeOpenAi::start().await;
    server.push_chats([
        Reply::Sse(text_answer("A pizza it is.")),
        Reply::Sse(text_answer("A pasta it is.")),
    ]);
    let conversation = SharedConversation::default();
    let session = Session::start(pipeline(&server, &conversation, None, true));
    says(&session, interim("i would like a pizza")).await;
    reply_synthesized(&session).await;
    // A newer interim, other words, and the input ends.
    session.at(1_300, interim("i would like a pasta")).await;
    let pushes = session.live.finish().await;
    let from = |name: &str| -> Vec<FrameBody> {
        pushes
            .iter()
            .filter(|(f, d, _)| f == name && *d == Direction::Downstream)
            .map(|(_, _, frame)| frame.body.clone())
            .collect()
    };
    let user = from("user_context");
    assert!(
        user.iter()
            .any(|b| matches!(b, FrameBody::PreemptiveReplyDiscarded))
    );
    assert!(
        !user
            .iter()
            .any(|b| matches!(b, FrameBody::PreemptiveReplyConfirmed))
    );
    assert!(!any_reply(&from("assistant_context")), "nothing played");
    assert_eq!(server.chat_requests().len(), 1);
    let messages = conversation.lock().context.messages().to_vec();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0].content.as_deref(), Some("i would like a pasta"));
}

#[tokio::test]
async fn a_reply_waiting_to_run_a_tool_is_dropped_when_the_session_ends_on_other_words() {
    let server = FakeOpenAi::start().await;
    server.push_chats([calls_tool("book"), Reply::Sse(text_answer("Booked."))]);
    let conversation = SharedConversation::default();
    let session = Session::start(pipeline(&server, &conversation, None, true));
    says(&session, interim("book it")).await;
    // The prepared reply calls `book`, which waits for the confirmation.
    after_the_first_answer(&server).await;
    session.at(1_300, interim("book it for two")).await;
    // The input ends on other words: the session ends (it waited on the
    // tool for ever before), and the tool never runs.
    let finished = tokio::time::timeout(Duration::from_secs(20), session.live.finish()).await;
    let pushes = finished.expect("the session ends");
    let user: Vec<FrameBody> = pushes
        .iter()
        .filter(|(f, d, _)| f == "user_context" && *d == Direction::Downstream)
        .map(|(_, _, frame)| frame.body.clone())
        .collect();
    assert!(
        user.iter()
            .any(|b| matches!(b, FrameBody::PreemptiveReplyDiscarded))
    );
    assert!(server.received("/tools/book").is_empty(), "never booked");
    assert_eq!(server.chat_requests().len(), 1);
}

#[tokio::test]
async fn a_final_with_other_words_than_the_interim_replaces_its_reply() {
    let server = FakeOpenAi::start().await;
    server.push_chats([
        Reply::Sse(text_answer("A pizza it is.")),
        Reply::Sse(text_answer("A pasta it is.")),
    ]);
    let conversation = SharedConversation::default();
    let session = Session::start(pipeline(&server, &conversation, None, true));
    says(&session, interim("i would like a pizza")).await;
    session
        .live
        .wait_for_from("tts", "the first prepared reply, synthesized", |b| {
            matches!(b, FrameBody::TtsStopped)
        })
        .await;
    session
        .at(1_400, transcription("I would like a pasta."))
        .await;
    session
        .live
        .wait_for_from("assistant_context", "the discard", |b| {
            matches!(b, FrameBody::Interruption)
        })
        .await;
    for t in (1_420..=1_500).step_by(20) {
        session.audio(t).await;
    }
    session
        .live
        .wait_for_from("assistant_context", "the second reply's end", |b| {
            matches!(b, FrameBody::LlmResponseEnd { .. })
        })
        .await;
    let heard = spoken(&session.pushed_by("assistant_context"));
    assert_eq!(heard, ["A pasta it is."], "the pizza reply never went out");
    let _pushes = session.live.finish().await;
    let requests = server.chat_requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(last_user(&requests[1]), "I would like a pasta.");
    let messages = conversation.lock().context.messages().to_vec();
    assert_eq!(
        messages[0].content.as_deref(),
        Some("I would like a pasta.")
    );
    assert_eq!(messages[1].content.as_deref(), Some("A pasta it is."));
}

fn calls_tool(name: &str) -> Reply {
    Reply::Sse(vec![
        Part::Data(tool_chunk(0, Some("call_1"), Some(name), "{}")),
        Part::Data(finish_chunk("tool_calls")),
        Part::Data("[DONE]".into()),
    ])
}

/// Waits until the LLM's first streamed answer has been handed over, then
/// gives the client a while to act on it.
async fn after_the_first_answer(server: &FakeOpenAi) {
    server
        .wait_for_requests("chat/completions", 1, Duration::from_secs(10))
        .await;
    let sent = support::wait::eventually(Duration::from_secs(10), async || {
        !server.first_bytes("chat").is_empty()
    })
    .await;
    assert!(sent, "the first answer was never sent");
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_tool_with_side_effects_waits_for_the_turn_to_end_and_never_runs_if_discarded() {
    let server = FakeOpenAi::start().await;
    server.push_chats([
        calls_tool("book"),
        calls_tool("book"),
        Reply::Sse(text_answer("Booked.")),
    ]);
    let conversation = SharedConversation::default();
    let session = Session::start(pipeline(&server, &conversation, None, true));
    says(&session, transcription("Book it.")).await;
    after_the_first_answer(&server).await;
    assert!(
        server.received("/tools/book").is_empty(),
        "not before the turn ends"
    );
    // The user goes on: the reply is discarded and the tool never runs.
    session
        .at(1_250, FrameBody::UserStartedSpeaking { start: ms(1_250) })
        .await;
    session
        .live
        .wait_for_from("assistant_context", "the discard", |b| {
            matches!(b, FrameBody::Interruption)
        })
        .await;
    // The turn, once over, books: after the confirmation.
    session.at(1_700, transcription("Yes, book it.")).await;
    session
        .at(2_000, FrameBody::UserStoppedSpeaking { end: ms(1_800) })
        .await;
    server
        .wait_for_requests("chat/completions", 2, Duration::from_secs(10))
        .await;
    assert!(server.received("/tools/book").is_empty());
    session.audio(2_100).await;
    server
        .wait_for_requests("/tools/book", 1, Duration::from_secs(10))
        .await;
    session
        .live
        .wait_for_from(
            "assistant_context",
            "the answer after the tool",
            |b| matches!(b, FrameBody::TtsText(t) if t.text.contains("Booked")),
        )
        .await;
    let _pushes = session.live.finish().await;
    assert_eq!(
        server.received("/tools/book").len(),
        1,
        "run once, when confirmed"
    );
}

#[tokio::test]
async fn a_tool_safe_to_run_early_runs_during_the_wait() {
    let server = FakeOpenAi::start().await;
    server.push_chats([calls_tool("lookup"), Reply::Sse(text_answer("Found it."))]);
    let conversation = SharedConversation::default();
    let session = Session::start(pipeline(&server, &conversation, None, true));
    says(&session, transcription("Look it up.")).await;
    server
        .wait_for_requests("/tools/lookup", 1, Duration::from_secs(10))
        .await;
    // The answer after the lookup, on its way through the TTS, and all
    // pushed so far seen by assistant_context: held, the call, its result
    // and the words.
    session
        .live
        .wait_for_from(
            "tts",
            "the answer after the lookup",
            |b| matches!(b, FrameBody::TtsText(t) if t.text.contains("Found it")),
        )
        .await;
    session.settled().await;
    assert!(
        !session
            .pushed_by("user_context")
            .iter()
            .any(|b| matches!(b, FrameBody::PreemptiveReplyConfirmed)),
        "ran before the turn ended"
    );
    assert!(!any_reply(&session.pushed_by("assistant_context")));
    let _pushes = session.live.finish().await;
}

#[tokio::test]
async fn a_discarded_replys_tool_call_is_not_recorded_when_its_result_comes() {
    let server = FakeOpenAi::start().await;
    server.push_chats([calls_tool("lookup"), Reply::Sse(text_answer("Found it."))]);
    // The lookup answers after the user has gone on.
    server.push_tool(Reply::Delayed(
        Duration::from_millis(300),
        Box::new(Reply::Json(serde_json::json!({"found": true}))),
    ));
    let conversation = SharedConversation::default();
    let session = Session::start(pipeline(&server, &conversation, None, true));
    says(&session, transcription("Look it up.")).await;
    server
        .wait_for_requests("/tools/lookup", 1, Duration::from_secs(10))
        .await;
    session
        .at(1_250, FrameBody::UserStartedSpeaking { start: ms(1_250) })
        .await;
    session
        .live
        .wait_for_from("assistant_context", "the discard", |b| {
            matches!(b, FrameBody::Interruption)
        })
        .await;
    // The LLM's end waits for every result (the lookup's, or its
    // cancellation) to be delivered.
    let pushes = session.live.finish().await;
    let recorded: Vec<&FrameBody> = pushes
        .iter()
        .filter(|(f, d, _)| f == "assistant_context" && *d == Direction::Downstream)
        .map(|(_, _, frame)| &frame.body)
        .collect();
    assert!(
        !recorded.iter().any(|b| match b {
            FrameBody::FunctionCallResult { .. } => true,
            FrameBody::TurnCompleted(turn) => turn.role == Role::Tool,
            _ => false,
        }),
        "nothing of the discarded reply's tool was recorded"
    );
    // The turn, ended by the session's end, is answered without the tool.
    let messages = conversation.lock().context.messages().to_vec();
    assert!(
        messages
            .iter()
            .all(|m| m.role != Role::Tool && m.tool_calls.is_empty()),
        "{messages:?}"
    );
}

#[tokio::test]
async fn an_interim_after_the_final_holds_the_turn_for_its_final() {
    let server = FakeOpenAi::start().await;
    server.push_chat(Reply::Sse(text_answer("A pizza with cheese.")));
    let conversation = SharedConversation::default();
    let session = Session::start(pipeline(&server, &conversation, None, false));
    says(&session, transcription("I would like a pizza.")).await;
    // The streaming STT is still finalising the end of the speech.
    session.at(1_250, interim("with cheese")).await;
    for t in (1_260..=1_380).step_by(20) {
        session.audio(t).await;
    }
    assert_eq!(
        turn_ended_at(&session),
        None,
        "300 ms of silence, but the interim's final is awaited"
    );
    session.at(1_400, transcription("with cheese.")).await;
    session.audio(1_420).await;
    server
        .wait_for_requests("chat/completions", 1, Duration::from_secs(10))
        .await;
    let _pushes = session.live.finish().await;
    let requests = server.chat_requests();
    assert_eq!(requests.len(), 1, "one turn, one reply");
    assert_eq!(
        last_user(&requests[0]),
        "I would like a pizza. with cheese."
    );
    let users: Vec<_> = conversation
        .lock()
        .context
        .messages()
        .iter()
        .filter(|m| m.role == Role::User)
        .map(|m| m.content.clone().unwrap_or_default())
        .collect();
    assert_eq!(users, ["I would like a pizza. with cheese."]);
}

#[tokio::test]
async fn an_interim_whose_final_never_comes_stands_in_for_it() {
    let server = FakeOpenAi::start().await;
    server.push_chats([
        Reply::Sse(text_answer("A pizza with cheese.")),
        Reply::Sse(text_answer("A second answer.")),
    ]);
    let conversation = SharedConversation::default();
    let session = Session::start(pipeline(&server, &conversation, None, false));
    says(&session, transcription("I would like a pizza.")).await;
    session.at(1_250, interim("with cheese")).await;
    // The transcript timeout (1 s) runs out at 2.25 s.
    for t in (1_260..=2_240).step_by(20) {
        session.audio(t).await;
    }
    assert_eq!(turn_ended_at(&session), None);
    session.audio(2_260).await;
    assert_eq!(turn_ended_at(&session), Some(2_260));
    server
        .wait_for_requests("chat/completions", 1, Duration::from_secs(10))
        .await;
    // Its final, after all: the interim spoke for it.
    session.at(2_400, transcription("with cheese.")).await;
    session.audio(2_420).await;
    let _pushes = session.live.finish().await;
    let requests = server.chat_requests();
    assert_eq!(requests.len(), 1, "one turn, one reply");
    assert_eq!(last_user(&requests[0]), "I would like a pizza. with cheese");
}

/// An end-of-turn model answering from a script, one probability per call.
struct ScriptedModel {
    answers: Arc<Mutex<Vec<f32>>>,
    calls: Arc<Mutex<Vec<usize>>>,
}

impl EndOfTurnModel for ScriptedModel {
    fn sample_rate(&self) -> u32 {
        16_000
    }

    fn end_of_turn_probability(&mut self, turn: &[i16]) -> f32 {
        self.calls.lock().unwrap().push(turn.len());
        let mut answers = self.answers.lock().unwrap();
        if answers.is_empty() {
            1.0
        } else {
            answers.remove(0)
        }
    }
}

/// When `user_context` handed the turn to the LLM, on the session clock.
fn turn_ended_at(session: &Session) -> Option<u64> {
    session
        .pushed_by("user_context")
        .iter()
        .find_map(|b| match b {
            FrameBody::TurnCompleted(turn) if turn.role == Role::User => Some(turn.at_ms),
            _ => None,
        })
}

#[tokio::test]
async fn the_model_saying_not_done_waits_for_the_fallback_and_done_ends_the_turn_early() {
    let server = FakeOpenAi::start().await;
    let conversation = SharedConversation::default();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let model = ScriptedModel {
        answers: Arc::new(Mutex::new(vec![0.1, 0.9])),
        calls: Arc::clone(&calls),
    };
    let session = Session::start(pipeline(
        &server,
        &conversation,
        Some(Box::new(model)),
        false,
    ));
    session
        .at(100, FrameBody::UserStartedSpeaking { start: ms(100) })
        .await;
    session
        .at(900, transcription("I would like a pizza."))
        .await;
    session
        .at(1_200, FrameBody::UserStoppedSpeaking { end: ms(1_000) })
        .await;
    // A complete sentence, but the model says not done: the fallback.
    let mut t = 1_220;
    while t < 2_200 {
        session.audio(t).await;
        t += 20;
    }
    assert_eq!(turn_ended_at(&session), None, "not before the fallback");
    session.audio(2_200).await;
    assert_eq!(turn_ended_at(&session), Some(2_200));

    // The next turn: the model says done, the short wait applies.
    session
        .at(3_000, FrameBody::UserStartedSpeaking { start: ms(3_000) })
        .await;
    for t in [3_100, 3_120, 3_140] {
        session.audio(t).await;
    }
    session.at(3_500, transcription("And a salad.")).await;
    session
        .at(3_900, FrameBody::UserStoppedSpeaking { end: ms(3_700) })
        .await;
    let mut t = 3_920;
    let ended = loop {
        session.audio(t).await;
        let users: Vec<u64> = session
            .pushed_by("user_context")
            .iter()
            .filter_map(|b| match b {
                FrameBody::TurnCompleted(turn) if turn.role == Role::User => Some(turn.at_ms),
                _ => None,
            })
            .collect();
        if users.len() == 2 {
            break users[1];
        }
        t += 20;
        assert!(t < 5_000, "the turn never ended");
    };
    assert!(ended >= 4_000, "at least complete_secs of silence: {ended}");
    assert!(ended < 4_900, "before the fallback: {ended}");
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "scored at each stop");
    assert_eq!(calls[1], 3 * 320, "the model heard the turn's own audio");
    let _pushes = session.live.finish().await;
}

/// A tool safe to run early that tells the client app it looked, once the
/// test lets it answer; it runs on through interruptions.
struct Peek {
    spec: voxpipe::services::llm::tools::ToolSpec,
    started: Arc<tokio::sync::Notify>,
    answer: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl voxpipe::services::llm::tools::Tool for Peek {
    fn spec(&self) -> &voxpipe::services::llm::tools::ToolSpec {
        &self.spec
    }

    fn safe_to_run_early(&self) -> bool {
        true
    }

    fn cancel_on_interruption(&self) -> bool {
        false
    }

    async fn call(
        &self,
        _arguments: serde_json::Value,
    ) -> Result<voxpipe::services::llm::tools::ToolOutcome, voxpipe::services::llm::tools::ToolError>
    {
        self.started.notify_one();
        self.answer.notified().await;
        Ok(voxpipe::services::llm::tools::ToolOutcome::result("seen")
            .with_server_message(serde_json::json!({"toast": "Seen"})))
    }
}

/// An LLM (alone in its pipeline) whose one tool is a [`Peek`]; returns
/// it with the tool's started and answer signals.
fn llm_with_peek(
    server: &FakeOpenAi,
) -> (
    NamedProcessor,
    Arc<tokio::sync::Notify>,
    Arc<tokio::sync::Notify>,
) {
    use voxpipe::pipeline::{ProcessorFactory, SessionSetup};
    use voxpipe::services::llm::tools::{ToolRegistry, ToolSpec};
    let started = Arc::new(tokio::sync::Notify::new());
    let answer = Arc::new(tokio::sync::Notify::new());
    let mut registry = ToolRegistry::builtin();
    registry.register(Arc::new(Peek {
        spec: ToolSpec {
            name: "peek".into(),
            description: "Looks.".into(),
            parameters: serde_json::json!({"type": "object", "properties": {}}),
        },
        started: Arc::clone(&started),
        answer: Arc::clone(&answer),
    }));
    let setup = SessionSetup::new("test-session", 16_000);
    setup.resources.insert(ToolRegistry::RESOURCE, registry);
    let config: OpenAiLlmConfig = toml::from_str(&format!(
        "base_url = \"{}\"\nmodel = \"m\"\ntools = [\"peek\"]\n",
        server.base_url
    ))
    .unwrap();
    let llm = NamedProcessor {
        name: "llm".into(),
        processor: config.build(&setup).unwrap(),
    };
    (llm, started, answer)
}

fn preemptive_ask(text: &str) -> FrameBody {
    FrameBody::PreemptiveLlmMessages(Arc::new(vec![voxpipe::conversation::Message::text(
        Role::User,
        text,
    )]))
}

#[tokio::test]
async fn a_discarded_replys_tool_result_and_message_never_leave_the_llm() {
    let server = FakeOpenAi::start().await;
    server.push_chats([calls_tool("peek"), Reply::Sse(text_answer("Seen."))]);
    let (llm, started, answer) = llm_with_peek(&server);
    let live = support::session::Live::start(vec![llm]);
    live.handle.queue_frame(preemptive_ask("Look.")).await;
    started.notified().await;
    // The discard: the call's FunctionCallInProgress may be dropped as
    // stale by it downstream, so nothing there could tell its result apart.
    live.handle.queue_frame(FrameBody::Interruption).await;
    live.wait_for_from("llm", "the discard", |b| {
        matches!(b, FrameBody::Interruption)
    })
    .await;
    answer.notify_one();
    // The session's end waits for the tool's result to be delivered.
    let pushes = live.finish().await;
    let llm: Vec<&FrameBody> = pushes
        .iter()
        .filter(|(f, d, _)| f == "llm" && *d == Direction::Downstream)
        .map(|(_, _, frame)| &frame.body)
        .collect();
    let discard = llm
        .iter()
        .position(|b| matches!(b, FrameBody::Interruption))
        .unwrap();
    assert!(
        !llm[discard..].iter().any(|b| matches!(
            b,
            FrameBody::FunctionCallResult { .. } | FrameBody::ServerMessage(_)
        )),
        "{:?}",
        &llm[discard..]
    );
    assert!(
        !llm.iter().any(|b| matches!(b, FrameBody::ServerMessage(_))),
        "the client app heard nothing of it"
    );
}

#[tokio::test]
async fn a_preemptive_replys_tool_message_waits_for_the_confirmation() {
    let server = FakeOpenAi::start().await;
    server.push_chats([calls_tool("peek"), Reply::Sse(text_answer("Seen."))]);
    let (llm, started, answer) = llm_with_peek(&server);
    let live = support::session::Live::start(vec![llm]);
    live.handle.queue_frame(preemptive_ask("Look.")).await;
    started.notified().await;
    answer.notify_one();
    live.wait_for_from("llm", "the tool's result", |b| {
        matches!(b, FrameBody::FunctionCallResult { .. })
    })
    .await;
    assert!(
        !live
            .recorder
            .pushes()
            .iter()
            .any(|(_, _, f)| matches!(f.body, FrameBody::ServerMessage(_))),
        "not before the reply is confirmed"
    );
    live.handle
        .queue_frame(FrameBody::PreemptiveReplyConfirmed)
        .await;
    live.wait_for_from(
        "llm",
        "the tool's message",
        |b| matches!(b, FrameBody::ServerMessage(data) if data["toast"] == "Seen"),
    )
    .await;
    let _pushes = live.finish().await;
}
