//! The turn spool: what a session's writer could not write to the context
//! store, kept on local disk until the store is back.
//!
//! # Why
//!
//! A writer keeps a call's steps in memory while the store is down and
//! retries them (`agent/writer/`). That covers an outage shorter than
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
//! A pass takes the files of all the owner directories it may replay in
//! one order, oldest first by the time in their names (when their writer
//! started), whichever process wrote them: a text conversation's earlier
//! message before its next one. Once a call's file must wait (its writer
//! still owns it: [`TurnSpool::keep`] notes the call of each live file;
//! or its record is busy), the call's later files wait in that pass too.
//! (A file that cannot be read holds nothing back: its call is unknown.
//! Nor does a live process's file, which is not listed at all.) A pass
//! ends at the first store-wide error, and when the disk does not answer
//! one piece of work (a listing, a read, a write or a removal) within 5 s
//! (`disk_work.rs`): every piece given up on is kept until it has
//! finished, and none starts meanwhile, so no pass of this process does
//! either. The stopped owners' locks a pass took are held by each piece
//! of its disk work, and go with the last of them: another process locks
//! those owners' files only once nothing of this pass can touch them.
//!
//! Steps are written in the writer's order. Creating a call that exists,
//! a status change and the after-call hooks are idempotent in the store. A
//! turn carries the index its writer gave it or would have given it; the
//! store appends a turn only at its index, and a position already taken
//! is compared with the spooled turn: the same turn (role, text, times) is
//! already written, another one (the next message of a text conversation,
//! a reconnect, or an index the writer could only guess) sends the turn to
//! the end of the transcript, and the turns after it follow. The
//! after-call hooks run for the writer's hold on its call's session lease
//! (kept in its file), so that they let go of that writer's hold alone.
//!
//! A pass that leaves nothing waiting (every file it could take written or
//! set aside, none left to another pass still writing it) sets
//! [`TurnSpool::replayed`]: the process's lost-session sweep waits for it
//! before its first claim, so that a call is not ended, and evaluated,
//! before the turns this disk holds for it are written.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use self::disk_work::DiskWork;
use self::files::{lock, private_dir, private_dir_all, private_file, sync_dir};
use crate::store::{CallChange, CallRecord, CallRecording, Interaction};

#[cfg(test)]
mod disk_gate;
mod disk_work;
mod files;
mod owners;
mod reading;
mod replay;
#[cfg(test)]
mod tests;

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

/// The longest the replayer waits for one piece of disk work (a listing,
/// a file read, written or removed), as a writer waits for its file.
const DISK_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// One call's steps not yet written, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpooledCall {
    /// [`VERSION`].
    pub version: u32,
    /// The store the steps belong to ([`TurnSpool::new`]'s `store`).
    pub store: String,
    /// The call.
    pub call_id: String,
    /// The writer's hold on the call's session lease, if it kept one: the
    /// replayer's after-call steps let go of that hold alone. (Absent from
    /// the files of older builds, whose writers kept no holds; a build
    /// without it reads past it.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_holder: Option<String>,
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

    /// The step's kind, for logs.
    pub(crate) fn kind(&self) -> &'static str {
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
    /// the replayer's claims, names for writers' entries), with the call
    /// each holds once known: a pass holds back that call's later files.
    live: Mutex<HashMap<String, Option<String>>>,
    /// Files of other stores already reported.
    foreign: Mutex<HashSet<PathBuf>>,
    /// The replayer's disk work, each piece bounded by [`DISK_LIMIT`].
    disk_work: DiskWork,
    /// A disk that hangs, for the writers' tests.
    #[cfg(test)]
    disk_gate: disk_gate::DiskGate,
    /// True once a pass has left nothing waiting (every file it could take
    /// written, or set aside): this process's lost-session sweeper waits
    /// for it, so that a call is not ended before its spooled turns are
    /// written.
    replayed: tokio::sync::watch::Sender<bool>,
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
            live: Mutex::new(HashMap::new()),
            foreign: Mutex::new(HashSet::new()),
            disk_work: DiskWork::new(DISK_LIMIT),
            #[cfg(test)]
            disk_gate: disk_gate::DiskGate::default(),
            replayed: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Becomes true once a replay pass has left nothing waiting: what the
    /// spool held when this process started is written (or set aside).
    pub fn replayed(&self) -> tokio::sync::watch::Receiver<bool> {
        self.replayed.subscribe()
    }

    /// The same spool waiting `limit` for the disk (tests of a hung disk).
    #[cfg(test)]
    fn with_disk_limit(mut self, limit: std::time::Duration) -> Self {
        self.disk_work = DiskWork::new(limit);
        self
    }

    /// The gate that makes the writers' file work hang (tests).
    #[cfg(test)]
    pub(crate) fn disk_gate(&self) -> &disk_gate::DiskGate {
        &self.disk_gate
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new file (not created yet) for the writer started at
    /// `started_ms`, owned by it until [`Self::release`] or
    /// [`Self::discard`]. Named by that time, so that the replayer takes a
    /// conversation's writers in the order they started, whichever first
    /// needed the spool.
    pub fn entry(&self, started_ms: u64) -> SpoolEntry {
        let name = format!(
            "{:013}-{:016x}.json",
            started_ms,
            crate::random::random_u64()
        );
        lock(&self.live).insert(name.clone(), None);
        SpoolEntry { name }
    }

    /// Replaces `entry`'s file with `call`. Blocking: call it off the
    /// runtime's workers.
    pub fn keep(&self, entry: &SpoolEntry, call: &SpooledCall) -> Result<(), SpoolError> {
        #[cfg(test)]
        self.disk_gate.pass();
        // Known before the file can be listed: a pass holds back the
        // call's later files while its writer still owns this one. (Not
        // noted again once released: the file is the replayer's then.)
        if let Some(holds) = lock(&self.live).get_mut(&entry.name) {
            *holds = Some(call.call_id.clone());
        }
        let dir = self.own_dir()?;
        write_atomically(&dir.join(&entry.name), call)
    }

    /// Removes `entry`'s file: everything in it is written. Blocking.
    pub fn discard(&self, entry: &SpoolEntry) {
        #[cfg(test)]
        self.disk_gate.pass();
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
}

/// Writes `call` to `path` in one step: a synced temporary file renamed
/// over it, then the directory synced.
fn write_atomically(path: &Path, call: &SpooledCall) -> Result<(), SpoolError> {
    // A name of its own: a write still stalled on the disk must not write
    // into the next one's file.
    let tmp = path.with_extension(format!("{:016x}.tmp", crate::random::random_u64()));
    let body = serde_json::to_vec(call)?;
    let written = (|| {
        let mut file = private_file(&tmp).map_err(io_error(&tmp))?;
        file.write_all(&body).map_err(io_error(&tmp))?;
        file.sync_all().map_err(io_error(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io_error(path))
    })();
    if written.is_err() {
        // A full disk must not fill up with one temporary file a try.
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    Ok(())
}
