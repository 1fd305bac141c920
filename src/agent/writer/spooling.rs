//! The writer's side of the turn spool: its pending steps kept on disk
//! while the store fails, and the file dropped once they are written.
//!
//! Writes start here and never make the writer wait: the loop polls the
//! one in flight beside the store call (see `spool_file.rs`). The writer
//! waits for the disk, at most [`SPOOL_WRITE_LIMIT`] each time, only where
//! nothing else is left to do: at the flush deadline, and to remove its
//! file once every step is written.

use std::sync::Arc;

use super::spool_file::{SPOOL_WRITE_LIMIT, SpoolFile, SpoolWrite, write_done};
use super::{Action, Writer, describe};
use crate::agent::turn_spool::{SpoolEntry, SpoolError, SpooledCall, SpooledStep, TurnSpool};
use crate::store::Interaction;

impl Writer {
    /// True when what changes goes to the spool at once: the store failed
    /// (`failing`) or is slow (`slow`), or the spool holds the file.
    pub(super) fn spooling(&self, failing: bool, slow: bool) -> bool {
        self.settings.spool.is_some() && (failing || slow || self.spool_file.landed)
    }

    /// Starts writing the pending steps to the spool when a write is due,
    /// they changed since the last one, and none is in flight. Never
    /// waits.
    pub(super) fn start_spool_write(&mut self) {
        let Some(spool) = self.settings.spool.clone() else {
            return;
        };
        let file = &self.spool_file;
        if file.write.is_some() || !file.due || !file.changed {
            return;
        }
        let call = self.spooled_call();
        let started_ms = self.started_ms;
        let file = &mut self.spool_file;
        let entry = file
            .entry
            .get_or_insert_with(|| spool.entry(started_ms))
            .clone();
        file.write = Some(SpoolWrite::start(spool, entry, call));
        file.due = false;
        file.changed = false;
    }

    /// A write has landed (with its count of steps) or failed.
    pub(super) fn spool_write_done(&mut self, done: Result<usize, SpoolError>) {
        match done {
            Ok(count) => {
                if !self.spool_file.landed {
                    tracing::info!(call_id = %self.call_id, steps = count, "pending steps kept in the turn spool while the store fails");
                }
                self.spool_file.landed = true;
                self.status.send_modify(|s| s.spooled = count);
            }
            Err(err) => {
                // What it held is not on disk: the next write takes it.
                self.spool_file.changed = true;
                tracing::error!(call_id = %self.call_id, error = %err, "cannot keep the pending steps in the turn spool; they wait in memory only");
            }
        }
    }

    /// Waits for the write in flight, if any, at most [`SPOOL_WRITE_LIMIT`];
    /// still unfinished then, it stays in flight.
    async fn settle_spool_write(&mut self) {
        if self.spool_file.write.is_none() {
            return;
        }
        let landing = write_done(&mut self.spool_file.write, &self.call_id);
        if let Ok(done) = tokio::time::timeout(SPOOL_WRITE_LIMIT, landing).await {
            self.spool_write_done(done);
        }
    }

    /// At the flush deadline: leaves the pending steps in the spool for
    /// its replayer, true when they are all there (else the caller logs
    /// them).
    pub(super) async fn leave_in_spool(&mut self, why: &str) -> bool {
        let Some(spool) = self.settings.spool.clone() else {
            return false;
        };
        // The write in flight gets its bound once more, so that the last
        // content can follow it.
        self.settle_spool_write().await;
        if self.spool_file.write.is_none() && self.spool_file.changed {
            self.spool_file.due = true;
            self.start_spool_write();
            self.settle_spool_write().await;
        }
        let stalled = self.spool_file.write.take();
        let complete = self.spool_file.landed && !self.spool_file.changed && stalled.is_none();
        if let Some(entry) = self.spool_file.entry.clone() {
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
        if complete {
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
        if self.spool_file.landed {
            tracing::error!(
                call_id = %self.call_id,
                "the turn spool holds only an earlier copy of this call's pending steps; the rest are logged"
            );
        }
        false
    }

    /// After a step is done: the spool file goes once every step in it is
    /// written. Until then it is not rewritten (a replay finds the steps
    /// already written, and writes them no second time); the next failure
    /// or command rewrites it with what is left.
    pub(super) async fn spool_progress(&mut self) {
        // Any entry, even one whose first write failed or is stalled: its
        // file may exist, or appear.
        if self.spool_file.entry.is_none() {
            return;
        }
        if !self.steps.is_empty() {
            self.spool_file.changed = true;
            return;
        }
        let (Some(spool), Some(entry)) =
            (self.settings.spool.clone(), self.spool_file.entry.take())
        else {
            return;
        };
        // A write in flight would put the file back after its removal.
        self.settle_spool_write().await;
        if let Some(write) = self.spool_file.write.take() {
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
        self.spool_file = SpoolFile::default();
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
fn release_after(write: SpoolWrite, spool: Arc<TurnSpool>, entry: SpoolEntry) {
    let write = write.into_task();
    tokio::spawn(async move {
        let _landed = write.await;
        spool.release(&entry);
    });
}
