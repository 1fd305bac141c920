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
//!   memory growth. The bound is a counter beside the lane: a push with
//!   room is one atomic add, and only a push that must wait allocates (its
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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::sync::{Notify, oneshot};

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

/// The three lanes of one inbox, behind one lock, with the receiver's
/// waker. One lock and one waker per inbox, where three tokio channels each
/// had their own: a frame's hop is a push and a pop on a short `VecDeque`
/// whose few slots stay in cache, where the channels' 32-slot blocks were a
/// cold cache line for every frame at a thousand calls, and their pops and
/// waker registrations were about 7% of a loaded Twilio server (`perf`,
/// 500 parrot calls).
#[derive(Debug, Default)]
struct Lanes {
    system: VecDeque<Queued>,
    upstream: VecDeque<Queued>,
    downstream: VecDeque<Queued>,
    /// The receiver, parked on an empty inbox.
    waiting: Option<Waker>,
    /// Mailboxes alive: none left, an empty inbox is over.
    senders: usize,
    /// The receiver has closed or dropped the inbox.
    closed: bool,
}

/// What a mailbox and its inbox share.
#[derive(Debug)]
struct Shared {
    lanes: Mutex<Lanes>,
    room: Room,
}

impl Shared {
    fn lanes(&self) -> MutexGuard<'_, Lanes> {
        // Every critical section leaves the lanes consistent: a panic inside
        // one (an allocation failure) loses at most the item in hand.
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `item` to `lane` and wakes the receiver; gives the item back
    /// if the inbox is closed.
    // Given back whole, as `try_send`'s error: boxing would allocate.
    #[allow(clippy::result_large_err)]
    fn push(&self, item: Queued, lane: Lane) -> Result<(), Queued> {
        let waiting = {
            let mut lanes = self.lanes();
            if lanes.closed {
                return Err(item);
            }
            match lane {
                Lane::System => lanes.system.push_back(item),
                Lane::Upstream => lanes.upstream.push_back(item),
                Lane::Downstream => lanes.downstream.push_back(item),
            }
            lanes.waiting.take()
        };
        if let Some(waker) = waiting {
            waker.wake();
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum Lane {
    System,
    Upstream,
    Downstream,
}

/// The sending side of a processor's inbox.
#[derive(Debug)]
pub(crate) struct Mailbox {
    shared: Arc<Shared>,
    seq: Arc<AtomicU64>,
    in_flight: Option<Arc<InFlight>>,
}

impl Clone for Mailbox {
    fn clone(&self) -> Self {
        self.shared.lanes().senders += 1;
        Mailbox {
            shared: Arc::clone(&self.shared),
            seq: Arc::clone(&self.seq),
            in_flight: self.in_flight.clone(),
        }
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        let waiting = {
            let mut lanes = self.shared.lanes();
            lanes.senders -= 1;
            if lanes.senders > 0 {
                return;
            }
            lanes.waiting.take()
        };
        // The last one: a receiver parked on an empty inbox is done.
        if let Some(waker) = waiting {
            waker.wake();
        }
    }
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
    shared: Arc<Shared>,
    /// Once fired, `recv` ends as soon as the lanes are empty.
    retire: Option<oneshot::Receiver<()>>,
}

/// A new inbox whose bounded lane holds `capacity` frames.
pub(crate) fn inbox(capacity: usize, in_flight: Option<&Arc<InFlight>>) -> (Mailbox, Inbox) {
    let shared = Arc::new(Shared {
        lanes: Mutex::new(Lanes {
            senders: 1,
            ..Lanes::default()
        }),
        room: Room {
            held: AtomicUsize::new(0),
            capacity: capacity.max(1),
            closed: AtomicBool::new(false),
            freed: Notify::new(),
        },
    });
    (
        Mailbox {
            shared: Arc::clone(&shared),
            seq: Arc::new(AtomicU64::new(0)),
            in_flight: in_flight.cloned(),
        },
        Inbox {
            shared,
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
            (FrameKind::System, _) => Lane::System,
            (_, Direction::Upstream) => Lane::Upstream,
            (_, Direction::Downstream) => {
                let room = &self.shared.room;
                if room.is_full() {
                    return Err(TrySendError::Full(item));
                }
                room.held.fetch_add(1, Ordering::AcqRel);
                return self.shared.push(item, Lane::Downstream).map_err(|item| {
                    room.held.fetch_sub(1, Ordering::AcqRel);
                    TrySendError::Closed(item.frame)
                });
            }
        };
        self.shared
            .push(item, lane)
            .map_err(|item| TrySendError::Closed(item.frame))
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
            let room = &self.shared.room;
            room.wait().await;
            room.held.fetch_add(1, Ordering::AcqRel);
            self.shared.push(item, Lane::Downstream).map_err(|item| {
                room.held.fetch_sub(1, Ordering::AcqRel);
                item.frame
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
        self.shared
            .push(item, Lane::System)
            .map_err(|item| item.frame)
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        // A task that stopped without closing (it panicked) must not leave
        // a sender waiting for room forever, nor frames queued to nobody.
        self.close();
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

    /// The next item in lane order, or whether the inbox is over (`Ready(None)`:
    /// empty, and every mailbox gone or the inbox closed). Parks `cx`'s
    /// waker when empty.
    fn poll_next(shared: &Shared, cx: Option<&mut Context<'_>>) -> Poll<Option<Queued>> {
        let mut lanes = shared.lanes();
        if let Some(item) = lanes.system.pop_front() {
            return Poll::Ready(Some(item));
        }
        if let Some(item) = lanes.upstream.pop_front() {
            return Poll::Ready(Some(item));
        }
        if let Some(item) = lanes.downstream.pop_front() {
            drop(lanes);
            shared.room.release();
            return Poll::Ready(Some(item));
        }
        if lanes.senders == 0 || lanes.closed {
            return Poll::Ready(None);
        }
        if let Some(cx) = cx {
            match &mut lanes.waiting {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                waiting => *waiting = Some(cx.waker().clone()),
            }
        }
        Poll::Pending
    }

    /// The next item: system lane first, then upstream, then downstream.
    /// `None` once every sender is gone, or once retired with nothing
    /// queued.
    ///
    /// # Cancel safety
    /// Cancel safe: no item is lost if the future is dropped.
    pub(crate) async fn recv(&mut self) -> Option<Queued> {
        // Fast path without a select: a busy processor never parks.
        if let Poll::Ready(next) = Self::poll_next(&self.shared, None) {
            return next;
        }
        let shared = &self.shared;
        let next = std::future::poll_fn(|cx| Self::poll_next(shared, Some(cx)));
        tokio::select! {
            biased;
            next = next => next,
            () = retired(&mut self.retire) => None,
        }
    }

    /// Refuses further frames and drops whatever is queued (releasing its
    /// in-flight tokens).
    pub(crate) fn close(&mut self) {
        let queued = {
            let mut lanes = self.shared.lanes();
            lanes.closed = true;
            lanes.waiting = None;
            [
                std::mem::take(&mut lanes.system),
                std::mem::take(&mut lanes.downstream),
                std::mem::take(&mut lanes.upstream),
            ]
        };
        let room = &self.shared.room;
        room.closed.store(true, Ordering::Release);
        room.freed.notify_waiters();
        // Dropped outside the lock: a frame's drop may run anything.
        drop(queued);
    }
}
