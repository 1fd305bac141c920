//! The replayer's disk work, bounded in time.
//!
//! Each piece (a listing, a read, a write, a removal) runs on a blocking
//! thread, off the runtime's workers, and is waited for at most a limit.
//! A blocking call cannot be stopped: one given up on (past the limit, or
//! whose pass was dropped, at a shutdown) goes on until the disk answers,
//! and may still read, rewrite or remove a spool file. So:
//!
//! - every piece given up on is kept, each until it has finished (not only
//!   the last one: two passes may run at once, the runtime's and an
//!   operator's `replay_spool`);
//! - while any of them is unfinished, no new piece starts (a pass that
//!   asks is refused, and ends): a disk that hung once is not asked again
//!   until it has answered;
//! - at most [`MAX_DISK_WORK`] pieces run at once (one per pass running;
//!   a pass beyond that is refused, and ends).
//!
//! Pieces given up on are only ever among those running, so the guard
//! never holds more than [`MAX_DISK_WORK`] of them.
//!
//! What a piece must keep alive while it may still touch a file (the
//! stopped owners' locks of its pass) goes into its closure: it is dropped
//! on the blocking thread once the piece has finished, whenever that is.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::files::lock;

/// The most pieces of disk work running at once.
pub(super) const MAX_DISK_WORK: usize = 8;

/// Why a piece of disk work gave no result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NotDone {
    /// Not started: earlier work given up on is unfinished, or
    /// [`MAX_DISK_WORK`] pieces are running.
    Refused,
    /// Past the limit: given up on, and kept until it finishes.
    TimedOut,
    /// The blocking task failed (panicked).
    Failed,
}

/// The replayer's disk work of one spool.
#[derive(Debug)]
pub(super) struct DiskWork {
    limit: Duration,
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// Pieces running on a blocking thread now (given up on or not).
    running: usize,
    /// The pieces given up on, each until it has finished.
    abandoned: Vec<JoinHandle<()>>,
}

impl State {
    fn prune(&mut self) {
        self.abandoned.retain(|task| !task.is_finished());
    }
}

impl DiskWork {
    pub(super) fn new(limit: Duration) -> Self {
        DiskWork {
            limit,
            state: Arc::default(),
        }
    }

    /// How long a piece is waited for.
    pub(super) fn limit(&self) -> Duration {
        self.limit
    }

    /// True while a piece given up on is unfinished.
    pub(super) fn stalled(&self) -> bool {
        let mut state = lock(&self.state);
        state.prune();
        !state.abandoned.is_empty()
    }

    /// Runs `work` on a blocking thread and waits for it at most the
    /// limit.
    ///
    /// # Cancel safety
    ///
    /// Dropped before it returns, the piece is given up on as if past its
    /// limit: kept until it finishes, and no new one starts meanwhile.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, NotDone> {
        let running = self.admit().ok_or(NotDone::Refused)?;
        let (done, result) = tokio::sync::oneshot::channel();
        let task = tokio::task::spawn_blocking(move || {
            // Counted as running until the work has returned (or
            // unwound), whoever still waits for it.
            let _running = running;
            // Given up on, its result (an owner's lock, say) is dropped
            // here.
            let _ = done.send(work());
        });
        let mut waiting = Waiting {
            task: Some(task),
            state: &self.state,
        };
        let outcome = match tokio::time::timeout(self.limit, result).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(_)) => Err(NotDone::Failed),
            Err(_) => return Err(NotDone::TimedOut),
        };
        // Answered: nothing of it is left to keep.
        waiting.task = None;
        outcome
    }

    /// A place among the running pieces, if one may start.
    fn admit(&self) -> Option<Running> {
        let mut state = lock(&self.state);
        state.prune();
        if !state.abandoned.is_empty() || state.running >= MAX_DISK_WORK {
            return None;
        }
        state.running += 1;
        Some(Running {
            state: Arc::clone(&self.state),
        })
    }

    /// Waits until every piece given up on has finished.
    #[cfg(test)]
    pub(super) async fn settled(&self) {
        let abandoned = std::mem::take(&mut lock(&self.state).abandoned);
        for task in abandoned {
            let _ = task.await;
        }
    }

    /// Waits until one piece given up on has finished (any one), keeping
    /// the others.
    #[cfg(test)]
    pub(super) async fn one_settled(&self) {
        let abandoned = std::mem::take(&mut lock(&self.state).abandoned);
        if abandoned.is_empty() {
            return;
        }
        let (_, _, rest) = futures_util::future::select_all(abandoned).await;
        lock(&self.state).abandoned.extend(rest);
    }
}

/// One running piece, counted until dropped on its blocking thread.
struct Running {
    state: Arc<Mutex<State>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        state.running = state.running.saturating_sub(1);
    }
}

/// A piece being waited for: given up on (kept in the guard) if dropped
/// before it answered, past its limit or with its pass.
struct Waiting<'a> {
    task: Option<JoinHandle<()>>,
    state: &'a Mutex<State>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take()
            && !task.is_finished()
        {
            lock(self.state).abandoned.push(task);
        }
    }
}
