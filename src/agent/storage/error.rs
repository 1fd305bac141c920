//! Why storing a call's objects did not finish.

use crate::objects::{KeyError, ObjectsError};
use crate::store::StoreError;

/// Storing a call's objects did not finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallObjectsError {
    /// The context store failed: try again later.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Object storage failed or refused: try again later.
    #[error(transparent)]
    Objects(#[from] ObjectsError),
    /// The call's keys cannot be made (its id or start time): never will.
    #[error(transparent)]
    Key(#[from] KeyError),
}
