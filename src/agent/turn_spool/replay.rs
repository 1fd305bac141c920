//! The replayer: writes what the spool holds into the store, from this
//! process's released files and those of processes that have stopped.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::disk_work::NotDone;
use super::files::lock;
use super::owners::{list_files, remove_owner_dir, replay_order};
use super::reading::{Read, read_spooled, set_aside};
use super::{ReplayReport, SpoolError, SpooledStep, TurnSpool, UNREADABLE, write_atomically};
use crate::agent::after_call::AfterCall;
use crate::store::{Appended, CallChange, Interaction, Store, StoreError};

impl TurnSpool {
    /// One pass: writes every spooled call of this spool's store that no
    /// live writer owns into `store`, running `hooks` for calls that ended.
    /// The files of all owner directories go in one order, oldest first by
    /// the time in their names: a call's earlier writer before its later
    /// one (a text conversation's next message), whichever process wrote
    /// them. Once a call's file must wait (its writer still owns it, its
    /// record is busy), the call's later files wait too, until the next
    /// pass. A pass ends at the first store error, or when the disk does
    /// not answer within its limit; none starts while that disk work is
    /// unfinished, and the stopped owners' locks it took are held until
    /// then.
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
            .on_disk(
                "listing the turn spool",
                &OwnerLocks::default(),
                move || spool.owner_dirs(),
            )
            .await
        else {
            return report;
        };
        // The stopped owners' locks, held by the pass and by each piece of
        // its disk work: one given up on may still read, rewrite or remove
        // their files, so another process may take them only once it has
        // finished too.
        let mut dirs = Vec::with_capacity(owners.len());
        let mut locks = Vec::new();
        for (dir, owner_lock) in owners {
            dirs.push((dir, owner_lock.is_some()));
            locks.extend(owner_lock);
        }
        let locks = OwnerLocks {
            _held: Arc::new(locks),
        };
        let listed_dirs: Vec<PathBuf> = dirs.iter().map(|(dir, _)| dir.clone()).collect();
        let Ok(listed) = self
            .on_disk("listing the turn spool's files", &locks, move || {
                listed_dirs
                    .iter()
                    .map(|dir| list_files(dir))
                    .collect::<Vec<_>>()
            })
            .await
        else {
            return report;
        };
        // Per owner: files not written (it stays while any is left).
        let mut left = vec![0usize; dirs.len()];
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
            let claims = self.claim(paths);
            // Files another pass is writing: this pass has not seen them
            // written.
            let live = lock(&self.live);
            unseen |= claims.iter().any(|(path, claim)| {
                matches!(claim, Claim::Taken(_)) && live.contains_key(&path.display().to_string())
            });
            drop(live);
            files.extend(claims.into_iter().map(|(path, claim)| (path, owner, claim)));
        }
        files.sort_by_cached_key(|(path, _, _)| replay_order(path));
        // Calls one of whose files waits: their later files wait behind it.
        let mut waiting_calls = HashSet::new();
        let mut files = files.into_iter();
        while let Some((path, owner, claim)) = files.next() {
            if let Claim::Taken(call) = claim {
                // A live writer's file (or another pass's): its call's
                // later files are not to go before it.
                left[owner] += 1;
                waiting_calls.extend(call);
                continue;
            }
            let outcome = self
                .replay_file(&path, store, hooks, &mut waiting_calls, &locks)
                .await;
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
                for (rest, _, claim) in files.by_ref() {
                    if matches!(claim, Claim::Ours) {
                        live.remove(&rest.display().to_string());
                        report.waiting += 1;
                    }
                }
                return report;
            }
        }
        // Stopped processes all of whose files are written.
        let written: Vec<PathBuf> = dirs
            .into_iter()
            .zip(left)
            .filter(|((_, stopped), left)| *stopped && *left == 0)
            .map(|((dir, _), _)| dir)
            .collect();
        if !written.is_empty() {
            let _removed = self
                .on_disk(
                    "removing written turn spool directories",
                    &locks,
                    move || {
                        for dir in written {
                            // Its lock is among the pass's, held until after.
                            remove_owner_dir(&dir);
                        }
                    },
                )
                .await;
        }
        if report.waiting == 0 && !unseen {
            self.replayed.send_replace(true);
        }
        report
    }

    /// Claims the `paths` no writer or other replay holds; the others are
    /// `Taken`, with the call their file holds when known. Here, not with
    /// the listing on the disk's thread: a listing given up on claims
    /// nothing.
    fn claim(&self, paths: Vec<PathBuf>) -> Vec<(PathBuf, Claim)> {
        let mut live = lock(&self.live);
        let mut claimed = Vec::with_capacity(paths.len());
        for path in paths {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let full = path.display().to_string();
            let holder = live.get(name).or_else(|| live.get(&full));
            let claim = match holder {
                Some(call) => Claim::Taken(call.clone()),
                None => {
                    live.insert(full, None);
                    Claim::Ours
                }
            };
            claimed.push((path, claim));
        }
        claimed
    }

    /// Replays one file, unless one of `waiting_calls` (calls an earlier
    /// file of which waits) is its call; a call whose file must wait joins
    /// them.
    async fn replay_file(
        &self,
        path: &Path,
        store: &dyn Store,
        hooks: &[Arc<dyn AfterCall>],
        waiting_calls: &mut HashSet<String>,
        locks: &OwnerLocks,
    ) -> Replayed {
        let read = self
            .on_disk("reading a turn spool file", locks, {
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
                    .on_disk("setting a turn spool file aside", locks, move || {
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
        if waiting_calls.contains(&call_id) {
            tracing::debug!(call_id, file = %path.display(), "an earlier file of this call waits; this one waits behind it");
            return Replayed::Waiting;
        }
        // Another pass listing now holds back the call's later files too.
        if let Some(holds) = lock(&self.live).get_mut(&path.display().to_string()) {
            *holds = Some(call_id.clone());
        }
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
                            .on_disk("shortening a turn spool file", locks, move || {
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
                    // shard not yet replicated): the other calls go on,
                    // this one's later files wait behind this one.
                    return if matches!(
                        err,
                        StoreError::Contended { .. } | StoreError::NotReplicated { .. }
                    ) {
                        waiting_calls.insert(call_id);
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
            .on_disk("removing a replayed turn spool file", locks, {
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
    /// file): past it the work is left to finish on its own, holding
    /// `locks` until it has, and until then [`Self::disk_stalled`] says so
    /// and no other disk work starts (see `disk_work.rs`). `what` is for
    /// the log.
    async fn on_disk<T: Send + 'static>(
        &self,
        what: &'static str,
        locks: &OwnerLocks,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, SpoolError> {
        let locks = locks.clone();
        let done = self
            .disk_work
            .run(move || {
                // Dropped on the disk's thread once the work is over,
                // however long after the pass stopped waiting.
                let _locks = locks;
                work()
            })
            .await;
        match done {
            Ok(out) => Ok(out),
            Err(NotDone::Failed) => {
                tracing::warn!(what, "turn spool disk work failed");
                Err(SpoolError::Stalled)
            }
            Err(NotDone::Refused) => {
                tracing::debug!(
                    what,
                    "turn spool disk work not started: the disk has not answered earlier work, or too much runs"
                );
                Err(SpoolError::Stalled)
            }
            Err(NotDone::TimedOut) => {
                tracing::warn!(
                    what,
                    limit = ?self.disk_work.limit(),
                    "the disk did not answer in time; the replay pass ends, and none starts until it has"
                );
                Err(SpoolError::Stalled)
            }
        }
    }

    /// True while disk work the replayer gave up on is unfinished.
    pub(super) fn disk_stalled(&self) -> bool {
        self.disk_work.stalled()
    }

    /// Waits until disk work given up on has finished.
    #[cfg(test)]
    pub(super) async fn disk_settled(&self) {
        self.disk_work.settled().await;
    }
}

/// The stopped owners' locks a pass took, shared by its disk work: the
/// last of them to finish releases them.
#[derive(Debug, Clone, Default)]
struct OwnerLocks {
    /// Never read: held, and released when dropped.
    _held: Arc<Vec<File>>,
}

/// A listed file, as a pass found it.
enum Claim {
    /// Claimed by this pass.
    Ours,
    /// A live writer's, or another pass's: the call it holds, if known.
    Taken(Option<String>),
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
