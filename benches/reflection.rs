//! What reflection costs a voice answer: the time from the LLM response
//! starting to its first text (when the TTS could start speaking), without
//! and with a reviewer, against the fake OpenAI-compatible server playing
//! a model with a realistic pace: 300 ms to the first token, then a word
//! every 20 ms (a 25-word answer), and a reviewer at the same pace (its
//! verdict is 5 chunks).
//!
//! Without reflection the first words go out as they stream (about the
//! time to first token). With it, nothing is pushed until the whole draft
//! is written and reviewed, so an approved first draft costs about the
//! draft's generation plus the review; each rejection costs that again.
//!
//! Run with: `cargo bench --bench reflection` (prints the median of
//! `RUNS` answers per case, in milliseconds).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use support::fake::openai::{FakeOpenAi, Part, Reply, finish_chunk, text_chunk};
use support::session::build;
use voxpipe::conversation::{Message, Role};
use voxpipe::frame::FrameBody;
use voxpipe::pipeline::{Observer, PipelineParams, PipelineTask, PushEvent};
use voxpipe::services::llm::OpenAiLlmConfig;

const RUNS: usize = 5;
const FIRST_TOKEN: Duration = Duration::from_millis(300);
const PER_CHUNK: Duration = Duration::from_millis(20);

/// A streamed answer of `chunks` pieces at the model's pace.
fn paced(pieces: &[String]) -> Reply {
    let mut parts = vec![Part::Pause(FIRST_TOKEN)];
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            parts.push(Part::Pause(PER_CHUNK));
        }
        parts.push(Part::Data(text_chunk(piece)));
    }
    parts.push(Part::Data(finish_chunk("stop")));
    parts.push(Part::Data("[DONE]".into()));
    Reply::Sse(parts)
}

fn answer() -> Reply {
    let words: Vec<String> = (0..25).map(|i| format!("word{i} ")).collect();
    paced(&words)
}

fn verdict(approved: bool) -> Reply {
    let text =
        json!({"approved": approved, "critique": if approved { "" } else { "Wrong price." }})
            .to_string();
    let size = text.len().div_ceil(5);
    let pieces: Vec<String> = text
        .as_bytes()
        .chunks(size)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    paced(&pieces)
}

/// When the response started and its first text came.
#[derive(Default)]
struct FirstText(Mutex<(Option<Instant>, Option<Instant>)>);

impl Observer for FirstText {
    fn on_push(&self, event: &PushEvent<'_>) {
        let mut times = self.0.lock().unwrap();
        match event.frame.body {
            FrameBody::LlmResponseStart if times.0.is_none() => times.0 = Some(Instant::now()),
            FrameBody::LlmText(_) if times.1.is_none() => times.1 = Some(Instant::now()),
            _ => {}
        }
    }
}

/// Milliseconds from response start to first text for one answer.
async fn first_text_ms(reflection: &str, reviews: &[bool]) -> f64 {
    let openai = FakeOpenAi::start().await;
    openai.chat_fallback_for("agent", answer());
    openai.push_chats_for("reviewer", reviews.iter().map(|a| verdict(*a)));
    let llm = build::<OpenAiLlmConfig>(
        "llm",
        &format!(
            "base_url = \"{}\"\nmodel = \"agent\"\n{reflection}",
            openai.base_url
        ),
        &[],
    );
    let observer = Arc::new(FirstText::default());
    let mut params = PipelineParams::new("bench", 16_000);
    params.observers.push(observer.clone());
    let task = PipelineTask::new(vec![llm], params);
    let handle = task.handle();
    let running = tokio::spawn(task.run());
    handle
        .queue_frame(FrameBody::LlmMessages(Arc::new(vec![Message::text(
            Role::User,
            "How much is the toaster?",
        )])))
        .await;
    handle.end("done").await;
    running.await.unwrap();
    let (start, first) = *observer.0.lock().unwrap();
    (first.unwrap() - start.unwrap()).as_secs_f64() * 1000.0
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let reflect = "[reflection]\nmodel = \"reviewer\"\nmax_rounds = 2\n";
    let cases: [(&str, &str, &[bool]); 3] = [
        ("no reflection", "", &[]),
        ("reflection, first draft approved", reflect, &[true]),
        ("reflection, one rejection", reflect, &[false, true]),
    ];
    for (name, reflection, reviews) in cases {
        let runs: Vec<f64> = (0..RUNS)
            .map(|_| runtime.block_on(first_text_ms(reflection, reviews)))
            .collect();
        println!(
            "{name:36} first text after {:7.1} ms (median of {RUNS})",
            median(runs)
        );
    }
}
