//! The session-end evaluator and the refinement loop.
//!
//! When a session ends its writer queues an [`EvalJob`] on the store's job
//! queue (a Redis Stream with a consumer group, or in process on the
//! embedded store). An [`EvaluationWorker`] takes it, the [`Evaluator`] asks
//! the judge ([`JudgeModel`], an OpenAI-compatible chat model) for a strict
//! JSON [`Verdict`], and records the outcome, the score and the tactics; the
//! winning tactics shape the next session's system prompt
//! ([`crate::agent::SessionPrompt`]).

mod config;
mod evaluator;
mod http;
mod job;
mod judge;
mod verdict;
mod worker;

pub use config::EvaluatorSection;
pub(crate) use config::{
    default_attempts, default_base_url, default_chat_model, whole_answer_connection, yes,
};
pub use evaluator::{EvalError, Evaluator, EvaluatorSettings};
pub use http::ApiEndpoint;
pub(crate) use http::{JsonClient, unavailable};
pub use job::{EvalJob, QueueEvaluation, queue_evaluation};
pub use judge::{DEFAULT_JUDGE_PROMPT, JudgeModel, OpenAiJudge, render_transcript};
pub(crate) use judge::{defused, quoted, transcript_closing, transcript_opening};
pub(crate) use verdict::strip_fence;
pub use verdict::{MalformedVerdict, Verdict};
pub use worker::{EvaluationWorker, MAX_DEFERRALS, WorkerSettings};
