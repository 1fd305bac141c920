//! The turn spool: what a session's writer could not write to the context
//! store, kept on local disk until the store is back.
//!
//! # Why
//!
//! A writer keeps a call's steps in memory while the store is down and
//! retries them (`writer.rs`). That covers an outage shorter than
//! `flush_timeout` after the call; a longer one, or the process stopping
//! during it, used to lose the turns already spoken. Now a writer whose
//! store fails keeps its pending steps in a file here as well, rewritten
//! whenever they change, and removes it once they are written. A writer
//! that gives up leaves the file, and the replayer
//! ([`TurnSpool::run`], part of the runtime's background work) writes it
//! when the store answers again, in this process or the next one.
//!
//! # Layout
//!
//! `{dir}/{owner}/{call}.json`, one document per call (a [`SpooledCall`]),
//! replaced atomically (written to `.tmp`, synced, renamed). `owner` is a
//! random name per process, and `{dir}/{owner}/.lock` is locked (`flock`)
//! for as long as that process runs: a replayer takes another owner's
//! files only when it can lock its `.lock`, that is, once its process has
//! stopped; its own only once their writer has let them go. Files are
//! readable by their owner only: they hold the conversation's words and
//! the call's phone numbers, as the store does.
//!
//! Every step is idempotent in the store (a turn goes only at its index, a
//! created call is not created twice, after-call hooks queue idempotently),
//! so a file replayed after its writer wrote part of it writes nothing
//! twice. A turn's index is fixed when it is spooled (as the writer would
//! give it); a turn already stored at that index counts as written.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::writer::AfterCall;
use crate::store::{
    Appended, CallChange, CallRecord, CallRecording, Interaction, Store, StoreError,
};

/// The file format's version, written in every file.
pub(crate) const VERSION: u32 = 1;

/// The owner lock's name inside an owner directory.
const LOCK: &str = ".lock";

/// Where files that cannot be read are moved, inside the spool directory.
const UNREADABLE: &str = "unreadable";

/// One call's steps not yet written, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpooledCall {
    /// [`VERSION`].
    pub version: u32,
    /// The call.
    pub call_id: String,
    /// What is left to write, in the writer's order.
    pub steps: Vec<SpooledStep>,
}

/// One step of a [`SpooledCall`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum SpooledStep {
    /// Create the call (pending), unless it exists.
    Create {
        /// The record.
        record: Box<CallRecord>,
    },
    /// The pipeline started.
    Started {
        /// When (Unix ms).
        at_ms: u64,
    },
    /// The recording was finished (or failed).
    Recorded {
        /// What was recorded.
        recording: CallRecording,
    },
    /// The session ended.
    Ended {
        /// Why.
        reason: String,
        /// When (Unix ms).
        at_ms: u64,
    },
    /// A turn, at its index.
    Turn {
        /// The turn as stored.
        turn: Interaction,
    },
    /// Run the runtime's after-call hooks (the evaluation job, the
    /// webhook).
    AfterCall,
}

impl SpooledStep {
    /// The step for a writer's call change; `None` for changes a writer
    /// never makes.
    pub(crate) fn from_change(change: &CallChange) -> Option<Self> {
        match change {
            CallChange::Started { at_ms } => Some(SpooledStep::Started { at_ms: *at_ms }),
            CallChange::Recorded(recording) => Some(SpooledStep::Recorded {
                recording: recording.clone(),
            }),
            CallChange::Ended { reason, at_ms } => Some(SpooledStep::Ended {
                reason: reason.clone(),
                at_ms: *at_ms,
            }),
            _ => None,
        }
    }
}

/// A failure of the spool's own files.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file or directory could not be written or read.
    #[error("turn spool {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The spool could not be encoded (never expected).
    #[error("turn spool: cannot encode call: {0}")]
    Encode(#[from] serde_json::Error),
    /// The blocking task writing the file did not finish.
    #[error("turn spool: the writing task failed")]
    Task,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What one pass of the replayer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Calls written in full and removed from the spool.
    pub written: usize,
    /// Calls left for the next pass (the store is still failing).
    pub waiting: usize,
    /// Files that could not be read, moved to `unreadable/`.
    pub unreadable: usize,
}

