//! A disk that hangs, for tests: while the gate is closed, a writer's
//! [`keep`](super::TurnSpool::keep) and [`discard`](super::TurnSpool::discard)
//! block on their blocking thread, as on a disk that does not answer, and
//! the test learns when one has arrived.

use std::sync::{Condvar, Mutex};

use tokio::sync::watch;

use super::files::lock;

/// Holds the spool's file work while closed.
#[derive(Debug)]
pub(crate) struct DiskGate {
    closed: Mutex<bool>,
    opened: Condvar,
    /// How many pieces of work have arrived at the gate so far.
    arrived: watch::Sender<usize>,
}

impl Default for DiskGate {
    fn default() -> Self {
        DiskGate {
            closed: Mutex::new(false),
            opened: Condvar::new(),
            arrived: watch::Sender::new(0),
        }
    }
}

impl DiskGate {
    /// Called by the file work, on its blocking thread: waits while the
    /// gate is closed.
    pub(super) fn pass(&self) {
        let closed = lock(&self.closed);
        if *closed {
            self.arrived.send_modify(|n| *n += 1);
        }
        let _open = self
            .opened
            .wait_while(closed, |closed| *closed)
            .unwrap_or_else(|e| e.into_inner());
    }

    /// From now on, file work waits.
    pub(crate) fn close(&self) {
        *lock(&self.closed) = true;
    }

    /// Lets all file work through.
    pub(crate) fn open(&self) {
        *lock(&self.closed) = false;
        self.opened.notify_all();
    }

    /// Waits until `count` pieces of work in all have found the gate
    /// closed.
    pub(crate) async fn arrived(&self, count: usize) {
        let mut arrived = self.arrived.subscribe();
        let _ = arrived.wait_for(|n| *n >= count).await;
    }
}
