//! Building processors per session: a [`ProcessorFactory`] is a validated
//! `[[processor]]` table; when a session starts it builds a fresh processor
//! for it, resolving `*_env` variables then, so that checking a pipeline
//! needs no secrets.

use std::fmt;
use std::sync::Arc;

use super::build_error::BuildError;
use super::processor::Processor;
use super::setup::SessionSetup;

/// Builds one processor per session from a validated config.
pub trait ProcessorFactory: Send + Sync + fmt::Debug {
    /// A fresh processor for the session `setup` describes.
    fn build(&self, setup: &SessionSetup) -> Result<Box<dyn Processor>, BuildError>;

    /// The shared conversation (a [`SessionResources`](super::SessionResources)
    /// name) the processor keeps, if it keeps one: code that resumes a
    /// conversation (a text channel) puts its history there first.
    fn conversation_name(&self) -> Option<&str> {
        None
    }

    /// Starts in the background, on the current runtime, what the process
    /// keeps for all its sessions (an MCP server's connection), so that
    /// the first session does not wait for it. A server calls it once, in
    /// the runtime its sessions run on; a problem is left for the
    /// sessions' builds to report.
    fn warm_up(&self, _setup: &SessionSetup) {}
}

/// One `[[processor]]` entry, validated.
#[derive(Clone)]
pub struct ProcessorEntry {
    /// Its `type`.
    pub type_name: String,
    /// Its unique name in the pipeline: `name` if given, else the type,
    /// with `#2`, `#3`… added to repeats.
    pub name: String,
    /// Builds it for each session.
    pub factory: Arc<dyn ProcessorFactory>,
}

impl fmt::Debug for ProcessorEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessorEntry")
            .field("type_name", &self.type_name)
            .field("name", &self.name)
            .field("factory", &self.factory)
            .finish()
    }
}
