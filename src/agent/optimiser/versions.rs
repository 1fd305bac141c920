//! Operator changes to a prompt key, each a version like a deployment
//! (compare-and-set on the version read): setting a text, rolling back.

use crate::store::time::{rfc3339, unix_ms};
use crate::store::{Deployed, PromptKey, PromptVersion, Store, StoreError};

/// A version could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VersionError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No such version in the key's history.
    #[error("{key} has no version {version} (see `voxpipe prompts history {key}`)")]
    NoSuchVersion {
        /// The key.
        key: String,
        /// The version asked for.
        version: u64,
    },
    /// The key has no earlier version to go back to.
    #[error("{key} has no earlier version to roll back to")]
    NothingEarlier {
        /// The key.
        key: String,
    },
    /// Another change landed between read and write.
    #[error("{key} changed to version {current} meanwhile; nothing written, try again")]
    Conflict {
        /// The key.
        key: String,
        /// Its version now.
        current: u64,
    },
}

/// Deploys `entry` (its version set here) over version `expected`.
async fn deploy(
    store: &dyn Store,
    key: &PromptKey,
    expected: u64,
    mut entry: PromptVersion,
) -> Result<PromptVersion, VersionError> {
    entry.version = expected + 1;
    match store.deploy_prompt(key, expected, &entry, None).await? {
        Deployed::Deployed(_) => Ok(entry),
        Deployed::Conflict(current) => Err(VersionError::Conflict {
            key: key.to_string(),
            current,
        }),
    }
}

fn operator_version(prompt: String, reason: String) -> PromptVersion {
    let now = unix_ms();
    PromptVersion {
        version: 0,
        prompt,
        scores: None,
        deployed_at: rfc3339(now),
        deployed_at_ms: now,
        call_id: None,
        optimisation: None,
        reason,
    }
}

/// Sets `key` to `text` as a new version.
pub async fn set_prompt_version(
    store: &dyn Store,
    key: &PromptKey,
    text: &str,
) -> Result<PromptVersion, VersionError> {
    let state = store.prompt_state(key).await?;
    let entry = operator_version(text.to_owned(), "set by an operator".into());
    deploy(store, key, state.version, entry).await
}

/// Makes version `to` (the one before the live one by default) live again,
/// as a new version.
pub async fn rollback(
    store: &dyn Store,
    key: &PromptKey,
    to: Option<u64>,
) -> Result<PromptVersion, VersionError> {
    let state = store.prompt_state(key).await?;
    let target = match to {
        Some(version) => version,
        None => state
            .version
            .checked_sub(1)
            .ok_or_else(|| VersionError::NothingEarlier {
                key: key.to_string(),
            })?,
    };
    let history = store.prompt_history(key).await?;
    let earlier = history
        .iter()
        .rev()
        .find(|v| v.version == target)
        .ok_or_else(|| VersionError::NoSuchVersion {
            key: key.to_string(),
            version: target,
        })?;
    let mut entry = operator_version(
        earlier.prompt.clone(),
        format!("rollback to version {target}"),
    );
    entry.scores.clone_from(&earlier.scores);
    deploy(store, key, state.version, entry).await
}
