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
//! `{dir}/owner-{16 hex}/{ms}-{16 hex}.json`: one directory per process
//! (its owner), one file per writer (a [`SpooledCall`]; two writers of
//! one call, a reconnect or a text conversation's next message, have a
//! file each), replaced atomically (written to `.tmp`, synced, renamed, the
//! directory synced). The owner directory is made under a temporary name
//! with its `.lock` already locked (`flock`), then renamed into place, and
//! the lock is held for as long as the process runs: a replayer takes
//! another owner's files only when it can lock that `.lock`, once its
//! process has stopped, and never touches a directory without one; its own
//! files only once their writer has let them go. Directories and files
//! are its owner's only: they hold the conversation's words and the call's
//! phone numbers, as the store does. Each file names the store it belongs
//! to (a hash of its address and key prefix), and a replayer writes only
//! files of its own store.
//!
//! # Replay
//!
//! Steps are written in the writer's order. Creating a call that exists,
//! a status change and the after-call hooks are idempotent in the store. A
//! turn carries the index its writer gave it or would have given it; the
//! store appends a turn only at its index, and a position already taken
//! is compared with the spooled turn: the same turn (role, text, times) is
//! already written, another one (the next message of a text conversation,
//! a reconnect, or an index the writer could only guess) sends the turn to
//! the end of the transcript, and the turns after it follow.

use std::collections::HashSet;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::after_call::AfterCall;
use crate::store::{
    Appended, CallChange, CallRecord, CallRecording, Interaction, Store, StoreError,
};

/// The file format's version, written in every file.
pub(crate) const VERSION: u32 = 1;

/// The owner lock's name inside an owner directory.
const LOCK: &str = ".lock";

/// Owner directories' names begin so.
const OWNER_PREFIX: &str = "owner-";

/// An owner directory being made (locked, not yet renamed into place).
const MAKING_PREFIX: &str = ".making-";

/// A written owner directory being removed.
const GONE_PREFIX: &str = ".gone-";

/// Where files that cannot be read are moved, inside the spool directory.
const UNREADABLE: &str = "unreadable";

/// One call's steps not yet written, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpooledCall {
    /// [`VERSION`].
    pub version: u32,
    /// The store the steps belong to ([`TurnSpool::new`]'s `store`).
    pub store: String,
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
    /// A turn, at its index (see the module's docs for a taken one).
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
    /// The blocking task writing the file did not finish in time, or failed.
    #[error("turn spool: the disk did not answer")]
    Stalled,
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
    /// Calls left for the next pass (the store or the disk failing).
    pub waiting: usize,
    /// Files that could not be read, moved to `unreadable/`.
    pub unreadable: usize,
}

/// One writer's file in the spool: its name is the writer's own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpoolEntry {
    name: String,
}

/// The directory this process owns, and its lock.
#[derive(Debug)]
struct OwnerDir {
    path: PathBuf,
    /// Held for the life of the process.
    _lock: File,
}

/// A spool directory, shared by the writers and the replayer of one
/// process. Nothing is created on disk until a writer first needs it.
#[derive(Debug)]
pub struct TurnSpool {
    dir: PathBuf,
    store: String,
    owner: Mutex<Option<OwnerDir>>,
    /// Files a writer still owns, or a replay is writing (full paths for
    /// the replayer's claims, names for writers' entries).
    live: Mutex<HashSet<String>>,
    /// Files of other stores already reported.
    foreign: Mutex<HashSet<PathBuf>>,
}

