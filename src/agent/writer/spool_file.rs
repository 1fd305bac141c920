//! A writer's file in the turn spool: its entry, the write of it the disk
//! has not finished, and whether the disk holds the pending steps.
//!
//! A write runs on a blocking thread and is never waited for by the
//! writer's loop: the loop polls it ([`write_done`]) beside the store call,
//! the flush deadline and the commands, so a disk that hangs holds up none
//! of them. One write at a time: older content never lands after newer.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::agent::turn_spool::{SpoolEntry, SpoolError, SpooledCall, TurnSpool};

/// How long a spool write may take before it is reported as stalled, and
/// the longest the writer ever waits for the disk (at the flush deadline,
/// or to remove its file once everything is written).
pub(super) const SPOOL_WRITE_LIMIT: Duration = Duration::from_secs(5);

/// A writer's spool file.
pub(super) struct SpoolFile {
    /// This writer's file, once it has needed one.
    pub(super) entry: Option<SpoolEntry>,
    /// The write the disk has not finished, if any.
    pub(super) write: Option<SpoolWrite>,
    /// True while the spool holds this writer's file (a write landed).
    pub(super) landed: bool,
    /// True when the file, if any, does not hold the pending steps as they
    /// are: they changed since the last write took them, or it failed.
    pub(super) changed: bool,
    /// True when a write is wanted: steps came in, or the store failed or
    /// was slow, since the last write began. A write that failed is tried
    /// again at the next of these, not in a loop against a full disk.
    pub(super) due: bool,
}

impl Default for SpoolFile {
    fn default() -> Self {
        SpoolFile {
            entry: None,
            write: None,
            landed: false,
            // Nothing is on disk yet.
            changed: true,
            due: false,
        }
    }
}

/// A write of a spool file, in flight.
pub(super) struct SpoolWrite {
    task: JoinHandle<Result<(), SpoolError>>,
    /// The steps it writes.
    steps: usize,
    /// When it is late ([`SPOOL_WRITE_LIMIT`] after it began).
    late_at: Instant,
    /// True once it was reported late.
    reported_late: bool,
}

impl SpoolWrite {
    /// Starts writing `call` as `entry`'s file, off the runtime's workers.
    pub(super) fn start(spool: Arc<TurnSpool>, entry: SpoolEntry, call: SpooledCall) -> Self {
        let steps = call.steps.len();
        SpoolWrite {
            task: tokio::task::spawn_blocking(move || spool.keep(&entry, &call)),
            steps,
            late_at: Instant::now() + SPOOL_WRITE_LIMIT,
            reported_late: false,
        }
    }

    /// The unfinished write itself, for a task that waits for it.
    pub(super) fn into_task(self) -> JoinHandle<Result<(), SpoolError>> {
        self.task
    }
}

/// Resolves when the write in `write` has landed (the steps it wrote) or
/// failed, taking it out; never while there is none. Says once, at its
/// limit, that a write is stalled.
///
/// # Cancel safety
///
/// Cancel safe: the write goes on, and the next call waits for it still.
pub(super) async fn write_done(
    write: &mut Option<SpoolWrite>,
    call_id: &str,
) -> Result<usize, SpoolError> {
    let Some(in_flight) = write else {
        return std::future::pending().await;
    };
    if !in_flight.reported_late {
        match tokio::time::timeout_at(in_flight.late_at, &mut in_flight.task).await {
            Ok(done) => return finish(write, done),
            Err(_) => {
                in_flight.reported_late = true;
                tracing::error!(
                    call_id,
                    limit = ?SPOOL_WRITE_LIMIT,
                    "a turn spool write is stalled on the disk; the pending steps wait in memory until it answers"
                );
            }
        }
    }
    let done = (&mut in_flight.task).await;
    finish(write, done)
}

fn finish(
    write: &mut Option<SpoolWrite>,
    done: Result<Result<(), SpoolError>, tokio::task::JoinError>,
) -> Result<usize, SpoolError> {
    let steps = write.take().map_or(0, |w| w.steps);
    match done {
        Ok(Ok(())) => Ok(steps),
        Ok(Err(err)) => Err(err),
        // The blocking task panicked or was cancelled.
        Err(_) => Err(SpoolError::Stalled),
    }
}
