//! A disk that hangs, for tests: while the gate is closed, a writer's
//! [`keep`](super::TurnSpool::keep) and [`discard`](super::TurnSpool::discard)
//! block on their blocking thread, as on a disk that does not answer, and
//! the test learns when one has arrived. The gate opens when the guard
//! that closed it is dropped, a failing test's too: a runtime waits for
//! its blocking tasks when it shuts down, and would wait for ever.

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

    /// From now on, file work waits, until the guard is dropped.
    #[must_use = "the gate opens when the guard is dropped"]
    pub(crate) fn close(&self) -> Closed<'_> {
        *lock(&self.closed) = true;
        Closed { gate: self }
    }

    /// Lets all file work through.
    fn open(&self) {
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

/// The gate closed: it opens when this is dropped.
#[derive(Debug)]
pub(crate) struct Closed<'a> {
    gate: &'a DiskGate,
}

impl Drop for Closed<'_> {
    fn drop(&mut self) {
        self.gate.open();
    }
}
