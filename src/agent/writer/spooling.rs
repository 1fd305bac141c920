//! The writer's side of the turn spool: its pending steps kept on disk
//! while the store fails, and the file dropped once they are written.

use std::sync::Arc;
use std::time::Duration;

use super::{Action, Writer, describe};
use crate::agent::turn_spool::{SpoolEntry, SpoolError, SpooledCall, SpooledStep, TurnSpool};
use crate::store::Interaction;

/// The longest a writer waits for the disk to keep or drop its spool file.
const SPOOL_WRITE_LIMIT: Duration = Duration::from_secs(5);

impl Writer {
    /// At the flush deadline: leaves the pending steps in the spool for
    /// its replayer, true when they are all there (else the caller logs
    /// them).
    pub(super) async fn leave_in_spool(&mut self, why: &str) -> bool {
        let Some(spool) = self.settings.spool.clone() else {
            return false;
        };
        // A write still in flight gets its bound once more, so that the
        // last content can follow it.
        if let Some(mut write) = self.spool_write.take() {
            match tokio::time::timeout(SPOOL_WRITE_LIMIT, &mut write).await {
                Ok(landed) => self.spooled |= matches!(landed, Ok(Ok(()))),
                Err(_) => self.spool_write = Some(write),
            }
        }
        self.keep_in_spool().await;
        let stalled = self.spool_write.take_if(|w| !w.is_finished());
        if let Some(entry) = self.spool_entry.clone() {
            match stalled {
                Some(write) => {
                    // It may still land: the file is the replayer's
                    // once it has.
                    tracing::error!(call_id = %self.call_id, "a spool write is stalled on the disk; its file goes to the replayer once it lands");
                    release_after(write, Arc::clone(&spool), entry);
                }
                // From here the file, if any, is the replayer's.
                None => spool.release(&entry),
            }
        }
        if self.spooled && !self.spool_stale {
            tracing::warn!(
                call_id = %self.call_id,
                steps = self.steps.len(),
                reason = why,
                spool = %spool.dir().display(),
                "call not fully written; its pending steps are in the turn spool and are written when the store is back"
            );
            let mut index = self.next_index;
            for step in std::mem::take(&mut self.steps) {
                let what = describe(&step, &mut index);
                self.report.spooled.push(what);
            }
            return true;
        }
        if self.spooled {
            tracing::error!(
                call_id = %self.call_id,
                "the turn spool holds only an earlier copy of this call's pending steps; the rest are logged"
            );
        }
        false
    }

    /// Writes the pending steps to the spool (if there is one) when they
    /// changed since it was last written.
    pub(super) async fn keep_in_spool(&mut self) {
        let Some(spool) = self.settings.spool.clone() else {
            return;
        };
        // One write at a time: a later one waits for a stalled one (its
        // steps stay marked unsaved meanwhile), so older content never
        // lands after newer.
        if self.spool_write.as_ref().is_some_and(|w| !w.is_finished()) {
            self.spool_stale = true;
            return;
        }
        // A stalled write that has landed since: the file exists.
        if let Some(landed) = self.spool_write.take()
            && matches!(landed.await, Ok(Ok(())))
        {
            self.spooled = true;
        }
        if self.spooled && !self.spool_stale {
            return;
        }
        let call = self.spooled_call();
        let count = call.steps.len();
        let entry = self
            .spool_entry
            .get_or_insert_with(|| spool.entry(self.started_ms))
            .clone();
        // Off the workers the calls' audio runs on, and bounded: a disk that
        // hangs must not hold the writer past its flush time.
        let mut write = tokio::task::spawn_blocking(move || spool.keep(&entry, &call));
        let kept = match tokio::time::timeout(SPOOL_WRITE_LIMIT, &mut write).await {
            Ok(Ok(kept)) => {
                self.spool_write = None;
                kept
            }
            Ok(Err(_)) => {
                self.spool_write = None;
                Err(SpoolError::Stalled)
            }
            Err(_) => {
                self.spool_write = Some(write);
                self.spool_stale = true;
                Err(SpoolError::Stalled)
            }
        };
        match kept {
            Ok(()) => {
                if !self.spooled {
                    tracing::info!(call_id = %self.call_id, steps = count, "pending steps kept in the turn spool while the store fails");
                }
                self.spooled = true;
                self.spool_stale = false;
                self.status.send_modify(|s| s.spooled = count);
            }
            Err(err) => {
                tracing::error!(call_id = %self.call_id, error = %err, "cannot keep the pending steps in the turn spool; they wait in memory only");
            }
        }
    }

