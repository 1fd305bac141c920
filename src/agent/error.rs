//! [`AgentError`]: why the agent runtime could not be set up.

use crate::objects::ObjectsError;
use crate::pipeline::BuildError;
use crate::services::ServiceError;
use crate::store::{MissingSalt, StoreError};

/// The agent runtime could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// A variable a `*_env` key names is not set.
    #[error("environment variable {var} (named by `{key}`) is not set")]
    MissingEnv {
        /// The key, e.g. `context.url_env`.
        key: String,
        /// The variable.
        var: String,
    },
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `[optimiser]` without `[evaluator]`: nothing would judge calls.
    #[error("[optimiser] needs an enabled [evaluator]: it acts on failed verdicts")]
    OptimiserWithoutJudge,
    /// A section's value cannot work (e.g. a `connection` timeout).
    #[error("[{section}] {source}")]
    Invalid {
        /// The section, e.g. `evaluator`.
        section: &'static str,
        /// Why.
        source: BuildError,
    },
    /// The HTTP client could not be set up.
    #[error(transparent)]
    Http(#[from] ServiceError),
    /// `[storage]` could not be set up.
    #[error("[storage] {0}")]
    Storage(#[from] ObjectsError),
}

impl From<MissingSalt> for AgentError {
    fn from(err: MissingSalt) -> Self {
        AgentError::MissingEnv {
            key: err.key.to_owned(),
            var: err.var,
        }
    }
}
