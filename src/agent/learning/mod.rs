//! Learning from calls: objection/rebuttal pairs become skills
//! (`skill:{hash}`, found by `search_context`) and test cases
//! (`test_cases:list`, what prompt candidates are scored on).
//!
//! # Design
//!
//! - **Where it runs.** [`LearnFromCall`] is a
//!   [`PostCallStep`](crate::agent::PostCallStep) in the evaluation job
//!   (`eval:jobs`: at least once, taken over from a crashed worker), the
//!   last one, after extraction and object storage: a call judged a success
//!   (scored at least `min_score`) is read by an OpenAI-compatible model
//!   that lists the objections the agent answered well. Submitted
//!   transcripts ([`Submission`]: `voxpipe learn`, `POST /api/learn`) go
//!   through the same [`Learner`] at once.
//! - **Strict answers.** `{"pairs": [{"objection", "rebuttal", "target"}]}`,
//!   asked for with a `json_schema` response format, validated against the
//!   schema and for empty or overlong texts, sent back with what was wrong
//!   up to `max_attempts`; then the call is recorded as having taught
//!   nothing, with the reason, and the job is acknowledged.
//! - **Idempotent, in two records.** As soon as the pairs are known the
//!   test cases are written (deduplicated by objection) and the call
//!   records `learned: {"status": "waiting", "pairs": ...}`; the skills are
//!   then embedded (one request) and stored, and the call records
//!   `learned: {"status": "learned", "skills": [...]}`. A re-run finds the
//!   pairs on the call and does not ask the model again; a final record
//!   stays. Skills are keyed by the hash of the normalised objection
//!   ([`trigger_hash`](crate::store::trigger_hash): case and spacing do not
//!   matter), so the same objection replaces its skill.
//! - **An embedder that is down** is `PostCallError::Unavailable`: the job
//!   stays pending and runs again (counted as a deferral, not a crash).
//!   Because learning runs last, the verdict, tactics, extraction, stored
//!   objects and test cases are already recorded; the webhook waits, and
//!   carries what was learned.
//! - **Nothing to learn** (not a success, no customer turn, no objection,
//!   answers that never fit) is recorded too: `{"status": "nothing",
//!   "reason": ...}`.

mod answer;
mod config;
mod learner;
mod step;
mod submission;
mod transcript;

pub use answer::{PairsAnswer, pairs_schema};
pub use config::LearningSection;
pub use learner::{
    CallKind, DEFAULT_LEARNING_PROMPT, LOST_DEAL_PROMPT, LearnError, Learner, LearnerSettings,
    Lesson,
};
pub use step::LearnFromCall;
pub use submission::{DealOutcome, HandledBy, Submission, SubmissionReport};
pub use transcript::{
    Speaker, SpokenTurn, TranscriptError, has_customer_turn, parse_json_turns, parse_transcript,
    render, spoken_turns,
};