    /// After a step is done: the spool file goes once every step in it is
    /// written. Until then it is not rewritten (a replay finds the steps
    /// already written, and writes them no second time); the next failure
    /// rewrites it with what is left.
    pub(super) async fn spool_progress(&mut self) {
        // Any entry, even one whose first write failed or is stalled: its
        // file may exist, or appear.
        if self.spool_entry.is_none() {
            return;
        }
        if !self.steps.is_empty() {
            self.spool_stale = true;
            return;
        }
        let (Some(spool), Some(entry)) = (self.settings.spool.clone(), self.spool_entry.take())
        else {
            return;
        };
        // A stalled write would put the file back after its removal.
        let mut stalled = self.spool_write.take();
        if let Some(write) = &mut stalled
            && tokio::time::timeout(SPOOL_WRITE_LIMIT, write).await.is_ok()
        {
            stalled = None;
        }
        if let Some(write) = stalled {
            tracing::warn!(call_id = %self.call_id, "a spool write is still stalled; its file stays, and a replay will find its steps written");
            release_after(write, spool, entry);
        } else {
            let removal = tokio::task::spawn_blocking(move || spool.discard(&entry));
            if tokio::time::timeout(SPOOL_WRITE_LIMIT, removal)
                .await
                .is_err()
            {
                tracing::warn!(call_id = %self.call_id, "the spool file's removal is slow; a replay will find its steps written");
            }
        }
        // A later failure keeps its steps in a new file, of a new entry:
        // this one is no longer protected from the replayer.
        self.spooled = false;
        self.spool_stale = false;
        self.status.send_modify(|s| s.spooled = 0);
    }

    /// The pending steps as the spool keeps them: turns at the indices
    /// they have or would get.
    fn spooled_call(&self) -> SpooledCall {
        let mut index = self.next_index;
        let mut steps = Vec::with_capacity(self.steps.len());
        let mut after_call = false;
        for step in &self.steps {
            match &step.action {
                Action::Create(record) => steps.push(SpooledStep::Create {
                    record: record.clone(),
                }),
                Action::Change(change) => match SpooledStep::from_change(change) {
                    Some(step) => steps.push(step),
                    None => {
                        tracing::warn!(call_id = %self.call_id, ?change, "a change the spool cannot keep; left out")
                    }
                },
                Action::Turn(turn) => {
                    let at = step.index.unwrap_or(index);
                    index = at + 1;
                    steps.push(SpooledStep::Turn {
                        turn: Interaction::from_turn(turn, at),
                    });
                }
                // The replayer runs all of the runtime's hooks, once.
                Action::After(_) if !after_call => {
                    after_call = true;
                    steps.push(SpooledStep::AfterCall);
                }
                Action::After(_) => {}
            }
        }
        SpooledCall {
            version: crate::agent::turn_spool::VERSION,
            store: self.store.identity(),
            call_id: self.call_id.to_string(),
            lease_holder: self.settings.lease_holder.clone(),
            steps,
        }
    }
}

/// Gives `entry`'s file to the replayer once `write` has landed (or
/// failed): released before, a stalled write could land a file under a
/// replay.
fn release_after(
    write: tokio::task::JoinHandle<Result<(), SpoolError>>,
    spool: Arc<TurnSpool>,
    entry: SpoolEntry,
) {
    tokio::spawn(async move {
        let _landed = write.await;
        spool.release(&entry);
    });
}
