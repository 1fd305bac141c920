//! [`TextError`]: why a message could not be answered.

use super::queue::Overloaded;
use crate::pipeline::BuildError;
use crate::store::StoreError;

/// A message could not be answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TextError {
    /// The pipeline has no text path (no `user_context`).
    #[error("this pipeline has no text path: it needs a `user_context` (and an `llm`)")]
    NoTextPath,
    /// The message has no text and no media.
    #[error("the message is empty")]
    Empty,
    /// The message was not admitted: too many are in flight (see
    /// [`TextConversations::admit`](super::TextConversations::admit)).
    #[error(transparent)]
    Overloaded(#[from] Overloaded),
    /// The store did not answer (the conversation could not be found).
    #[error("context store: {0}")]
    Store(#[from] StoreError),
    /// A processor could not be built.
    #[error("processor `{processor}`: {source}")]
    Build {
        /// The processor's name.
        processor: String,
        /// Why.
        source: BuildError,
    },
}
