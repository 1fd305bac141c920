//! The prompt optimiser: the learning loop's write side for prompts.
//!
//! When a call is judged a failure (or after `failures_before` failures in
//! its segment) the [`OptimiserStep`], a post-call step of the evaluation
//! job, asks a writer model for an improved prompt for the segment's most
//! specific prompt key, from the current prompt, the failed transcript and
//! the judge's reason. The candidate is scored on the test cases
//! (`test_cases:list`): the agent's model answers each objection under it,
//! a judge scores the answer against the target; the current prompt is
//! scored on the same cases. It is deployed only when its mean reaches
//! the threshold and is above the current prompt's (a tie keeps the
//! current), by compare-and-set
//! on the version it was evaluated against; every deployment is a version
//! in the key's history, and every optimisation leaves a trace.

mod ask;
mod candidate;
mod config;
mod decision;
mod metrics;
mod scoring;
mod step;
mod versions;

pub use candidate::WRITER_PROMPT;
pub use config::OptimiserSection;
pub use decision::{Verdict, decide};
pub use metrics::OptimiserMetrics;
pub use scoring::CASE_JUDGE_PROMPT;
pub use step::{OptimiserModels, OptimiserStep, mean_of};
pub use versions::{VersionError, rollback, set_prompt_version};