/// A spool directory, shared by the writers and the replayer of one
/// process. Nothing is created on disk until a writer first needs it.
#[derive(Debug)]
pub struct TurnSpool {
    dir: PathBuf,
    owner: String,
    /// This process's lock on `{dir}/{owner}/.lock`, once taken.
    lock: Mutex<Option<File>>,
    /// Calls whose writer still owns its file.
    live: Mutex<HashSet<String>>,
}

impl TurnSpool {
    /// A spool in `dir` (created when first needed).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        TurnSpool {
            dir: dir.into(),
            owner: format!("{:016x}", crate::random::random_u64()),
            lock: Mutex::new(None),
            live: Mutex::new(HashSet::new()),
        }
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn own_dir(&self) -> PathBuf {
        self.dir.join(&self.owner)
    }

    /// Replaces the file of `call` with its steps, marking it owned by its
    /// writer. Blocking: call it off the runtime's workers.
    pub fn keep(&self, call: &SpooledCall) -> Result<(), SpoolError> {
        let dir = self.own_dir();
        self.take_own_lock(&dir)?;
        let path = dir.join(file_name(&call.call_id));
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec(call)?;
        let mut file = private_file(&tmp).map_err(io_error(&tmp))?;
        file.write_all(&body).map_err(io_error(&tmp))?;
        file.sync_all().map_err(io_error(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_error(&path))?;
        lock(&self.live).insert(call.call_id.clone());
        Ok(())
    }

    /// Removes the file of `call_id`: everything in it is written.
    pub fn discard(&self, call_id: &str) {
        let path = self.own_dir().join(file_name(call_id));
        if let Err(err) = std::fs::remove_file(&path)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(call_id, error = %err, "cannot remove the call's spool file; it will be replayed (harmlessly)");
        }
        lock(&self.live).remove(call_id);
    }

    /// The writer of `call_id` has stopped: its file, if any, is the
    /// replayer's now.
    pub fn release(&self, call_id: &str) {
        lock(&self.live).remove(call_id);
    }

    fn take_own_lock(&self, dir: &Path) -> Result<(), SpoolError> {
        let mut held = lock(&self.lock);
        if held.is_none() {
            std::fs::create_dir_all(dir).map_err(io_error(dir))?;
            let path = dir.join(LOCK);
            let file = private_file(&path).map_err(io_error(&path))?;
            // A fresh random name: no one else holds it.
            file.try_lock().map_err(|err| SpoolError::Io {
                path: path.clone(),
                source: match err {
                    std::fs::TryLockError::Error(err) => err,
                    std::fs::TryLockError::WouldBlock => std::io::ErrorKind::WouldBlock.into(),
                },
            })?;
            *held = Some(file);
        }
        Ok(())
    }

    /// One pass: writes every spooled call that no live writer owns into
    /// `store`, running `hooks` for calls that ended.
    pub async fn replay(&self, store: &dyn Store, hooks: &[Arc<dyn AfterCall>]) -> ReplayReport {
        let mut report = ReplayReport::default();
        let owners = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter(|e| e.file_name() != UNREADABLE)
                .map(|e| e.path())
                .collect::<Vec<_>>(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return report,
            Err(err) => {
                tracing::warn!(dir = %self.dir.display(), error = %err, "cannot read the turn spool");
                return report;
            }
        };
        for owner in owners {
            let ours = owner.file_name().is_some_and(|n| *n == *self.owner);
            // Another process's files, only once it has stopped: its lock
            // is held while this one works on them.
            let _lock = if ours {
                None
            } else {
                match stopped_owner(&owner) {
                    Some(lock) => Some(lock),
                    None => continue,
                }
            };
            let mut left = 0;
            for path in spooled_files(&owner) {
                match self.replay_file(&path, ours, store, hooks).await {
                    Replayed::Written => report.written += 1,
                    Replayed::Waiting => {
                        report.waiting += 1;
                        left += 1;
                    }
                    Replayed::Live => left += 1,
                    Replayed::Unreadable => report.unreadable += 1,
                }
            }
            if !ours && left == 0 {
                // Everything of a stopped process is written: its
                // directory goes (the lock file last, still held).
                let _ = std::fs::remove_dir_all(&owner);
            }
        }
        report
    }

    async fn replay_file(
        &self,
        path: &Path,
        ours: bool,
        store: &dyn Store,
        hooks: &[Arc<dyn AfterCall>],
    ) -> Replayed {
        let read = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                serde_json::from_slice::<SpooledCall>(&bytes).map_err(|e| e.to_string())
            })
            .and_then(|call| {
                if call.version == VERSION {
                    Ok(call)
                } else {
                    Err(format!(
                        "version {} (this build reads {VERSION})",
                        call.version
                    ))
                }
            });
        let mut call = match read {
            Ok(call) => call,
            Err(why) => {
                self.set_aside(path, &why);
                return Replayed::Unreadable;
            }
        };
        if ours && lock(&self.live).contains(&call.call_id) {
            return Replayed::Live;
        }
        let call_id = call.call_id.clone();
        let total = call.steps.len();
        let mut done = 0;
        for step in &call.steps {
            match replay_step(store, &call_id, step, hooks).await {
                Ok(()) => done += 1,
                Err(err) if err.is_transient() => {
                    if done > 0 {
                        call.steps.drain(..done);
                        if let Err(err) = rewrite(path, &call) {
                            tracing::warn!(call_id, error = %err, "cannot shorten the call's spool file; its written steps will be replayed (harmlessly)");
                        }
                    }
                    tracing::debug!(call_id, error = %err, left = total - done, "context store still failing; the spooled call waits");
                    return Replayed::Waiting;
                }
                Err(err) => {
                    tracing::error!(call_id, step = step.kind(), error = %err, "the store refused a spooled step; skipped");
                    done += 1;
                }
            }
        }
        if let Err(err) = std::fs::remove_file(path) {
            tracing::warn!(call_id, error = %err, "cannot remove a replayed spool file; it will be replayed again (harmlessly)");
        }
        tracing::info!(
            call_id,
            steps = total,
            "spooled call written to the context store"
        );
        Replayed::Written
    }

    fn set_aside(&self, path: &Path, why: &str) {
        let aside = self.dir.join(UNREADABLE);
        let moved = std::fs::create_dir_all(&aside).and_then(|()| {
            let name = path
                .file_name()
                .map_or_else(|| "unnamed".into(), |n| n.to_os_string());
            std::fs::rename(path, aside.join(name))
        });
        match moved {
            Ok(()) => {
                tracing::error!(file = %path.display(), reason = why, "unreadable turn spool file moved to {UNREADABLE}/");
            }
            Err(err) => {
                tracing::error!(file = %path.display(), reason = why, error = %err, "unreadable turn spool file left in place");
            }
        }
    }

    /// Replays every `period` (and at once) until `shutdown` resolves.
    pub async fn run(
        &self,
        store: &dyn Store,
        hooks: &[Arc<dyn AfterCall>],
        period: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            let report = self.replay(store, hooks).await;
            if report.written > 0 || report.waiting > 0 {
                tracing::info!(
                    written = report.written,
                    waiting = report.waiting,
                    "turn spool replayed"
                );
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(period) => {}
            }
        }
    }
}