impl TurnSpool {
    /// A spool in `dir` (created when first needed) for the store named
    /// `store` (any text that tells stores apart: files of other stores in
    /// the same directory are left alone).
    pub fn new(dir: impl Into<PathBuf>, store: impl Into<String>) -> Self {
        TurnSpool {
            dir: dir.into(),
            store: store.into(),
            owner: Mutex::new(None),
            live: Mutex::new(HashSet::new()),
            foreign: Mutex::new(HashSet::new()),
        }
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new writer's file (not created yet), owned by it until
    /// [`Self::release`] or [`Self::discard`].
    pub fn entry(&self) -> SpoolEntry {
        let name = format!(
            "{:013}-{:016x}.json",
            crate::store::time::unix_ms(),
            crate::random::random_u64()
        );
        lock(&self.live).insert(name.clone());
        SpoolEntry { name }
    }

    /// Replaces `entry`'s file with `call`. Blocking: call it off the
    /// runtime's workers.
    pub fn keep(&self, entry: &SpoolEntry, call: &SpooledCall) -> Result<(), SpoolError> {
        let dir = self.own_dir()?;
        write_atomically(&dir.join(&entry.name), call)
    }

    /// Removes `entry`'s file: everything in it is written. Blocking.
    pub fn discard(&self, entry: &SpoolEntry) {
        let dir = lock(&self.owner).as_ref().map(|o| o.path.clone());
        if let Some(dir) = dir {
            let path = dir.join(&entry.name);
            if let Err(err) = std::fs::remove_file(&path)
                && err.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(file = %path.display(), error = %err, "cannot remove a written spool file; it will be replayed, finding its steps written");
            }
        }
        lock(&self.live).remove(&entry.name);
    }

    /// `entry`'s writer has stopped: its file, if any, is the replayer's
    /// now.
    pub fn release(&self, entry: &SpoolEntry) {
        lock(&self.live).remove(&entry.name);
    }

    /// This process's directory, made (locked, then put in place) on first
    /// use.
    fn own_dir(&self) -> Result<PathBuf, SpoolError> {
        let mut owner = lock(&self.owner);
        if let Some(owner) = &*owner {
            return Ok(owner.path.clone());
        }
        private_dir_all(&self.dir).map_err(io_error(&self.dir))?;
        let id = format!("{:016x}", crate::random::random_u64());
        let making = self.dir.join(format!("{MAKING_PREFIX}{id}"));
        private_dir(&making).map_err(io_error(&making))?;
        let path = self.dir.join(format!("{OWNER_PREFIX}{id}"));
        let locked = (|| {
            let lock_path = making.join(LOCK);
            let lock_file = private_file(&lock_path).map_err(io_error(&lock_path))?;
            // A directory no one else has seen yet: the lock is free.
            lock_file.try_lock().map_err(|err| SpoolError::Io {
                path: lock_path.clone(),
                source: match err {
                    std::fs::TryLockError::Error(err) => err,
                    std::fs::TryLockError::WouldBlock => std::io::ErrorKind::WouldBlock.into(),
                },
            })?;
            // Only now visible to replayers, already locked.
            std::fs::rename(&making, &path).map_err(io_error(&path))?;
            Ok(lock_file)
        })();
        let lock_file = match locked {
            Ok(lock_file) => lock_file,
            Err(err) => {
                // Nothing of it is used: no leftover per attempt.
                let _ = std::fs::remove_dir_all(&making);
                return Err(err);
            }
        };
        sync_dir(&self.dir);
        *owner = Some(OwnerDir {
            path: path.clone(),
            _lock: lock_file,
        });
        Ok(path)
    }

