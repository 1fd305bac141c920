//! The replayer: writes what the spool holds into the store, from this
//! process's released files and those of processes that have stopped.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::files::{blocking, lock, private_dir_all};
use super::{
    GONE_PREFIX, LOCK, MAKING_PREFIX, OWNER_PREFIX, ReplayReport, SpooledCall, SpooledStep,
    TurnSpool, UNREADABLE, VERSION, write_atomically,
};
use crate::agent::after_call::AfterCall;
use crate::store::{Appended, CallChange, Interaction, Store, StoreError};

impl TurnSpool {
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