impl SpooledStep {
    fn kind(&self) -> &'static str {
        match self {
            SpooledStep::Create { .. } => "create",
            SpooledStep::Started { .. } => "started",
            SpooledStep::Recorded { .. } => "recorded",
            SpooledStep::Ended { .. } => "ended",
            SpooledStep::Turn { .. } => "turn",
            SpooledStep::AfterCall => "after_call",
        }
    }
}

enum Replayed {
    Written,
    Waiting,
    Live,
    Unreadable,
}

async fn replay_step(
    store: &dyn Store,
    call_id: &str,
    step: &SpooledStep,
    hooks: &[Arc<dyn AfterCall>],
) -> Result<(), StoreError> {
    let change = match step {
        SpooledStep::Create { record } => {
            store.create_call(record).await?;
            return Ok(());
        }
        SpooledStep::Turn { turn } => {
            if let Appended::AddedAfterGap { stored } = store.append_turn(call_id, turn).await? {
                tracing::error!(
                    call_id,
                    index = turn.index,
                    stored,
                    "transcript lost turns before a spooled one (deleted, expired, or Redis restarted empty); appended at {stored}"
                );
            }
            return Ok(());
        }
        SpooledStep::AfterCall => {
            for hook in hooks {
                hook.queue(store, call_id).await?;
            }
            return Ok(());
        }
        SpooledStep::Started { at_ms } => CallChange::Started { at_ms: *at_ms },
        SpooledStep::Recorded { recording } => CallChange::Recorded(recording.clone()),
        SpooledStep::Ended { reason, at_ms } => CallChange::Ended {
            reason: reason.clone(),
            at_ms: *at_ms,
        },
    };
    if store.update_call(call_id, &change).await?.is_none() {
        tracing::warn!(
            call_id,
            step = step.kind(),
            "call state missing (expired or deleted); spooled status not applied"
        );
    }
    Ok(())
}

