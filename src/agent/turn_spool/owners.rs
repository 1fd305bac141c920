//! The replayer's view of the owner directories: which ones it may
//! replay, their files, and the removal of those all written.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::files::lock;
use super::{GONE_PREFIX, LOCK, MAKING_PREFIX, OWNER_PREFIX, TurnSpool};

impl TurnSpool {
    /// The owner directories to replay: this process's, and those of
    /// stopped processes with their locks, held.
    pub(super) fn owner_dirs(&self) -> Option<Vec<(PathBuf, Option<File>)>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            // Never made: nothing to replay.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Some(Vec::new()),
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
}

/// The spool files in `owner`; `None` when it cannot be read.
pub(super) fn list_files(owner: &Path) -> Option<Vec<PathBuf>> {
    match std::fs::read_dir(owner) {
        Ok(entries) => Some(
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect(),
        ),
        Err(err) => {
            tracing::warn!(dir = %owner.display(), error = %err, "cannot read a turn spool directory");
            None
        }
    }
}

/// Where a file comes in a pass: by the time in its name (`{ms}-…`,
/// when its writer first needed it), oldest first, then by name; a name
/// without a time last.
pub(super) fn replay_order(path: &Path) -> (u64, String, PathBuf) {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    let ms = name
        .split_once('-')
        .and_then(|(ms, _)| ms.parse().ok())
        .unwrap_or(u64::MAX);
    (ms, name, path.to_owned())
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

/// Removes a stopped owner's directory, all of whose files are written
/// (its lock held by the caller until this has returned): renamed first
/// (so no one takes it for a live one), then only what a spool puts
/// there, then the directory itself.
pub(super) fn remove_owner_dir(owner: &Path) {
    let Some(name) = owner.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let gone = owner.with_file_name(format!("{GONE_PREFIX}{name}"));
    if let Err(err) = std::fs::rename(owner, &gone) {
        tracing::debug!(dir = %owner.display(), error = %err, "a written spool directory stays");
        return;
    }
    clear_dir(&gone, None);
}

/// Removes what a spool puts in `dir`, then `dir` (a directory no process
/// uses: its lock is held here or by the caller, or it was never locked).
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
