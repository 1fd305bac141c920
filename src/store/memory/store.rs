//! [`MemoryStore`]: the state, the lock, and how reads and writes reach the
//! keyspace and the log.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::keyspace::{Keyspace, Op};
use super::oplog::OpLog;
use crate::store::time::unix_ms;
use crate::store::{Store, StoreError, StoreSettings};

/// The embedded store: the same keys and semantics as the Redis store, in
/// this process's memory, optionally logged to a file (see the module docs
/// of [`super`]).
pub struct MemoryStore {
    pub(super) settings: StoreSettings,
    /// [`Store::identity`].
    identity: String,
    inner: Mutex<Inner>,
    pub(super) jobs_arrived: Notify,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("keys", &self.settings.keys)
            .finish_non_exhaustive()
    }
}

pub(super) struct Inner {
    pub(super) keyspace: Keyspace,
    log: Option<OpLog>,
    pub(super) jobs: PendingJobs,
    /// Writes since expired keys were last purged.
    writes: u32,
}

/// Writes between purges of expired keys.
const PURGE_EVERY: u32 = 1024;

/// Job deliveries: like a consumer group's pending-entries list, held in
/// memory only. After a restart every job still in the log is handed out
/// again (at least once; the evaluator's writes are idempotent).
#[derive(Debug, Default)]
pub(super) struct PendingJobs {
    /// Highest sequence number handed out.
    pub(super) delivered_up_to: u64,
    pub(super) pending: BTreeMap<u64, PendingJob>,
}

#[derive(Debug)]
pub(super) struct PendingJob {
    pub(super) consumer: String,
    pub(super) since: Instant,
    pub(super) deliveries: u64,
}

impl MemoryStore {
    /// A store in this process's memory only.
    pub fn new(settings: StoreSettings) -> Self {
        MemoryStore {
            // Only this process's: no other can hold its data.
            identity: format!("memory:process-{:016x}", crate::random::random_u64()),
            settings,
            inner: Mutex::new(Inner {
                keyspace: Keyspace::default(),
                log: None,
                jobs: PendingJobs::default(),
                writes: 0,
            }),
            jobs_arrived: Notify::new(),
        }
    }

    /// A store kept in the log file at `path` (created if missing),
    /// replayed now.
    pub fn open(path: &Path, settings: StoreSettings) -> Result<Self, StoreError> {
        let mut log = OpLog::open(path)?;
        let mut keyspace = Keyspace::default();
        let now = unix_ms();
        log.catch_up_shared(|op| keyspace.apply(op, now))?;
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        Ok(MemoryStore {
            identity: format!("memory:{}:{}", absolute.display(), settings.keys.prefix()),
            settings,
            inner: Mutex::new(Inner {
                keyspace,
                log: Some(log),
                jobs: PendingJobs::default(),
                writes: 0,
            }),
            jobs_arrived: Notify::new(),
        })
    }

    /// Milliseconds before `key` expires, if it exists and has a TTL.
    pub fn ttl_ms(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.read(|keyspace, now| keyspace.ttl_ms(key, now))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change is applied whole under the lock; a panic elsewhere
        // cannot leave the keyspace half-changed.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the latest state (after what other processes logged).
    pub(super) fn read<R>(&self, f: impl FnOnce(&Keyspace, u64) -> R) -> Result<R, StoreError> {
        self.with_inner(|inner, now| Ok(f(&inner.keyspace, now)))
    }

    /// Sets `key` for `ttl_ms` unless it is set: true when this set it
    /// (Redis's `SET NX PX`).
    pub(super) fn set_once(&self, key: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        self.set_once_as(key, "1", ttl_ms)
    }

    /// [`set_once`](Self::set_once) with `value` as the key's value.
    pub(super) fn set_once_as(
        &self,
        key: &str,
        value: &str,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        self.write(|ks, now| {
            if ks.string(key, now).is_some() {
                return (Vec::new(), false);
            }
            let set = Op::Set {
                key: key.to_owned(),
                value: value.to_owned(),
                expires_at_ms: Some(now.saturating_add(ttl_ms.max(1))),
            };
            (vec![set], true)
        })
    }

    /// Runs `f` on the latest state with the log locked, then applies and
    /// logs the ops it returns.
    pub(super) fn write<R>(
        &self,
        f: impl FnOnce(&Keyspace, u64) -> (Vec<Op>, R),
    ) -> Result<R, StoreError> {
        let mut inner = self.lock();
        let now = unix_ms();
        let Inner { keyspace, log, .. } = &mut *inner;
        let (ops, result) = match log {
            None => f(keyspace, now),
            Some(log) => log.locked(|log| {
                log.catch_up(|op| keyspace.apply(op, now))?;
                let (ops, result) = f(keyspace, now);
                log.append(&ops)?;
                Ok((ops, result))
            })?,
        };
        for op in ops {
            keyspace.apply(op, now);
        }
        inner.writes += 1;
        if inner.writes >= PURGE_EVERY {
            inner.writes = 0;
            inner.keyspace.purge_expired(now);
        }
        Ok(result)
    }

    /// Runs `f` on everything, after catching up with the log.
    pub(super) fn with_inner<R>(
        &self,
        f: impl FnOnce(&mut Inner, u64) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut inner = self.lock();
        let now = unix_ms();
        let Inner { keyspace, log, .. } = &mut *inner;
        if let Some(log) = log {
            log.catch_up_shared(|op| keyspace.apply(op, now))?;
        }
        f(&mut inner, now)
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn identity(&self) -> String {
        self.identity.clone()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|_, _| ())
    }
}
