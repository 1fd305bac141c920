//! The live calls of a server by `pc_id`, so that a later offer or a
//! trickled candidate reaches the call it names.
//!
//! The map holds each call's [`CallConnection`] weakly: a call's
//! [`Registration`] removes it when the call is closed or dropped, and a
//! call dropped without closing is gone from the map at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::connection::CallConnection;

type Calls = HashMap<Arc<str>, Weak<CallConnection>>;

/// The live calls by `pc_id`; clones share the map.
#[derive(Clone, Default)]
pub(crate) struct LiveCalls {
    calls: Arc<Mutex<Calls>>,
}

impl LiveCalls {
    fn lock(&self) -> MutexGuard<'_, Calls> {
        // Each change is one insert or remove: a panic cannot leave the map
        // half-changed.
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `connection` under its `pc_id`, until the registration is
    /// dropped.
    pub(crate) fn register(&self, connection: &Arc<CallConnection>) -> Registration {
        let pc_id = Arc::clone(connection.pc_id());
        self.lock()
            .insert(Arc::clone(&pc_id), Arc::downgrade(connection));
        Registration {
            calls: self.clone(),
            pc_id,
        }
    }

    /// The live call named `pc_id`: not one whose end has begun, which an
    /// offer naming it finds ended (see `connection`).
    pub(crate) fn get(&self, pc_id: &str) -> Option<Arc<CallConnection>> {
        self.lock()
            .get(pc_id)
            .and_then(Weak::upgrade)
            .filter(|call| call.is_live())
    }
}

/// Keeps a call in [`LiveCalls`]; removes it when dropped.
pub(crate) struct Registration {
    calls: LiveCalls,
    pc_id: Arc<str>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.calls.lock().remove(&self.pc_id);
    }
}