    /// One pass: writes every spooled call of this spool's store that no
    /// live writer owns into `store`, running `hooks` for calls that ended.
    pub async fn replay(
        self: &Arc<Self>,
        store: &dyn Store,
        hooks: &[Arc<dyn AfterCall>],
    ) -> ReplayReport {
        let mut report = ReplayReport::default();
        let spool = Arc::clone(self);
        let Some(owners) = blocking(move || spool.owner_dirs()).await.flatten() else {
            return report;
        };
        for (owner, owner_lock) in owners {
            let spool = Arc::clone(self);
            let listed = blocking({
                let owner = owner.clone();
                move || spool.claim_files(&owner)
            })
            .await;
            let Some((files, unclaimed)) = listed else {
                continue;
            };
            let mut left = unclaimed;
            let mut store_down = false;
            let mut files = files.into_iter();
            while let Some(path) = files.next() {
                let outcome = self.replay_file(&path, store, hooks).await;
                lock(&self.live).remove(&path.display().to_string());
                match outcome {
                    Replayed::Written => report.written += 1,
                    Replayed::Waiting => {
                        report.waiting += 1;
                        left += 1;
                    }
                    Replayed::StoreDown => {
                        // The rest would only wait on the store in turn:
                        // the pass ends, and they wait for the next.
                        store_down = true;
                        let mut live = lock(&self.live);
                        report.waiting += 1;
                        for rest in files.by_ref() {
                            live.remove(&rest.display().to_string());
                            report.waiting += 1;
                        }
                        break;
                    }
                    Replayed::OtherStore => left += 1,
                    Replayed::Gone => {}
                    Replayed::SetAside => report.unreadable += 1,
                }
            }
            if store_down {
                return report;
            }
            if let Some(owner_lock) = owner_lock
                && left == 0
            {
                // Everything of a stopped process is written.
                blocking(move || remove_owner_dir(&owner, Some(owner_lock))).await;
            }
        }
        report
    }

