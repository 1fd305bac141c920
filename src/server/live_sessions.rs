//! The live sessions of a server: admission against the limit, and ending
//! them all at shutdown.
//!
//! A session holds a [`SessionPermit`] from the moment its connection is
//! accepted (before the handshake: a connection costs resources before it
//! is a session) until its connection is closed, hang-up included; dropping
//! the permit frees the slot. Once draining starts, nothing new is
//! admitted. It keeps each running session's
//! [`PipelineHandle`], so a shutdown can end (drain) and, later, cancel
//! every one of them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use crate::metrics::prometheus::Gauge;
use crate::pipeline::PipelineHandle;
use crate::pipeline::new_session_id;

/// Why a session was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum Refusal {
    /// As many sessions as allowed are running.
    #[error("at capacity ({0} sessions)")]
    AtCapacity(usize),
    /// The server is shutting down.
    #[error("shutting down")]
    Draining,
}

impl Refusal {
    /// A short stable label for metrics.
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Refusal::AtCapacity(_) => "at_capacity",
            Refusal::Draining => "draining",
        }
    }
}

#[derive(Default)]
struct Inner {
    draining: bool,
    /// Set once every session has been told to end; a session that starts
    /// running after that is ended at once.
    ending: Option<Arc<str>>,
    sessions: HashMap<u64, Slot>,
}

/// One admitted session: its id, and its handle once it runs.
struct Slot {
    id: Arc<str>,
    handle: Option<PipelineHandle>,
}

/// The server's live sessions.
pub(crate) struct LiveSessions {
    max: usize,
    inner: Mutex<Inner>,
    changed: Notify,
    next_key: AtomicU64,
    active: Gauge,
}

impl LiveSessions {
    pub(crate) fn new(max: usize, active: Gauge) -> Arc<Self> {
        Arc::new(LiveSessions {
            max,
            inner: Mutex::new(Inner::default()),
            changed: Notify::new(),
            next_key: AtomicU64::new(0),
            active,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change is one insert or remove: a panic cannot leave the map
        // half-changed.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new session, with a fresh session id.
    pub(crate) fn admit(self: &Arc<Self>) -> Result<SessionPermit, Refusal> {
        self.admit_as(new_session_id().into())
    }

    /// A slot for a new session whose id was given out before (by
    /// `POST /start`).
    pub(crate) fn admit_as(
        self: &Arc<Self>,
        session_id: Arc<str>,
    ) -> Result<SessionPermit, Refusal> {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        {
            let mut inner = self.lock();
            if inner.draining {
                return Err(Refusal::Draining);
            }
            if inner.sessions.len() >= self.max {
                return Err(Refusal::AtCapacity(self.max));
            }
            inner.sessions.insert(
                key,
                Slot {
                    id: Arc::clone(&session_id),
                    handle: None,
                },
            );
        }
        self.active.inc();
        Ok(SessionPermit {
            sessions: Arc::clone(self),
            key,
            session_id,
        })
    }

    /// Whether a new session would be admitted now.
    pub(crate) fn check(&self) -> Result<(), Refusal> {
        let inner = self.lock();
        if inner.draining {
            Err(Refusal::Draining)
        } else if inner.sessions.len() >= self.max {
            Err(Refusal::AtCapacity(self.max))
        } else {
            Ok(())
        }
    }

    pub(crate) fn active(&self) -> usize {
        self.lock().sessions.len()
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Refuses new sessions from now on.
    pub(crate) fn start_draining(&self) {
        self.lock().draining = true;
    }

    /// Waits until no session is left, or `timeout`; true if none is left.
    pub(crate) async fn wait_empty(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.lock().sessions.is_empty() {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.lock().sessions.is_empty();
            }
        }
    }

    fn handles(&self) -> Vec<PipelineHandle> {
        self.lock()
            .sessions
            .values()
            .filter_map(|slot| slot.handle.clone())
            .collect()
    }

    /// The handle of the running session `session_id`, if it runs here.
    pub(crate) fn handle_of(&self, session_id: &str) -> Option<PipelineHandle> {
        self.lock()
            .sessions
            .values()
            .find(|slot| &*slot.id == session_id)
            .and_then(|slot| slot.handle.clone())
    }

    /// Waits until the session `session_id` runs here, or `timeout`.
    pub(crate) async fn running(
        &self,
        session_id: &str,
        timeout: Duration,
    ) -> Option<PipelineHandle> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(handle) = self.handle_of(session_id) {
                return Some(handle);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.handle_of(session_id);
            }
        }
    }

    /// Ends every running session gracefully (its turns complete), and
    /// any that starts running from now on.
    pub(crate) async fn end_all(&self, reason: &str) {
        self.lock().ending = Some(reason.into());
        for handle in self.handles() {
            handle.end(reason).await;
        }
    }

    /// Cancels every running session.
    pub(crate) fn cancel_all(&self, reason: &str) {
        for handle in self.handles() {
            handle.cancel(reason);
        }
    }
}

/// A session's slot; freed when dropped.
pub(crate) struct SessionPermit {
    sessions: Arc<LiveSessions>,
    key: u64,
    session_id: Arc<str>,
}

impl SessionPermit {
    pub(crate) fn session_id(&self) -> &Arc<str> {
        &self.session_id
    }

