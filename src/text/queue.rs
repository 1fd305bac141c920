//! [`Queues`]: each conversation's messages answered one at a time, in the
//! order they were admitted, and how many may be in flight at all.
//!
//! A message takes its place ([`Ticket`]) synchronously, when it is
//! admitted: a handler admits a message before its first `await`, so two
//! messages of one conversation are answered in the order their requests
//! reached it, whatever the store round trips or the task scheduler do
//! after. (A `tokio::sync::Mutex` would order them by their first poll of
//! `lock()`, which comes after those awaits.)
//!
//! Each conversation with a message in flight has a line: the message
//! answering holds its turn ([`Held`]); the others wait, in order, each on
//! a oneshot channel through which the turn is handed on. A turn dropped
//! hands itself to the first waiter still waiting; a waiter that gave up
//! (its task cancelled, its ticket dropped) is skipped, and a turn handed
//! to a waiter that has just gone is dropped with it and handed on again,
//! so no turn is ever lost. The line is removed when its last turn ends,
//! so a conversation at rest holds nothing in memory.
//!
//! Bounds: at most `max_waiting` messages wait behind the one answering in
//! a conversation, and at most `max_in_flight` messages are admitted in
//! all (answering, waiting, or delivering their answer); past either, a
//! message is refused at once ([`Overloaded`]) rather than queued.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// Why a message was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Overloaded {
    /// Its conversation already has as many messages waiting as it may.
    #[error("too many messages of this conversation are waiting to be answered")]
    Conversation,
    /// The process has as many messages in flight as `[text]
    /// max_messages_in_flight` allows.
    #[error("too many text messages are being answered")]
    Server,
}

/// The lines of every conversation with a message in flight.
pub(crate) struct Queues {
    lines: Arc<Lines>,
    in_flight: Arc<Semaphore>,
}

struct Lines {
    /// By conversation key: the messages waiting behind the one that holds
    /// the turn (present: a turn is held).
    waiting: Mutex<HashMap<String, VecDeque<oneshot::Sender<Held>>>>,
    max_waiting: usize,
}

/// A conversation's turn: while it is held, the conversation's next
/// message waits. Dropping it hands the turn on.
pub(crate) struct Held {
    /// `None` once handed on (or for a turn of no line).
    line: Option<(Arc<Lines>, String)>,
}

/// A message's place in its conversation's line, and its share of the
/// in-flight bound (kept until the turn it becomes is dropped).
pub(crate) struct Ticket {
    place: Place,
    permit: OwnedSemaphorePermit,
}

enum Place {
    Now(Held),
    Waiting(oneshot::Receiver<Held>),
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let place = match self.place {
            Place::Now(_) => "now",
            Place::Waiting(_) => "waiting",
        };
        f.debug_struct("Ticket").field("place", &place).finish()
    }
}

impl Queues {
    /// Lines of at most `max_waiting` waiting messages each, and at most
    /// `max_in_flight` messages admitted in all.
    pub(crate) fn new(max_waiting: usize, max_in_flight: usize) -> Self {
        Queues {
            lines: Arc::new(Lines {
                waiting: Mutex::new(HashMap::new()),
                max_waiting,
            }),
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
        }
    }

    /// Admits a message of the conversation `key`: its place, behind
    /// every message of it admitted before. Never waits.
    pub(crate) fn admit(&self, key: &str) -> Result<Ticket, Overloaded> {
        let permit = Arc::clone(&self.in_flight)
            .try_acquire_owned()
            .map_err(|_| Overloaded::Server)?;
        let mut lines = self.lines.lock();
        let place = match lines.get_mut(key) {
            None => {
                lines.insert(key.to_owned(), VecDeque::new());
                Place::Now(Held {
                    line: Some((Arc::clone(&self.lines), key.to_owned())),
                })
            }
            Some(waiting) => {
                // Waiters that gave up still count until the turn passes
                // them: dropped here, they would not.
                waiting.retain(|tx| !tx.is_closed());
                if waiting.len() >= self.lines.max_waiting {
                    return Err(Overloaded::Conversation);
                }
                let (tx, rx) = oneshot::channel();
                waiting.push_back(tx);
                Place::Waiting(rx)
            }
        };
        Ok(Ticket { place, permit })
    }

