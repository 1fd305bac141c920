//! The replayer: writes what the spool holds into the store, from this
//! process's released files and those of processes that have stopped.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::files::{lock, private_dir_all};
use super::owners::{list_files, remove_owner_dir, replay_order};
use super::{
    ReplayReport, SpoolError, SpooledCall, SpooledStep, TurnSpool, UNREADABLE, VERSION,
    write_atomically,
};
use crate::agent::after_call::AfterCall;
use crate::store::{Appended, CallChange, Interaction, Store, StoreError};

impl TurnSpool {
    /// One pass: writes every spooled call of this spool's store that no
    /// live writer owns into `store`, running `hooks` for calls that ended.
    /// The files of all owner directories go in one order, oldest first by
    /// the time in their names: a call's earlier writer before its later
    /// one (a text conversation's next message), whichever process wrote
    /// them. A pass ends at the first store error, or when the disk does
    /// not answer within its limit; none starts while that disk work is
    /// unfinished.
    pub async fn replay(
        self: &Arc<Self>,
        store: &dyn Store,
        hooks: &[Arc<dyn AfterCall>],
    ) -> ReplayReport {
        let mut report = ReplayReport::default();
        if self.disk_stalled() {
            tracing::debug!("the turn spool's disk has not answered yet; no replay this time");
            return report;
        }
        let spool = Arc::clone(self);
        let Ok(Some(owners)) = self
            .on_disk("listing the turn spool", move || spool.owner_dirs())
            .await
        else {
            return report;
        };
        let dirs: Vec<PathBuf> = owners.iter().map(|(dir, _)| dir.clone()).collect();
        let Ok(listed) = self
            .on_disk("listing the turn spool's files", move || {
                dirs.iter().map(|dir| list_files(dir)).collect::<Vec<_>>()
            })
            .await
        else {
            return report;
        };
        // Per owner: files not written (it stays while any is left).
        let mut left = vec![0usize; owners.len()];
        let mut files = Vec::new();
        // An owner whose files could not be listed, or files another pass
        // is writing: not all seen replayed.
        let mut unseen = false;
        for (owner, listing) in listed.into_iter().enumerate() {
            let Some(paths) = listing else {
                left[owner] += 1;
                unseen = true;
                continue;
            };
            let (claimed, skipped, in_another_pass) = self.claim(paths);
            left[owner] += skipped;
            unseen |= in_another_pass;
            files.extend(claimed.into_iter().map(|path| (path, owner)));
        }
        files.sort_by_cached_key(|(path, _)| replay_order(path));
        let mut files = files.into_iter();
        while let Some((path, owner)) = files.next() {
            let outcome = self.replay_file(&path, store, hooks).await;
            lock(&self.live).remove(&path.display().to_string());
            let mut ends = false;
            match outcome {
                Replayed::Written => report.written += 1,
                Replayed::Waiting => {
                    report.waiting += 1;
                    left[owner] += 1;
                }
                Replayed::StoreDown => {
                    // The rest would only wait on the store in turn.
                    report.waiting += 1;
                    ends = true;
                }
                Replayed::OtherStore => left[owner] += 1,
                Replayed::Gone => {}
                Replayed::SetAside => report.unreadable += 1,
            }
            // A disk that hangs would hang the next file too.
            if ends || self.disk_stalled() {
                // The pass ends: the rest wait for the next.
                let mut live = lock(&self.live);
                for (rest, _) in files.by_ref() {
                    live.remove(&rest.display().to_string());
                    report.waiting += 1;
                }
                return report;
            }
        }
        // Stopped processes all of whose files are written.
        let mut written: Vec<(PathBuf, File)> = Vec::new();
        for ((dir, owner_lock), left) in owners.into_iter().zip(left) {
            if let Some(owner_lock) = owner_lock
                && left == 0
            {
                written.push((dir, owner_lock));
            }
        }
        if !written.is_empty() {
            let _removed = self
                .on_disk("removing written turn spool directories", move || {
                    for (dir, owner_lock) in written {
                        remove_owner_dir(&dir, Some(owner_lock));
                    }
                })
                .await;
        }
        if report.waiting == 0 && !unseen {
            self.replayed.send_replace(true);
        }
        report
    }

