//! The queues between processors (private to the runner).
//!
//! Each processor owns an [`Inbox`] of three lanes; its neighbours hold a
//! [`Mailbox`] to it:
//!
//! - **system**: unbounded, served first. System frames are produced at a
//!   bounded rate (inbound audio at real time, a handful of signals), and a
//!   bound would let a slow processor stall inbound audio or an interruption.
//! - **downstream data/control**: bounded. A processor that pushes faster
//!   than the next one consumes waits on `push`: backpressure instead of
//!   memory growth. The bound is a counter beside an unbounded channel
//!   rather than tokio's bounded channel: a push with room is one atomic add
//!   and never takes a lock, and only a push that must wait allocates (its
//!   waiting future is boxed, so every `process` future stays small). The
//!   bound is soft by at most one frame per concurrent sender.
//! - **upstream data/control**: unbounded. Upstream data is rare, and a bound
//!   in both directions could deadlock two neighbours pushing at each other.
//!
//! Every queued item carries a sequence number taken when it was pushed; an
//! interruption with sequence `s` makes the receiver drop data and control
//! frames numbered below `s` as they come out of the lanes. Frames still
//! waiting on backpressure when the interruption arrived carry an older number
//! and are dropped too.
//!
//! On the audio clock, every queued item also holds an [`InFlight`] token
//! until the receiver has finished processing it, so the pipeline knows when
//! it is idle (used to run a file faster than real time, in lockstep with the
//! audio clock). Live sessions skip the bookkeeping: its shared counter would
//! cost every hop a contended atomic for nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use tokio::sync::{Notify, mpsc, oneshot};

use crate::frame::{Direction, Frame, FrameKind};

/// Counts frames queued or being processed anywhere in a pipeline.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

impl InFlight {
    pub(crate) fn token(self: &Arc<Self>) -> InFlightToken {
        self.count.fetch_add(1, Ordering::AcqRel);
        InFlightToken(Arc::clone(self))
    }

    /// Waits until nothing is queued or being processed.
    ///
    /// # Cancel safety
    /// Cancel safe: it holds no state between polls.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Decrements the in-flight count when dropped, however the item ends:
/// processed, dropped by an interruption, refused by a closed inbox, or lost
/// with a cancelled push.
#[derive(Debug)]
pub(crate) struct InFlightToken(Arc<InFlight>);

impl Drop for InFlightToken {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// One frame waiting in a lane.
#[derive(Debug)]
pub(crate) struct Queued {
    pub(crate) seq: u64,
    pub(crate) frame: Frame,
    pub(crate) direction: Direction,
    pub(crate) token: Option<InFlightToken>,
}

/// The room in a bounded lane: how many items it holds, and a wake-up for
/// senders waiting for room.
#[derive(Debug)]
struct Room {
    held: AtomicUsize,
    capacity: usize,
    /// Set when the receiver has gone: waiting senders give up.
    closed: AtomicBool,
    freed: Notify,
}

impl Room {
    fn is_full(&self) -> bool {
        self.held.load(Ordering::Acquire) >= self.capacity
    }

    /// One item left the lane.
    fn release(&self) {
        if self.held.fetch_sub(1, Ordering::AcqRel) == self.capacity {
            self.freed.notify_waiters();
        }
    }

    /// Waits until the lane has room or its receiver has gone.
    async fn wait(&self) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if !self.is_full() || self.closed.load(Ordering::Acquire) {
                return;
            }
            freed.await;
        }
    }
}

/// The sending side of a processor's inbox.
#[derive(Debug, Clone)]
pub(crate) struct Mailbox {
    system: mpsc::UnboundedSender<Queued>,
    downstream: mpsc::UnboundedSender<Queued>,
    room: Arc<Room>,
    upstream: mpsc::UnboundedSender<Queued>,
    seq: Arc<AtomicU64>,
    in_flight: Option<Arc<InFlight>>,
}

/// Why a frame could not be queued without waiting.
pub(crate) enum TrySendError {
    /// The bounded lane is full: the item (with its place in the order
    /// already taken) waits for room.
    Full(Queued),
    /// The receiver has stopped: the frame is given back.
    Closed(Frame),
}

/// The receiving side, owned by the processor's task.
#[derive(Debug)]
pub(crate) struct Inbox {
    system: mpsc::UnboundedReceiver<Queued>,
    downstream: mpsc::UnboundedReceiver<Queued>,
    room: Arc<Room>,
    upstream: mpsc::UnboundedReceiver<Queued>,
    /// Once fired, `recv` ends as soon as the lanes are empty.
    retire: Option<oneshot::Receiver<()>>,
}

/// A new inbox whose bounded lane holds `capacity` frames.
pub(crate) fn inbox(capacity: usize, in_flight: Option<&Arc<InFlight>>) -> (Mailbox, Inbox) {
    let (system_tx, system_rx) = mpsc::unbounded_channel();
    let (down_tx, down_rx) = mpsc::unbounded_channel();
    let (up_tx, up_rx) = mpsc::unbounded_channel();
    let room = Arc::new(Room {
        held: AtomicUsize::new(0),
        capacity: capacity.max(1),
        closed: AtomicBool::new(false),
        freed: Notify::new(),
    });
    (
        Mailbox {
            system: system_tx,
            downstream: down_tx,
            room: Arc::clone(&room),
            upstream: up_tx,
            seq: Arc::new(AtomicU64::new(0)),
            in_flight: in_flight.cloned(),
        },
        Inbox {
            system: system_rx,
            downstream: down_rx,
            room,
            upstream: up_rx,
            retire: None,
        },
    )
}

