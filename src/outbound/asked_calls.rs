//! [`AskedCalls`]: calls this process asked Twilio for whose SID the store
//! does not have, so that no second try of them dials again.
//!
//! Twilio takes no idempotency key: once a create request has gone out, a
//! second one for the same call rings the person twice. Two things can
//! leave a call asked of Twilio without its SID in the store:
//!
//! - Twilio answered with the SID but the store failed to take it: the
//!   write is retried in the background ([`AskedCalls::keep_sid`]);
//! - Twilio's answer never came (a timeout; Twilio queues calls over an
//!   account's rate): the call may exist. Its status callbacks name it if
//!   it does; if none has once it would have rung out, it ends `failed`
//!   ([`AskedCalls::confirm_later`]).
//!
//! Meanwhile the dialler answers a second try of such a call from here
//! instead of dialling. This memory is the process's own: a restart loses
//! it (README, "Campaigns", says what that leaves).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::time::unix_ms;
use crate::store::{CallChange, CallStatus, RequestNote, Store, StoreError};

use super::settle::{Settlement, ended_by};

/// What this process knows of a call it asked Twilio for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Asked {
    /// Twilio placed it with this SID; the store has not taken it yet.
    Placed(String),
    /// Twilio's answer never came.
    Unconfirmed,
    /// Twilio created nothing for try `by`'s request, but the store did
    /// not take that back: the record still says try `by` asked, which
    /// a next try from here may do again under the same id.
    NotTaken(String),
}

/// See the module docs.
#[derive(Debug, Default, Clone)]
pub(super) struct AskedCalls {
    calls: Arc<Mutex<HashMap<String, Asked>>>,
}

impl AskedCalls {
    /// What this process knows of `call_id`, if it asked for it and the
    /// store lacks its SID.
    pub(super) fn get(&self, call_id: &str) -> Option<Asked> {
        self.lock().get(call_id).cloned()
    }

    /// Stores `dialled` (the call's SID) in the background, retrying while
    /// the store fails (about a minute); the call is remembered as placed
    /// until then.
    pub(super) fn keep_sid(&self, store: Arc<dyn Store>, call_id: &str, dialled: CallChange) {
        if let CallChange::Dialled { twilio_sid, .. } = &dialled {
            self.lock()
                .insert(call_id.to_owned(), Asked::Placed(twilio_sid.clone()));
        }
        let asked = self.clone();
        let call_id = call_id.to_owned();
        tokio::spawn(async move {
            let mut wait = Duration::from_secs(1);
            for _ in 0..6 {
                tokio::time::sleep(wait).await;
                match store.update_call(&call_id, &dialled).await {
                    Ok(_) => {
                        tracing::info!(call_id, "the placed call's SID is stored");
                        asked.lock().remove(&call_id);
                        return;
                    }
                    Err(err) => {
                        tracing::warn!(call_id, error = %err, "the placed call's SID is still not stored");
                    }
                }
                wait *= 2;
            }
            // Still remembered as placed: this process will not dial it
            // again, and its status callbacks carry the SID too.
            tracing::error!(call_id, "the placed call's SID could not be stored");
        });
    }

    /// Remembers that Twilio created nothing for try `by` of `call_id`,
    /// which the store still says asked.
    pub(super) fn not_taken(&self, call_id: &str, by: String) {
        self.lock().insert(call_id.to_owned(), Asked::NotTaken(by));
    }

    /// Takes `call_id`'s [`Asked::NotTaken`] try id, if any: one try
    /// alone may ask again under it.
    pub(super) fn take_not_taken(&self, call_id: &str) -> Option<String> {
        let mut calls = self.lock();
        match calls.get(call_id) {
            Some(Asked::NotTaken(_)) => match calls.remove(call_id) {
                Some(Asked::NotTaken(by)) => Some(by),
                _ => None,
            },
            _ => None,
        }
    }

    /// Remembers `call_id` as unconfirmed and, after `rung_out`, ends it
    /// failed unless it has moved on from `note` (the request note the
    /// unanswered request was sent under): a SID, a final status, or
    /// another request (asking again for a few minutes while the store
    /// fails).
    pub(super) fn confirm_later(
        &self,
        store: Arc<dyn Store>,
        settlement: Settlement,
        call_id: &str,
        rung_out: Duration,
        note: RequestNote,
    ) {
        self.lock().insert(call_id.to_owned(), Asked::Unconfirmed);
        let asked = self.clone();
        let call_id = call_id.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(rung_out).await;
            // One time for every try, so that a write that landed though
            // its answer was lost is known as this one's when tried again.
            let at_ms = unix_ms();
            for _ in 0..10 {
                match fail_if_unconfirmed(&*store, &settlement, &call_id, &note, at_ms).await {
                    Ok(()) => break,
                    Err(err) => {
                        tracing::warn!(call_id, error = %err, "cannot settle an unconfirmed call yet");
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                }
            }
            asked.lock().remove(&call_id);
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Asked>> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Ends `call_id` failed unless it moved on from `note` (a callback gave
/// it a SID or a final status, or another request went out): Twilio's
/// answer to the request sent under `note` never came.
async fn fail_if_unconfirmed(
    store: &dyn Store,
    settlement: &Settlement,
    call_id: &str,
    note: &RequestNote,
    at_ms: u64,
) -> Result<(), StoreError> {
    let change = CallChange::Unplaced {
        error: "Twilio never confirmed the call".to_owned(),
        at_ms,
        note: note.clone(),
    };
    let Some(call) = store.update_call(call_id, &change).await? else {
        return Ok(());
    };
    if ended_by(&call, CallStatus::Failed, at_ms) {
        settlement.settle(&call).await;
    }
    Ok(())
}