/// The files of an owner directory, oldest name first.
fn spooled_files(owner: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(owner)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The lock of a stopped owner, held; `None` while its process runs.
fn stopped_owner(owner: &Path) -> Option<File> {
    let path = owner.join(LOCK);
    match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(file) => file.try_lock().ok().map(|()| file),
        // No lock file: a directory never locked (its process stopped
        // between creating it and locking it); take it.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            private_file(&path).ok().filter(|f| f.try_lock().is_ok())
        }
        Err(_) => None,
    }
}

fn rewrite(path: &Path, call: &SpooledCall) -> Result<(), SpoolError> {
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec(call)?;
    let mut file = private_file(&tmp).map_err(io_error(&tmp))?;
    file.write_all(&body).map_err(io_error(&tmp))?;
    file.sync_all().map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))
}

/// Opens `path` for writing (created, truncated), readable by its owner only.
fn private_file(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// A file name for `call_id`: the id itself when it is plain, else its
/// SHA-256 in hex (ids come from transports and callers; the file holds the
/// id itself).
fn file_name(call_id: &str) -> String {
    let plain = !call_id.is_empty()
        && call_id.len() <= 128
        && !call_id.starts_with('.')
        && call_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if plain {
        format!("{call_id}.json")
    } else {
        let digest = ring::digest::digest(&ring::digest::SHA256, call_id.as_bytes());
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("x-{hex}.json")
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::conversation::Role;
    use crate::store::{CallStatus, CallStore, MemoryStore, RedisStore, Segment, StoreSettings};

    #[derive(Debug, Default)]
    struct CountingHook(AtomicUsize);

    #[async_trait]
    impl AfterCall for CountingHook {
        async fn queue(&self, _store: &dyn Store, _call_id: &str) -> Result<(), StoreError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn interaction(index: u64, text: &str) -> Interaction {
        Interaction {
            index,
            role: if index.is_multiple_of(2) {
                Role::User
            } else {
                Role::Assistant
            },
            text: text.to_owned(),
            timestamp: "2026-12-07T12:00:00Z".to_owned(),
            session_ms: index * 1000,
            interrupted: false,
            tool_calls: Vec::new(),
            latency_ms: None,
            agent: None,
            reflection: None,
        }
    }

    fn whole_call(call_id: &str) -> SpooledCall {
        let record =
            CallRecord::pending(call_id, "twilio", Segment::default(), Default::default(), 1);
        SpooledCall {
            version: VERSION,
            call_id: call_id.to_owned(),
            steps: vec![
                SpooledStep::Create {
                    record: Box::new(record),
                },
                SpooledStep::Started { at_ms: 2 },
                SpooledStep::Turn {
                    turn: interaction(0, "hello"),
                },
                SpooledStep::Turn {
                    turn: interaction(1, "hi, how can I help?"),
                },
                SpooledStep::Ended {
                    reason: "hangup".to_owned(),
                    at_ms: 3,
                },
                SpooledStep::AfterCall,
            ],
        }
    }

    fn hooks() -> (Arc<CountingHook>, Vec<Arc<dyn AfterCall>>) {
        let hook = Arc::new(CountingHook::default());
        let hooks = vec![Arc::clone(&hook) as Arc<dyn AfterCall>];
        (hook, hooks)
    }

    async fn texts(store: &dyn Store, call_id: &str) -> Vec<String> {
        let turns = store.turns(call_id).await.unwrap();
        turns.into_iter().map(|t| t.text).collect()
    }

    #[tokio::test]
    async fn a_call_is_replayed_only_once_its_writer_lets_it_go() {
        let dir = tempfile::tempdir().unwrap();
        let spool = TurnSpool::new(dir.path());
        let store = MemoryStore::new(StoreSettings::default());
        let (hook, hooks) = hooks();
        spool.keep(&whole_call("call-1")).unwrap();

        let live = spool.replay(&store, &hooks).await;
        assert_eq!(live, ReplayReport::default());
        assert!(store.call("call-1").await.unwrap().is_none());

        spool.release("call-1");
        let report = spool.replay(&store, &hooks).await;
        assert_eq!(report.written, 1);
        let call = store.call("call-1").await.unwrap().unwrap();
        assert_eq!(call.status, CallStatus::Completed);
        assert_eq!(
            texts(&store, "call-1").await,
            ["hello", "hi, how can I help?"]
        );
        assert_eq!(hook.0.load(Ordering::SeqCst), 1);
        // The file is gone: a second pass writes nothing.
        assert_eq!(spool.replay(&store, &hooks).await, ReplayReport::default());
        assert_eq!(hook.0.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_replay_after_part_was_written_writes_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let spool = TurnSpool::new(dir.path());
        let store = MemoryStore::new(StoreSettings::default());
        let call = whole_call("call-2");
        // The writer got the call and its first turn in before it stopped.
        let SpooledStep::Create { record } = &call.steps[0] else {
            unreachable!()
        };
        store.create_call(record).await.unwrap();
        store
            .append_turn("call-2", &interaction(0, "hello"))
            .await
            .unwrap();
        spool.keep(&call).unwrap();
        spool.release("call-2");
        let (_, hooks) = hooks();
        assert_eq!(spool.replay(&store, &hooks).await.written, 1);
        assert_eq!(
            texts(&store, "call-2").await,
            ["hello", "hi, how can I help?"]
        );
    }

    #[tokio::test]
    async fn a_failing_store_leaves_the_call_for_the_next_pass() {
        let dir = tempfile::tempdir().unwrap();
        let spool = TurnSpool::new(dir.path());
        spool.keep(&whole_call("call-3")).unwrap();
        spool.release("call-3");
        let (hook, hooks) = hooks();
        // Nothing listens on port 1: every operation fails, transiently.
        let down = RedisStore::connect(
            "redis://127.0.0.1:1",
            "REDIS_URL",
            StoreSettings {
                op_timeout: Duration::from_millis(500),
                ..StoreSettings::default()
            },
        )
        .unwrap();
        let report = spool.replay(&down, &hooks).await;
        assert_eq!(report.waiting, 1);
        assert_eq!(report.written, 0);

        let store = MemoryStore::new(StoreSettings::default());
        assert_eq!(spool.replay(&store, &hooks).await.written, 1);
        assert_eq!(texts(&store, "call-3").await.len(), 2);
        assert_eq!(hook.0.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn another_process_files_wait_until_it_has_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let store = MemoryStore::new(StoreSettings::default());
        let (_, hooks) = hooks();
        let other = TurnSpool::new(dir.path());
        other.keep(&whole_call("call-4")).unwrap();
        other.release("call-4");
        let this = TurnSpool::new(dir.path());
        // The other process still runs (holds its lock).
        assert_eq!(this.replay(&store, &hooks).await, ReplayReport::default());
        assert!(store.call("call-4").await.unwrap().is_none());

        drop(other);
        assert_eq!(this.replay(&store, &hooks).await.written, 1);
        assert_eq!(texts(&store, "call-4").await.len(), 2);
        // Its directory went with its last file.
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[tokio::test]
    async fn an_unreadable_file_is_set_aside_and_the_rest_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let spool = TurnSpool::new(dir.path());
        spool.keep(&whole_call("call-5")).unwrap();
        spool.release("call-5");
        let own = dir.path().join(&spool.owner);
        std::fs::write(own.join("broken.json"), b"{\"version\":1,\"call_").unwrap();
        let store = MemoryStore::new(StoreSettings::default());
        let (_, hooks) = hooks();
        let report = spool.replay(&store, &hooks).await;
        assert_eq!((report.written, report.unreadable), (1, 1));
        assert!(dir.path().join(UNREADABLE).join("broken.json").exists());
    }

    #[test]
    fn odd_call_ids_get_safe_distinct_file_names() {
        assert_eq!(file_name("CA0123-abc_9"), "CA0123-abc_9.json");
        for odd in ["../../etc/passwd", "a/b", ".hidden", "", "ä"] {
            let name = file_name(odd);
            assert!(
                name.starts_with("x-") && !name.contains('/'),
                "{odd} -> {name}"
            );
        }
        let long = "a".repeat(200);
        assert_ne!(file_name(&long), file_name(&format!("{long}b")));
    }

    #[cfg(unix)]
    #[test]
    fn files_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let spool = TurnSpool::new(dir.path());
        spool.keep(&whole_call("call-6")).unwrap();
        let path = dir.path().join(&spool.owner).join("call-6.json");
        let mode = std::fs::metadata(path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