    /// How many conversations have a message in flight.
    pub(crate) fn lines(&self) -> usize {
        self.lines.lock().len()
    }
}

impl Lines {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<oneshot::Sender<Held>>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Ticket {
    /// Waits for the turn; the in-flight share comes with it.
    ///
    /// # Cancel safety
    ///
    /// Cancelled, the place is given up: the turn, if it came meanwhile,
    /// is handed on to the next message.
    pub(crate) async fn turn(self) -> (Held, OwnedSemaphorePermit) {
        let held = match self.place {
            Place::Now(held) => held,
            // The line is gone only with the conversations themselves:
            // nothing is left to keep in order with.
            Place::Waiting(rx) => rx.await.unwrap_or(Held { line: None }),
        };
        (held, self.permit)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some((lines, key)) = self.line.take() else {
            return;
        };
        loop {
            let next = {
                let mut waiting = lines.lock();
                let Some(line) = waiting.get_mut(&key) else {
                    return;
                };
                match line.pop_front() {
                    Some(next) => next,
                    None => {
                        waiting.remove(&key);
                        return;
                    }
                }
            };
            // Sent outside the lock: a turn refused (its waiter gone) is
            // disarmed, and the next waiter tried.
            let turn = Held {
                line: Some((Arc::clone(&lines), key.clone())),
            };
            match next.send(turn) {
                Ok(()) => return,
                Err(mut refused) => refused.line = None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use futures_util::FutureExt as _;

    #[tokio::test]
    async fn turns_follow_admission_whoever_waits_first() {
        let queues = Queues::new(8, 100);
        let first = queues.admit("a").unwrap();
        let second = queues.admit("a").unwrap();
        let third = queues.admit("a").unwrap();
        // The third waits first, then the second: neither gets the turn.
        let mut third = Box::pin(third.turn());
        assert!((&mut third).now_or_never().is_none());
        let mut second = Box::pin(second.turn());
        assert!((&mut second).now_or_never().is_none());
        let (held, _permit) = first.turn().await;
        assert!((&mut third).now_or_never().is_none());
        drop(held);
        assert!((&mut third).now_or_never().is_none(), "overtook the second");
        let (held, _permit) = second.await;
        drop(held);
        let (held, _permit) = third.await;
        assert_eq!(queues.lines(), 1);
        drop(held);
        assert_eq!(queues.lines(), 0, "a conversation at rest holds nothing");
    }

    #[tokio::test]
    async fn a_place_given_up_passes_the_turn_on() {
        let queues = Queues::new(8, 100);
        let first = queues.admit("a").unwrap();
        let gone = queues.admit("a").unwrap();
        let last = queues.admit("a").unwrap();
        let (held, _permit) = first.turn().await;
        // One gives up before the turn comes, the other after.
        drop(gone);
        drop(held);
        let (held, _permit) = last.turn().await;
        let after = queues.admit("a").unwrap();
        let mut waiting = Box::pin(after.turn());
        assert!((&mut waiting).now_or_never().is_none());
        drop(held);
        drop(waiting);
        assert_eq!(queues.lines(), 0);
        assert!(queues.admit("a").is_ok());
    }

    #[tokio::test]
    async fn past_the_bounds_messages_are_refused_not_queued() {
        let queues = Queues::new(2, 4);
        let a: Vec<Ticket> = (0..3).map(|_| queues.admit("a").unwrap()).collect();
        assert_eq!(queues.admit("a").unwrap_err(), Overloaded::Conversation);
        let b = queues.admit("b").unwrap();
        assert_eq!(queues.admit("c").unwrap_err(), Overloaded::Server);
        drop(b);
        let (held, permit) = queues.admit("c").unwrap().turn().await;
        drop((held, permit));
        // A waiter that gave up frees its place in the line.
        let mut a = a.into_iter();
        let _first = a.next();
        drop(a.next());
        assert!(queues.admit("a").is_ok());
    }
}