    /// The owner directories to replay: this process's, and those of
    /// stopped processes with their locks, held.
    fn owner_dirs(&self) -> Option<Vec<(PathBuf, Option<File>)>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
            Err(err) => {
                tracing::warn!(dir = %self.dir.display(), error = %err, "cannot read the turn spool");
                return None;
            }
        };
        let own = lock(&self.owner).as_ref().map(|o| o.path.clone());
        let mut owners = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let name = entry
                .file_name()
                .to_str()
                .map(str::to_owned)
                .unwrap_or_default();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            // A process that stopped while making or removing its
            // directory: what is left goes (a `.gone-` one is all written,
            // a `.making-` one holds nothing yet).
            if name.starts_with(GONE_PREFIX) || name.starts_with(MAKING_PREFIX) {
                // One being made this minute may belong to a live process
                // between making its lock file and locking it.
                if name.starts_with(MAKING_PREFIX) && !older_than(&path, LEFTOVER_AGE) {
                    continue;
                }
                match stopped_owner(&path) {
                    Some(lock) => clear_dir(&path, Some(lock)),
                    // Never locked: a process that stopped before it could
                    // lock it.
                    None if !path.join(LOCK).exists() => clear_dir(&path, None),
                    None => {}
                }
                continue;
            }
            if !name.starts_with(OWNER_PREFIX) {
                continue;
            }
            if own.as_ref() == Some(&path) {
                owners.push((path, None));
            } else if let Some(lock) = stopped_owner(&path) {
                owners.push((path, Some(lock)));
            }
        }
        Some(owners)
    }

    /// The files of `owner` no writer or other replay holds, claimed, and
    /// how many were skipped.
    fn claim_files(&self, owner: &Path) -> (Vec<PathBuf>, usize) {
        let names = match std::fs::read_dir(owner) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect::<Vec<_>>(),
            Err(err) => {
                tracing::warn!(dir = %owner.display(), error = %err, "cannot read a turn spool directory");
                return (Vec::new(), 1);
            }
        };
        let mut live = lock(&self.live);
        let mut claimed = Vec::new();
        let mut skipped = 0;
        for path in names {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let full = path.display().to_string();
            if live.contains(name) || live.contains(&full) {
                skipped += 1;
            } else {
                live.insert(full);
                claimed.push(path);
            }
        }
        // Oldest first: a call's earlier writer before its later one.
        claimed.sort();
        (claimed, skipped)
    }

    async fn replay_file(
        &self,
        path: &Path,
        store: &dyn Store,
        hooks: &[Arc<dyn AfterCall>],
    ) -> Replayed {
        let read = blocking({
            let path = path.to_owned();
            move || read_spooled(&path)
        })
        .await
        .unwrap_or(Read::Failed("the disk did not answer".into()));
        let mut call = match read {
            Read::Call(call) => call,
            Read::Gone => return Replayed::Gone,
            Read::Failed(why) => {
                tracing::warn!(file = %path.display(), reason = why, "cannot read a turn spool file; trying again later");
                return Replayed::Waiting;
            }
            Read::Newer(version) => {
                tracing::warn!(file = %path.display(), version, "a turn spool file from a newer build; left for it");
                return Replayed::OtherStore;
            }
            Read::Unparsable(why) => {
                let aside = self.dir.join(UNREADABLE);
                let path = path.to_owned();
                let moved = blocking(move || set_aside(&path, &aside, &why)).await;
                return if moved == Some(true) {
                    Replayed::SetAside
                } else {
                    Replayed::Waiting
                };
            }
        };
        if call.store != self.store {
            // Once per file: the pass runs every few seconds.
            if lock(&self.foreign).insert(path.to_owned()) {
                tracing::warn!(file = %path.display(), "a turn spool file of another store (another address or key prefix); left for a server of that store");
            }
            return Replayed::OtherStore;
        }
        let call_id = call.call_id.clone();
        let total = call.steps.len();
        let mut done = 0;
        // Where the last turn went: the turns after one sent to the end
        // follow it.
        let mut next_index: Option<u64> = None;
        let mut transcript: Option<Vec<Interaction>> = None;
        for step in &mut call.steps {
            let result = match &mut *step {
                SpooledStep::Turn { turn } => {
                    place_turn(store, &call_id, turn, &mut next_index, &mut transcript).await
                }
                other => replay_step(store, &call_id, other, hooks).await,
            };
            match result {
                Ok(()) => done += 1,
                Err(err) if err.is_transient() => {
                    if done > 0 {
                        call.steps.drain(..done);
                        let path = path.to_owned();
                        let rewritten = blocking(move || write_atomically(&path, &call)).await;
                        if !matches!(rewritten, Some(Ok(()))) {
                            tracing::warn!(
                                call_id,
                                "cannot shorten a spool file; its written steps will be found written next time"
                            );
                        }
                    }
                    tracing::debug!(call_id, error = %err, left = total - done, "context store still failing; the spooled call waits");
                    // Trouble with this call's keys only (a busy record, a
                    // shard not yet replicated): the others go on.
                    return if matches!(
                        err,
                        StoreError::Contended { .. } | StoreError::NotReplicated { .. }
                    ) {
                        Replayed::Waiting
                    } else {
                        Replayed::StoreDown
                    };
                }
                Err(err) => {
                    match &*step {
                        SpooledStep::Turn { turn } => tracing::error!(
                            call_id,
                            index = turn.index,
                            role = ?turn.role,
                            chars = turn.text.chars().count(),
                            error = %err,
                            "the store refused a spooled turn; skipped"
                        ),
                        other => {
                            tracing::error!(call_id, step = other.kind(), error = %err, "the store refused a spooled step; skipped")
                        }
                    }
                    done += 1;
                }
            }
        }
        let removed = blocking({
            let path = path.to_owned();
            move || std::fs::remove_file(&path)
        })
        .await;
        if !matches!(removed, Some(Ok(()))) {
            tracing::warn!(
                call_id,
                "cannot remove a replayed spool file; it will be replayed again, finding its steps written"
            );
        }
        tracing::info!(
            call_id,
            steps = total,
            "spooled call written to the context store"
        );
        Replayed::Written
    }

    /// Replays every `period` (and at once) until `shutdown` resolves.
    pub async fn run(
        self: &Arc<Self>,
        store: &dyn Store,
        hooks: &[Arc<dyn AfterCall>],
        period: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            // A long pass against a failing store must not hold up a
            // shutdown: what it did not reach stays on disk.
            let report = tokio::select! {
                () = &mut shutdown => return,
                report = self.replay(store, hooks) => report,
            };
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

enum Replayed {
    Written,
    /// The store failed (for now): the pass ends.
    StoreDown,
    /// Removed by its writer meanwhile.
    Gone,
    Waiting,
    OtherStore,
    SetAside,
}

enum Read {
    Call(SpooledCall),
    /// Removed meanwhile (written by its writer after all).
    Gone,
    Failed(String),
    Newer(u32),
    Unparsable(String),
}

fn read_spooled(path: &Path) -> Read {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Read::Gone,
        Err(err) => return Read::Failed(err.to_string()),
    };
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    // Where it fails, never what it read: the file holds the call's words.
    let where_ = |err: serde_json::Error| {
        format!(
            "{:?} error at line {} column {}",
            err.classify(),
            err.line(),
            err.column()
        )
    };
    match serde_json::from_slice::<Version>(&bytes) {
        Ok(v) if v.version > VERSION => return Read::Newer(v.version),
        Ok(_) => {}
        Err(err) => return Read::Unparsable(where_(err)),
    }
    match serde_json::from_slice::<SpooledCall>(&bytes) {
        Ok(call) => Read::Call(call),
        Err(err) => Read::Unparsable(where_(err)),
    }
}