    /// Claims the `paths` no writer or other replay holds; returns them,
    /// how many were skipped, and whether another pass holds any of them
    /// (this pass has not seen them written). Here, not with the listing on
    /// the disk's thread: a listing given up on claims nothing.
    fn claim(&self, paths: Vec<PathBuf>) -> (Vec<PathBuf>, usize, bool) {
        let mut live = lock(&self.live);
        let mut claimed = Vec::new();
        let mut skipped = 0;
        let mut in_another_pass = false;
        for path in paths {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let full = path.display().to_string();
            if live.contains(name) || live.contains(&full) {
                skipped += 1;
                in_another_pass |= live.contains(&full);
            } else {
                live.insert(full);
                claimed.push(path);
            }
        }
        (claimed, skipped, in_another_pass)
    }

    async fn replay_file(
        &self,
        path: &Path,
        store: &dyn Store,
        hooks: &[Arc<dyn AfterCall>],
    ) -> Replayed {
        let read = self
            .on_disk("reading a turn spool file", {
                let path = path.to_owned();
                move || read_spooled(&path)
            })
            .await
            .unwrap_or_else(|err| Read::Failed(err.to_string()));
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
                let moved = self
                    .on_disk("setting a turn spool file aside", move || {
                        set_aside(&path, &aside, &why)
                    })
                    .await;
                return if matches!(moved, Ok(true)) {
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
        let lease_holder = call.lease_holder.clone();
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
                other => {
                    let writer = (call_id.as_str(), lease_holder.as_deref());
                    replay_step(store, writer, other, hooks).await
                }
            };
            match result {
                Ok(()) => done += 1,
                Err(err) if err.is_transient() => {
                    if done > 0 {
                        call.steps.drain(..done);
                        let path = path.to_owned();
                        let rewritten = self
                            .on_disk("shortening a turn spool file", move || {
                                write_atomically(&path, &call)
                            })
                            .await;
                        if !matches!(rewritten, Ok(Ok(()))) {
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
        let removed = self
            .on_disk("removing a replayed turn spool file", {
                let path = path.to_owned();
                move || std::fs::remove_file(&path)
            })
            .await;
        if !matches!(removed, Ok(Ok(()))) {
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

impl TurnSpool {
    /// Runs the replayer's blocking file work off the runtime's workers,
    /// waiting for it at most the disk limit (as a writer waits for its
    /// file): past it the work is left to finish on its own, and until it
    /// has, [`Self::disk_stalled`] says so. `what` is for the log.
    pub(super) async fn on_disk<T: Send + 'static>(
        &self,
        what: &'static str,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, SpoolError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let task = tokio::task::spawn_blocking(move || {
            // Given up on, its result (an owner's lock, say) is dropped.
            let _ = done.send(work());
        });
        match tokio::time::timeout(self.disk_limit, result).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(_)) => {
                tracing::warn!(what, "turn spool disk work failed");
                Err(SpoolError::Stalled)
            }
            Err(_) => {
                tracing::warn!(
                    what,
                    limit = ?self.disk_limit,
                    "the disk did not answer in time; the replay pass ends, and none starts until it has"
                );
                *lock(&self.disk_stall) = Some(task);
                Err(SpoolError::Stalled)
            }
        }
    }

    /// True while disk work the replayer gave up on is unfinished.
    pub(super) fn disk_stalled(&self) -> bool {
        let mut stall = lock(&self.disk_stall);
        if stall.as_ref().is_some_and(|task| task.is_finished()) {
            *stall = None;
        }
        stall.is_some()
    }

    /// Waits until disk work given up on has finished.
    #[cfg(test)]
    pub(super) async fn disk_settled(&self) {
        let stall = lock(&self.disk_stall).take();
        if let Some(task) = stall {
            let _ = task.await;
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

/// Replays `step` of the writer `(call id, its lease hold)`.
async fn replay_step(
    store: &dyn Store,
    (call_id, lease_holder): (&str, Option<&str>),
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
                hook.queue_for_writer(store, call_id, lease_holder).await?;
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
