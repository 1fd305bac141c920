//! [`PendingSessions`]: sessions `POST /start` made that have not sent
//! their first offer yet (sans-IO: the time is passed in).
//!
//! Each keeps what `/start` was given (its `body`, the session's custom
//! parameters) until its offer takes it, or until it expires unused
//! (`[server] session_ttl_secs`). The table is bounded: at most as many as
//! the server has session slots, so a client calling `/start` in a loop
//! fills the table, not memory; expired entries are swept whenever a new
//! one needs the room. A session is taken by its first offer and put back
//! if that offer could not be answered (or its request was abandoned), so
//! a page may retry.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// A session waiting for its first offer.
#[derive(Debug, Clone)]
struct Pending {
    parameters: BTreeMap<String, String>,
    expires: Instant,
}

/// The table is full of sessions still waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many sessions waiting for their offer ({0})")]
pub(crate) struct Full(pub(crate) usize);

/// Sessions started but not yet offered, by id.
#[derive(Debug)]
pub(crate) struct PendingSessions {
    capacity: usize,
    sessions: HashMap<String, Pending>,
}

impl PendingSessions {
    pub(crate) fn new(capacity: usize) -> Self {
        PendingSessions {
            capacity: capacity.max(1),
            sessions: HashMap::new(),
        }
    }

    /// Keeps session `id` and its parameters until `expires`.
    pub(crate) fn insert(
        &mut self,
        id: String,
        parameters: BTreeMap<String, String>,
        expires: Instant,
        now: Instant,
    ) -> Result<(), Full> {
        if self.sessions.len() >= self.capacity {
            self.sessions.retain(|_, p| p.expires >= now);
        }
        if self.sessions.len() >= self.capacity {
            return Err(Full(self.capacity));
        }
        self.sessions.insert(
            id,
            Pending {
                parameters,
                expires,
            },
        );
        Ok(())
    }

    /// Takes session `id` for its first offer: its parameters and when it
    /// expires, or `None` when it is unknown, already taken or expired.
    pub(crate) fn take(
        &mut self,
        id: &str,
        now: Instant,
    ) -> Option<(BTreeMap<String, String>, Instant)> {
        let pending = self.sessions.remove(id)?;
        (pending.expires >= now).then_some((pending.parameters, pending.expires))
    }

    /// Puts back a session whose offer could not be answered.
    pub(crate) fn put_back(
        &mut self,
        id: String,
        parameters: BTreeMap<String, String>,
        expires: Instant,
    ) {
        self.sessions.insert(
            id,
            Pending {
                parameters,
                expires,
            },
        );
    }

    /// Sessions waiting now (expired ones included until swept).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn params(user: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("user".to_owned(), user.to_owned())])
    }

    #[test]
    fn a_session_is_taken_once_by_its_offer_before_it_expires() {
        let mut pending = PendingSessions::new(10);
        let t0 = Instant::now();
        let ttl = Duration::from_secs(60);
        pending
            .insert("a".into(), params("ada"), t0 + ttl, t0)
            .unwrap();
        pending
            .insert("b".into(), params("bob"), t0 + ttl, t0)
            .unwrap();
        assert_eq!(pending.take("a", t0 + ttl), Some((params("ada"), t0 + ttl)));
        assert_eq!(pending.take("a", t0), None, "once");
        assert_eq!(
            pending.take("b", t0 + ttl + Duration::from_millis(1)),
            None,
            "expired"
        );
        assert_eq!(pending.take("c", t0), None, "unknown");
        pending.put_back("a".into(), params("ada"), t0 + ttl);
        assert!(pending.take("a", t0).is_some(), "retried");
    }

    #[test]
    fn the_table_is_bounded_and_expired_sessions_make_room() {
        let mut pending = PendingSessions::new(2);
        let t0 = Instant::now();
        let soon = t0 + Duration::from_secs(1);
        pending.insert("a".into(), params("a"), soon, t0).unwrap();
        pending
            .insert("b".into(), params("b"), t0 + Duration::from_secs(60), t0)
            .unwrap();
        assert_eq!(
            pending.insert("c".into(), params("c"), soon, t0),
            Err(Full(2))
        );
        let later = t0 + Duration::from_secs(2);
        pending
            .insert(
                "c".into(),
                params("c"),
                later + Duration::from_secs(60),
                later,
            )
            .unwrap();
        assert_eq!(pending.len(), 2, "the expired one was swept");
        assert_eq!(pending.take("a", later), None);
    }
}