/// Moves an unreadable file to `aside`, named after its owner directory
/// too; true when it was moved.
fn set_aside(path: &Path, aside: &Path, why: &str) -> bool {
    let owner = path
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .unwrap_or("unknown");
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("unnamed");
    let target = aside.join(format!("{owner}-{name}"));
    match private_dir_all(aside).and_then(|()| std::fs::rename(path, &target)) {
        Ok(()) => {
            tracing::error!(file = %path.display(), moved_to = %target.display(), reason = why, "unreadable turn spool file set aside");
            true
        }
        Err(err) => {
            tracing::error!(file = %path.display(), reason = why, error = %err, "unreadable turn spool file left in place");
            false
        }
    }
}

/// Appends a spooled turn where it belongs (see the module's docs):
/// `transcript` is the call's as last read (read when `None`), so that a
/// turn already stored, wherever it went, is never appended again.
async fn place_turn(
    store: &dyn Store,
    call_id: &str,
    turn: &mut Interaction,
    next_index: &mut Option<u64>,
    transcript: &mut Option<Vec<Interaction>>,
) -> Result<(), StoreError> {
    if let Some(next) = *next_index {
        turn.index = turn.index.max(next);
    }
    loop {
        let known = match transcript {
            Some(known) => known,
            None => transcript.insert(store.turns(call_id).await?),
        };
        if let Some(same) = known.iter().find(|t| t.is_same_turn(turn)) {
            // Written before (by its writer, or an earlier pass).
            turn.index = same.index;
            break;
        }
        match store.append_turn(call_id, turn).await? {
            Appended::Added => {
                known.push(turn.clone());
                break;
            }
            Appended::AddedAfterGap { stored } => {
                tracing::error!(
                    call_id,
                    index = turn.index,
                    stored,
                    "transcript lost turns before a spooled one (deleted, expired, or Redis restarted empty); appended at {stored}"
                );
                turn.index = stored;
                known.push(turn.clone());
                break;
            }
            Appended::AlreadyStored { stored } => {
                // Another turn holds the position (the transcript moved on
                // since it was read): after the last, read again.
                turn.index = stored;
                *transcript = None;
            }
        }
    }
    *next_index = Some(turn.index + 1);
    Ok(())
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
        SpooledStep::Turn { .. } => return Ok(()),
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

/// The lock of a stopped owner, held; `None` while its process runs, or
/// when the directory has no lock (not an owner directory of ours).
fn stopped_owner(owner: &Path) -> Option<File> {
    let path = owner.join(LOCK);
    match OpenOptions::new().read(true).open(&path) {
        Ok(file) => match file.try_lock() {
            Ok(()) => Some(file),
            Err(std::fs::TryLockError::WouldBlock) => None,
            Err(std::fs::TryLockError::Error(err)) => {
                tracing::warn!(file = %path.display(), error = %err, "cannot lock a turn spool directory; its files wait");
                None
            }
        },
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => {
            tracing::warn!(file = %path.display(), error = %err, "cannot open a turn spool lock; its files wait");
            None
        }
    }
}

/// Removes a stopped owner's directory, all of whose files are written:
/// renamed first (so no one takes it for a live one), then only what a
/// spool puts there, then the directory itself.
fn remove_owner_dir(owner: &Path, lock: Option<File>) {
    let Some(name) = owner.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let gone = owner.with_file_name(format!("{GONE_PREFIX}{name}"));
    if let Err(err) = std::fs::rename(owner, &gone) {
        tracing::debug!(dir = %owner.display(), error = %err, "a written spool directory stays");
        return;
    }
    clear_dir(&gone, lock);
}

/// Removes what a spool puts in `dir`, then `dir` (a directory no process
/// uses: its lock is held here, or it was never locked).
fn clear_dir(dir: &Path, lock: Option<File>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for path in entries.filter_map(Result::ok).map(|e| e.path()) {
            let ours = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n == LOCK || n.ends_with(".json") || n.ends_with(".tmp"));
            if ours && let Err(err) = std::fs::remove_file(&path) {
                tracing::warn!(file = %path.display(), error = %err, "cannot remove a written spool file");
            }
        }
    }
    drop(lock);
    if let Err(err) = std::fs::remove_dir(dir) {
        tracing::warn!(dir = %dir.display(), error = %err, "cannot remove a written spool directory");
    }
}

