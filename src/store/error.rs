//! What can go wrong talking to a store.

use std::path::PathBuf;
use std::time::Duration;

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Redis answered with an error or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer in time.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// The Redis URL is not valid.
    #[error("invalid redis url in ${var}: {source}")]
    Url {
        /// The variable that held it.
        var: String,
        /// Why.
        source: redis::RedisError,
    },
    /// A stored value is not what voxpipe wrote there.
    #[error("{key} holds an invalid value: {message}")]
    Corrupt {
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A value could not be encoded.
    #[error("cannot encode the value for {key}: {source}")]
    Encode {
        /// The key.
        key: String,
        /// Why.
        source: serde_json::Error,
    },
    /// The embedded store's file could not be read or written.
    #[error("embedded store file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The Redis named by `url_env` is not deployed as `[context] cluster`
    /// says (a cluster node used as a standalone Redis, or the reverse).
    #[error("the redis in ${var} {found}: {advice}")]
    Topology {
        /// The variable that named it.
        var: String,
        /// What the server is.
        found: String,
        /// What to change.
        advice: String,
    },
    /// Fewer replicas than `wait_replicas` acknowledged a write in time
    /// (one is down or catching up); the write is retried.
    #[error("{key}: {acked} of {wanted} replicas acknowledged the write in time")]
    NotReplicated {
        /// The key written.
        key: String,
        /// Replicas that acknowledged it.
        acked: u32,
        /// Replicas asked for.
        wanted: u32,
    },
    /// Another writer kept changing a key between read and write.
    #[error("{key} kept changing under the update; gave up after {attempts} attempts")]
    Contended {
        /// The key.
        key: String,
        /// Attempts made.
        attempts: u32,
    },
}

impl StoreError {
    /// True when trying again later may succeed (the store is down, slow or
    /// restarting); false when the same request will fail again.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Redis(err) => {
                !matches!(err.retry_method(), redis::RetryMethod::NoRetry) || passing_refusal(err)
            }
            StoreError::Timeout(_)
            | StoreError::Contended { .. }
            | StoreError::NotReplicated { .. } => true,
            StoreError::File { .. } => true,
            StoreError::Url { .. }
            | StoreError::Corrupt { .. }
            | StoreError::Encode { .. }
            | StoreError::Topology { .. } => false,
        }
    }

    pub(crate) fn corrupt(key: &str, message: impl std::fmt::Display) -> Self {
        StoreError::Corrupt {
            key: key.to_owned(),
            message: message.to_string(),
        }
    }
}

/// Server refusals that end when the server recovers or an operator acts,
/// though redis-rs, not knowing their codes, calls them final: writes
/// refused at `maxmemory` (`OOM`), while snapshots fail (`MISCONF`), or
/// while a script runs too long (`BUSY`). Giving up on them would drop a
/// call's turns the moment Redis fills up; retried, they are written once
/// it has room again. A cluster refuses for a while during a failover or
/// a resharding (`CLUSTERDOWN`, `TRYAGAIN`, `MASTERDOWN`): the same
/// request succeeds once a replica is promoted or the slot has moved.
const PASSING_REFUSALS: [&str; 6] = [
    "OOM",
    "MISCONF",
    "BUSY",
    "CLUSTERDOWN",
    "TRYAGAIN",
    "MASTERDOWN",
];

fn passing_refusal(err: &redis::RedisError) -> bool {
    // A pipeline's or transaction's errors are only reachable by value.
    err.clone().into_server_errors().is_some_and(|errors| {
        errors
            .iter()
            .any(|(_, error)| PASSING_REFUSALS.contains(&error.code()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_that_pass_are_transient_and_errors_in_the_request_are_not() {
        let refusal =
            |code: &str| StoreError::Redis(redis::make_extension_error(code.to_owned(), None));
        for code in PASSING_REFUSALS {
            assert!(refusal(code).is_transient(), "{code}");
        }
        assert!(!refusal("WRONGTYPE").is_transient());
        assert!(!StoreError::corrupt("k", "bad").is_transient());
    }
}
