//! Structured extraction: after a call, an OpenAI-compatible model fills
//! the JSON Schema of the pipeline's `[extraction]` from the transcript, and
//! the result goes into `call:{id}` (`extraction`), the webhook and, through
//! later post-call steps, object storage.
//!
//! # Design
//!
//! - **Durable by reuse.** [`ExtractionStep`] is a
//!   [`PostCallStep`](crate::agent::PostCallStep): it runs inside the
//!   evaluation job (`eval:jobs`), after the verdict and before the webhook,
//!   so it is at least once and taken over from a crashed worker without a
//!   queue of its own. With no `[evaluator]` the same job runs without a
//!   judge.
//! - **Idempotent.** A call whose record already holds an extraction is not
//!   asked again, and `CallChange::Extracted` keeps the first result stored
//!   (a compare-and-set in both backends), so two workers racing on one job
//!   store one result.
//! - **Checked, then asked again.** The answer is parsed and validated
//!   against the schema (the `jsonschema` crate, compiled once at load);
//!   an answer that is not JSON or breaks the schema is sent back with the
//!   validation errors, up to `max_attempts`, after which the call is
//!   recorded as `unextracted` with the reason. The model being down is not
//!   a bad answer: it returns `PostCallError::Unavailable`, the job stays
//!   pending and runs again; a job given up after its deliveries records
//!   `unextracted` too.
//! - **Structured outputs where served.** By default the request carries
//!   `response_format: {"type": "json_schema", "json_schema": {"name",
//!   "schema", "strict"}}`; a server that answers 400 to it (many
//!   OpenAI-compatible servers do) is asked in JSON mode (`json_object`,
//!   the schema in the prompt) from then on, for the life of the process.
//!
//! The stored shape (the webhook carries the same under `extraction`):
//!
//! ```json
//! {"status": "extracted", "data": {...}, "model": "gpt-4o-mini", "attempts": 1, "at": "..."}
//! {"status": "unextracted", "reason": "no schema-valid answer after 3 attempts (...)", "attempts": 3, "at": "..."}
//! ```

mod config;
mod schema;
mod step;

pub(crate) use crate::agent::eval::unavailable;
pub use config::{
    DEFAULT_EXTRACTION_PROMPT, ExtractionConfig, ExtractionSection, FormatKind, SectionProblem,
};
pub use schema::{ExtractionSchema, UnusableAnswer};
pub use step::{ExtractionModels, ExtractionStep};