impl Mailbox {
    fn queued(&self, frame: Frame, direction: Direction) -> Queued {
        Queued {
            seq: self.seq.fetch_add(1, Ordering::AcqRel),
            frame,
            direction,
            token: self.in_flight.as_ref().map(InFlight::token),
        }
    }

    /// Queues a frame if there is room, without waiting.
    // The error gives the frame back, as tokio's `TrySendError<T>` does;
    // boxing it would allocate on a path taken by every push to a full lane.
    #[allow(clippy::result_large_err)]
    pub(crate) fn try_send(&self, frame: Frame, direction: Direction) -> Result<(), TrySendError> {
        let item = self.queued(frame, direction);
        let lane = match (item.frame.kind(), direction) {
            (FrameKind::System, _) => &self.system,
            (_, Direction::Upstream) => &self.upstream,
            (_, Direction::Downstream) => {
                if self.room.is_full() {
                    return Err(TrySendError::Full(item));
                }
                self.room.held.fetch_add(1, Ordering::AcqRel);
                return self.downstream.send(item).map_err(|e| {
                    self.room.held.fetch_sub(1, Ordering::AcqRel);
                    TrySendError::Closed(e.0.frame)
                });
            }
        };
        lane.send(item).map_err(|e| TrySendError::Closed(e.0.frame))
    }

    /// Queues an item that found the lane full, once there is room. Gives
    /// the frame back if the receiver has stopped. Boxed, so that only a
    /// push that has to wait pays for the waiting future.
    ///
    /// # Cancel safety
    /// If cancelled while waiting for room, the frame is dropped.
    pub(crate) fn send_when_room(
        &self,
        item: Queued,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Frame>> + Send + '_>> {
        Box::pin(async move {
            self.room.wait().await;
            self.room.held.fetch_add(1, Ordering::AcqRel);
            self.downstream.send(item).map_err(|e| {
                self.room.held.fetch_sub(1, Ordering::AcqRel);
                e.0.frame
            })
        })
    }

    /// Queues a frame, waiting for room in the bounded lane if needed.
    /// Gives the frame back if the receiver has stopped.
    ///
    /// # Cancel safety
    /// If cancelled while waiting for room, the frame is dropped.
    pub(crate) async fn send(&self, frame: Frame, direction: Direction) -> Result<(), Frame> {
        match self.try_send(frame, direction) {
            Ok(()) => Ok(()),
            Err(TrySendError::Closed(frame)) => Err(frame),
            Err(TrySendError::Full(item)) => self.send_when_room(item).await,
        }
    }

    /// Queues a system frame without waiting. Gives it back if the receiver
    /// has stopped.
    pub(crate) fn send_system(&self, frame: Frame, direction: Direction) -> Result<(), Frame> {
        debug_assert_eq!(frame.kind(), FrameKind::System);
        let item = self.queued(frame, direction);
        self.system.send(item).map_err(|e| e.0.frame)
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        // A task that stopped without closing (it panicked) must not leave
        // a sender waiting for room forever.
        self.room.closed.store(true, Ordering::Release);
        self.room.freed.notify_waiters();
    }
}

async fn retired(retire: &mut Option<oneshot::Receiver<()>>) {
    match retire {
        // A dropped sender retires too: the pipeline is gone.
        Some(rx) => {
            let _fired_or_dropped = rx.await;
        }
        None => std::future::pending().await,
    }
}

impl Inbox {
    /// Makes `recv` end once `retire` fires and nothing is queued.
    pub(crate) fn retire_on(&mut self, retire: oneshot::Receiver<()>) {
        self.retire = Some(retire);
    }

    /// The next item: system lane first, then upstream, then downstream.
    /// `None` once every sender is gone, or once retired with nothing
    /// queued.
    ///
    /// # Cancel safety
    /// Cancel safe: no item is lost if the future is dropped.
    pub(crate) async fn recv(&mut self) -> Option<Queued> {
        // Fast path without a select: a busy processor never parks.
        if let Ok(item) = self.system.try_recv() {
            return Some(item);
        }
        if let Ok(item) = self.upstream.try_recv() {
            return Some(item);
        }
        if let Ok(item) = self.downstream.try_recv() {
            self.room.release();
            return Some(item);
        }
        tokio::select! {
            biased;
            Some(item) = self.system.recv() => Some(item),
            Some(item) = self.upstream.recv() => Some(item),
            Some(item) = self.downstream.recv() => {
                self.room.release();
                Some(item)
            }
            () = retired(&mut self.retire) => None,
            else => None,
        }
    }

    /// Refuses further frames and drops whatever is queued (releasing its
    /// in-flight tokens).
    pub(crate) fn close(&mut self) {
        self.system.close();
        self.downstream.close();
        self.upstream.close();
        self.room.closed.store(true, Ordering::Release);
        self.room.freed.notify_waiters();
        while self.system.try_recv().is_ok() {}
        while self.downstream.try_recv().is_ok() {}
        while self.upstream.try_recv().is_ok() {}
    }
}