    /// Takes `session_id` as this session's id instead of the one it was
    /// admitted with (an outbound call's stream joining its call), unless
    /// another session here has that id. True when taken.
    pub(crate) fn adopt(&mut self, session_id: Arc<str>) -> bool {
        let mut inner = self.sessions.lock();
        if inner
            .sessions
            .iter()
            .any(|(key, slot)| *key != self.key && slot.id == session_id)
        {
            return false;
        }
        if let Some(slot) = inner.sessions.get_mut(&self.key) {
            slot.id = Arc::clone(&session_id);
        }
        self.session_id = session_id;
        true
    }

    /// The session is running: a shutdown can now end it through `handle`.
    /// Returns the reason to end it with at once if the shutdown has
    /// already ended the others.
    pub(crate) fn attach(&self, handle: PipelineHandle) -> Option<Arc<str>> {
        let ending = {
            let mut inner = self.sessions.lock();
            if let Some(slot) = inner.sessions.get_mut(&self.key) {
                slot.handle = Some(handle);
            }
            inner.ending.clone()
        };
        self.sessions.changed.notify_waiters();
        ending
    }
}

impl Drop for SessionPermit {
    fn drop(&mut self) {
        self.sessions.lock().sessions.remove(&self.key);
        self.sessions.active.dec();
        self.sessions.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn admits_up_to_the_limit_and_frees_slots_on_drop() {
        let sessions = LiveSessions::new(2, Gauge::default());
        let a = sessions.admit().unwrap();
        let b = sessions.admit().unwrap();
        assert_ne!(a.session_id(), b.session_id());
        assert_eq!(sessions.admit().err(), Some(Refusal::AtCapacity(2)));
        drop(a);
        assert!(sessions.check().is_ok());
        let _c = sessions.admit().unwrap();
        assert_eq!(sessions.active(), 2);
    }

    #[tokio::test]
    async fn a_session_adopts_an_id_no_other_session_has() {
        let sessions = LiveSessions::new(4, Gauge::default());
        let mut a = sessions.admit().unwrap();
        let mut b = sessions.admit().unwrap();
        assert!(a.adopt("call-1".into()));
        assert_eq!(&**a.session_id(), "call-1");
        assert!(!b.adopt("call-1".into()));
        drop(a);
        assert!(b.adopt("call-1".into()));
    }

    #[tokio::test(start_paused = true)]
    async fn draining_refuses_new_sessions_and_waits_for_the_others() {
        let sessions = LiveSessions::new(10, Gauge::default());
        let permit = sessions.admit().unwrap();
        sessions.start_draining();
        assert_eq!(sessions.admit().err(), Some(Refusal::Draining));
        assert!(!sessions.wait_empty(Duration::from_millis(10)).await);
        let waiting = tokio::spawn({
            let sessions = Arc::clone(&sessions);
            async move { sessions.wait_empty(Duration::from_secs(60)).await }
        });
        drop(permit);
        assert!(waiting.await.unwrap());
    }
}