/// How old an unlocked leftover directory must be to be cleared.
const LEFTOVER_AGE: Duration = Duration::from_secs(60);

/// True when `path` was last changed longer than `age` ago.
fn older_than(path: &Path, age: Duration) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|at| at.elapsed().ok())
        .is_some_and(|elapsed| elapsed > age)
}

/// Writes `call` to `path` in one step: a synced temporary file renamed
/// over it, then the directory synced.
fn write_atomically(path: &Path, call: &SpooledCall) -> Result<(), SpoolError> {
    // A name of its own: a write still stalled on the disk must not write
    // into the next one's file.
    let tmp = path.with_extension(format!("{:016x}.tmp", crate::random::random_u64()));
    let body = serde_json::to_vec(call)?;
    let mut file = private_file(&tmp).map_err(io_error(&tmp))?;
    file.write_all(&body).map_err(io_error(&tmp))?;
    file.sync_all().map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    Ok(())
}

/// Makes a rename in `dir` durable (best effort: not every file system
/// syncs directories).
fn sync_dir(dir: &Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

/// Opens `path` for writing (created, truncated), readable by its owner only.
fn private_file(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Makes `path`, which must not exist, its owner's only.
fn private_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

/// Makes `path` and its parents as needed (those made, their owner's only).
fn private_dir_all(path: &Path) -> std::io::Result<()> {
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

/// Runs blocking file work off the runtime's workers; `None` if its
/// thread failed.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(work).await.ok()
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

    const STORE: &str = "memory:test";

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
            timestamp: format!("2026-12-07T12:00:0{index}Z"),
            session_ms: index * 1000,
            interrupted: false,
            tool_calls: Vec::new(),
            latency_ms: None,
            agent: None,
            reflection: None,
        }
    }

    fn record(call_id: &str) -> CallRecord {
        CallRecord::pending(call_id, "twilio", Segment::default(), Default::default(), 1)
    }

    fn whole_call(call_id: &str) -> SpooledCall {
        SpooledCall {
            version: VERSION,
            store: STORE.to_owned(),
            call_id: call_id.to_owned(),
            steps: vec![
                SpooledStep::Create {
                    record: Box::new(record(call_id)),
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

    fn spool(dir: &Path) -> Arc<TurnSpool> {
        Arc::new(TurnSpool::new(dir, STORE))
    }

    /// `call` kept by a writer that has then stopped.
    fn left_by_a_writer(spool: &TurnSpool, call: &SpooledCall) -> SpoolEntry {
        let entry = spool.entry();
        spool.keep(&entry, call).unwrap();
        spool.release(&entry);
        entry
    }

    async fn texts(store: &dyn Store, call_id: &str) -> Vec<String> {
        let turns = store.turns(call_id).await.unwrap();
        turns.into_iter().map(|t| t.text).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_call_is_replayed_only_once_its_writer_lets_it_go() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool(dir.path());
        let store = MemoryStore::new(StoreSettings::default());
        let (hook, hooks) = hooks();
        let entry = spool.entry();
        spool.keep(&entry, &whole_call("call-1")).unwrap();

        let live = spool.replay(&store, &hooks).await;
        assert_eq!(live, ReplayReport::default());
        assert!(store.call("call-1").await.unwrap().is_none());

        spool.release(&entry);
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn turns_already_written_are_not_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool(dir.path());
        let store = MemoryStore::new(StoreSettings::default());
        // The writer got the call and its first turn in before it stopped.
        store.create_call(&record("call-2")).await.unwrap();
        store
            .append_turn("call-2", &interaction(0, "hello"))
            .await
            .unwrap();
        left_by_a_writer(&spool, &whole_call("call-2"));
        let (_, hooks) = hooks();
        assert_eq!(spool.replay(&store, &hooks).await.written, 1);
        assert_eq!(
            texts(&store, "call-2").await,
            ["hello", "hi, how can I help?"]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn turns_whose_places_were_taken_go_after_the_transcript_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool(dir.path());
        let store = MemoryStore::new(StoreSettings::default());
        // A later writer of the same call (the conversation's next
        // message) wrote its turns where the spooled ones were to go.
        store.create_call(&record("call-3")).await.unwrap();
        for (i, text) in ["next message", "its answer", "and more"]
            .iter()
            .enumerate()
        {
            let mut turn = interaction(i as u64, text);
            turn.timestamp = format!("2026-12-07T13:00:0{i}Z");
            store.append_turn("call-3", &turn).await.unwrap();
        }
        left_by_a_writer(&spool, &whole_call("call-3"));
        let (_, hooks) = hooks();
        assert_eq!(spool.replay(&store, &hooks).await.written, 1);
        let turns = store.turns("call-3").await.unwrap();
        assert_eq!(
            turns.iter().map(|t| t.text.as_str()).collect::<Vec<_>>(),
            [
                "next message",
                "its answer",
                "and more",
                "hello",
                "hi, how can I help?"
            ]
        );
        assert_eq!(
            turns.iter().map(|t| t.index).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_file_replayed_again_after_a_gap_writes_its_turns_once() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool(dir.path());
        let store = MemoryStore::new(StoreSettings::default());
        // The transcript was lost (Redis restarted empty): the spooled
        // turns' indices are past its end.
        store.create_call(&record("call-11")).await.unwrap();
        let mut call = whole_call("call-11");
        call.steps = vec![
            SpooledStep::Turn {
                turn: interaction(5, "five"),
            },
            SpooledStep::Turn {
                turn: interaction(6, "six"),
            },
        ];
        // The same file twice (a pass cut short before its removal).
        left_by_a_writer(&spool, &call);
        left_by_a_writer(&spool, &call);
        let (_, hooks) = hooks();
        assert_eq!(spool.replay(&store, &hooks).await.written, 2);
        assert_eq!(texts(&store, "call-11").await, ["five", "six"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn two_writers_of_one_call_keep_a_file_each() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool(dir.path());
        let mut first = whole_call("call-4");
        first.steps.truncate(4);
        left_by_a_writer(&spool, &first);
        // A second writer of the same call, still running.
        let mut second = whole_call("call-4");
        second.steps = vec![SpooledStep::Turn {
            turn: interaction(2, "second writer's turn"),
        }];
        let live = spool.entry();
        spool.keep(&live, &second).unwrap();
        let store = MemoryStore::new(StoreSettings::default());
        let (_, hooks) = hooks();
        // The first writer's file is written; the live one's is not touched.
        assert_eq!(spool.replay(&store, &hooks).await.written, 1);
        assert_eq!(
            texts(&store, "call-4").await,
            ["hello", "hi, how can I help?"]
        );
        spool.discard(&live);
        assert_eq!(spool.replay(&store, &hooks).await, ReplayReport::default());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_failing_store_leaves_the_call_for_the_next_pass() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool(dir.path());
        left_by_a_writer(&spool, &whole_call("call-5"));
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
        assert_eq!((report.written, report.waiting), (0, 1));

        let store = MemoryStore::new(StoreSettings::default());
        assert_eq!(spool.replay(&store, &hooks).await.written, 1);
        assert_eq!(texts(&store, "call-5").await.len(), 2);
        assert_eq!(hook.0.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn another_store_files_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool(dir.path());
        let mut call = whole_call("call-6");
        call.store = "redis:0123456789abcdef:".to_owned();
        left_by_a_writer(&spool, &call);
        let store = MemoryStore::new(StoreSettings::default());
        let (_, hooks) = hooks();
        assert_eq!(spool.replay(&store, &hooks).await, ReplayReport::default());
        assert!(store.call("call-6").await.unwrap().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn another_process_files_wait_until_it_has_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let store = MemoryStore::new(StoreSettings::default());
        let (_, hooks) = hooks();
        let other = spool(dir.path());
        left_by_a_writer(&other, &whole_call("call-7"));
        let this = spool(dir.path());
        // The other process still runs (holds its lock).
        assert_eq!(this.replay(&store, &hooks).await, ReplayReport::default());
        assert!(store.call("call-7").await.unwrap().is_none());

        drop(other);
        assert_eq!(this.replay(&store, &hooks).await.written, 1);
        assert_eq!(texts(&store, "call-7").await.len(), 2);
        // Its directory went with its last file.
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn directories_that_are_not_a_spool_owner_are_never_touched() {
        let dir = tempfile::tempdir().unwrap();
        // What else may live in the same directory.
        let recordings = dir.path().join("recordings");
        std::fs::create_dir(&recordings).unwrap();
        std::fs::write(recordings.join("call.wav.part"), b"RIFF").unwrap();
        let unlocked = dir.path().join("owner-without-lock");
        std::fs::create_dir(&unlocked).unwrap();
        std::fs::write(unlocked.join("notes.json"), b"{}").unwrap();
        let spool = spool(dir.path());
        left_by_a_writer(&spool, &whole_call("call-8"));
        let store = MemoryStore::new(StoreSettings::default());
        let (_, hooks) = hooks();
        assert_eq!(spool.replay(&store, &hooks).await.written, 1);
        assert!(recordings.join("call.wav.part").exists());
        assert!(unlocked.join("notes.json").exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn an_unreadable_file_is_set_aside_and_the_rest_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool(dir.path());
        left_by_a_writer(&spool, &whole_call("call-9"));
        let own = spool.own_dir().unwrap();
        std::fs::write(own.join("0-broken.json"), b"{\"version\":1,\"call_").unwrap();
        std::fs::write(own.join("1-newer.json"), b"{\"version\":99}").unwrap();
        let store = MemoryStore::new(StoreSettings::default());
        let (_, hooks) = hooks();
        let report = spool.replay(&store, &hooks).await;
        assert_eq!((report.written, report.unreadable), (1, 1));
        let owner = own.file_name().unwrap().to_str().unwrap().to_owned();
        let aside = dir
            .path()
            .join(UNREADABLE)
            .join(format!("{owner}-0-broken.json"));
        assert!(aside.exists());
        // A newer build's file is left for it.
        assert!(own.join("1-newer.json").exists());
    }

    #[cfg(unix)]
    #[test]
    fn files_and_directories_are_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let spool = spool(&dir.path().join("spool"));
        let entry = spool.entry();
        spool.keep(&entry, &whole_call("call-10")).unwrap();
        let own = spool.own_dir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&own.join(&entry.name)), 0o600);
        assert_eq!(mode(&own), 0o700);
        assert_eq!(mode(&dir.path().join("spool")), 0o700);
    }
}
