//! A session: one call, one browser tab or one file run through a pipeline.
//!
//! [`Session`] builds a pipeline's processors for one session, puts the
//! transport's two ends around them, and runs them; with a
//! [`SessionMemory`](crate::agent::SessionMemory), the call's stored state
//! and turns follow it; with `[recording]` on, a
//! [`Recorder`](crate::recording::Recorder) hears both ends of it and is
//! finished before the call is marked completed.

mod run;

pub use run::{Session, SessionError, SessionOptions, SessionReport, run_session};
