//! The LLM client's read timeout over a streamed answer, against the fake
//! OpenAI-compatible server on tokio's paused clock: it bounds each wait
//! on the server (not the whole answer, not a push held up downstream),
//! and keep-alive comments hold it off until the answer's content begins,
//! even after a role-only first chunk.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use support::fake::openai::{FakeOpenAi, Part, Reply, role_chunk, text_answer, text_chunk};
use support::session::{build, error_frames, texts};
use voxpipe::conversation::{Message, Role};
use voxpipe::frame::{Direction, ErrorFrame, Frame, FrameBody};
use voxpipe::pipeline::{
    NamedProcessor, PipelineParams, PipelineTask, Processor, ProcessorContext, ProcessorError,
    SessionClock,
};
use voxpipe::services::llm::OpenAiLlmConfig;
use voxpipe::testing::RecordingObserver;

const KEY: [(&str, &str); 1] = [("OPENAI_API_KEY", "sk-test")];

/// A read timeout of 5 s, and a response timeout the paused clock cannot
/// jump to first: only the read timeout (or the thinking limit) can fire.
const TIMEOUTS: &str = "connection = { read_timeout_secs = 5, response_timeout_secs = 60 }";

/// Holds each piece of text `hold` before passing it on: a consumer slower
/// than the model, so that the LLM's pushes wait for room.
struct SlowReader {
    hold: Duration,
}

#[async_trait]
impl Processor for SlowReader {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        if matches!(frame.body, FrameBody::LlmText(_)) {
            tokio::time::sleep(self.hold).await;
        }
        ctx.push(frame, direction).await;
        Ok(())
    }
}

/// What the LLM pushed for one question.
struct Answer {
    texts: Vec<String>,
    errors: Vec<ErrorFrame>,
    /// From the request's arrival to the end of the session.
    took: Duration,
}

/// Asks "Hi" of an LLM on `server` (with the connection `TIMEOUTS`),
/// followed by `reader` if given, with one frame of room in each lane.
async fn ask(server: &FakeOpenAi, reader: Option<SlowReader>) -> Answer {
    let llm = build::<OpenAiLlmConfig>(
        "llm",
        &format!(
            "base_url = \"{}\"\nmodel = \"m\"\napi_key_env = \"OPENAI_API_KEY\"\n{TIMEOUTS}",
            server.base_url
        ),
        &KEY,
    );
    let mut processors = vec![llm];
    if let Some(reader) = reader {
        processors.push(NamedProcessor::new("reader", reader));
    }
    let recorder = RecordingObserver::new();
    let mut params = PipelineParams::new("read-timeout", 16_000);
    params.clock = SessionClock::audio();
    params.observers.push(recorder.clone());
    params.queue_capacity = 1;
    let task = PipelineTask::new(processors, params);
    let handle = task.handle();
    let running = tokio::spawn(task.run());
    let messages = Arc::new(vec![Message::text(Role::User, "Hi")]);
    handle.queue_frame(FrameBody::LlmMessages(messages)).await;
    handle.end("end of test").await;
    running.await.unwrap();
    Answer {
        texts: texts(&recorder.frames_from("llm", Direction::Downstream)),
        errors: error_frames(&recorder.frames_from("llm", Direction::Upstream)),
        took: server.received("chat/completions")[0].at.elapsed(),
    }
}

/// `: OPENROUTER PROCESSING` and a blank line, once a second for `secs`
/// seconds: what OpenRouter sends while a model thinks.
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
async fn an_answer_streamed_for_longer_than_the_read_timeout_is_spoken_whole() {
    let server = FakeOpenAi::start().await;
    // Ten words two seconds apart: 20 s in all, never 5 s without one.
    let words = "one two three four five six seven eight nine ten.";
    let mut parts = Vec::new();
    for part in text_answer(words) {
        parts.push(part);
        parts.push(Part::Pause(Duration::from_secs(2)));
    }
    server.push_chat(Reply::Sse(parts));
    let answer = ask(&server, None).await;
    assert!(answer.errors.is_empty(), "{:?}", answer.errors);
    assert_eq!(answer.texts.concat(), words);
    assert!(
        answer.took >= Duration::from_secs(18),
        "the answer took {:?}",
        answer.took
    );
}

#[tokio::test(start_paused = true)]
async fn keep_alives_after_a_role_only_chunk_hold_a_thinking_model_open() {
    let server = FakeOpenAi::start().await;
    // The role first, then 30 s of thinking said only with comments: the
    // role is not the answer, so the comments still count.
    let mut parts = vec![Part::Data(role_chunk())];
    parts.extend(processing_comments(30));
    parts.extend(text_answer("Thought it through."));
    server.push_chat(Reply::Sse(parts));
    let answer = ask(&server, None).await;
    assert!(answer.errors.is_empty(), "{:?}", answer.errors);
    assert_eq!(answer.texts.concat(), "Thought it through.");
    assert!(
        answer.took >= Duration::from_secs(30),
        "the answer took {:?}",
        answer.took
    );
}

#[tokio::test(start_paused = true)]
async fn keep_alives_after_a_role_only_chunk_end_the_turn_at_the_thinking_limit() {
    let server = FakeOpenAi::start().await;
    let mut parts = vec![Part::Data(role_chunk())];
    parts.extend(processing_comments(300));
    parts.extend(text_answer("Far too late."));
    server.push_chat(Reply::Sse(parts));
    let answer = ask(&server, None).await;
    assert_eq!(answer.errors.len(), 1, "{:?}", answer.errors);
    assert_eq!(answer.errors[0].message, "no event within 120s");
    assert!(answer.texts.is_empty());
    assert!(
        answer.took >= Duration::from_secs(120) && answer.took < Duration::from_secs(126),
        "the turn ended after {:?}",
        answer.took
    );
}

#[tokio::test(start_paused = true)]
async fn a_stall_once_the_content_has_begun_fails_at_the_read_timeout() {
    let server = FakeOpenAi::start().await;
    // Three seconds of thinking, a word, then nothing for ever.
    let mut parts = vec![Part::Data(role_chunk())];
    parts.extend(processing_comments(3));
    parts.push(Part::Data(text_chunk("Well")));
    parts.push(Part::Stall);
    server.push_chat(Reply::Sse(parts));
    let answer = ask(&server, None).await;
    assert_eq!(answer.errors.len(), 1, "{:?}", answer.errors);
    assert_eq!(answer.errors[0].message, "no event within 5s");
    assert_eq!(answer.texts.concat(), "Well");
    assert!(
        answer.took >= Duration::from_secs(8) && answer.took < Duration::from_secs(9),
        "the turn ended after {:?}",
        answer.took
    );
}

#[tokio::test(start_paused = true)]
async fn a_push_held_up_downstream_does_not_use_up_the_read_timeout() {
    let server = FakeOpenAi::start().await;
    // Three words at once, then the rest 6 s later. The reader takes 4 s a
    // word and its lane holds one: the third word's push waits until 4 s,
    // so the wait on the server is 2 s, though the word came 6 s before
    // the next.
    let mut parts: Vec<Part> = ["One ", "two ", "three "]
        .into_iter()
        .map(|word| Part::Data(text_chunk(word)))
        .collect();
    parts.push(Part::Pause(Duration::from_secs(6)));
    parts.extend(text_answer("four."));
    server.push_chat(Reply::Sse(parts));
    let reader = SlowReader {
        hold: Duration::from_secs(4),
    };
    let answer = ask(&server, Some(reader)).await;
    assert!(answer.errors.is_empty(), "{:?}", answer.errors);
    assert_eq!(answer.texts.concat(), "One two three four.");
}
