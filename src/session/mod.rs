//! A session: one call, one browser tab or one file run through a pipeline.

mod error;
mod run;
mod setup;

pub use error::BuildError;
pub use run::{Session, SessionError, SessionOptions, SessionReport, TransportEnds, run_session};
pub use setup::{EnvSource, SessionSetup, new_session_id};
