//! [`WebRtcSignalling`]: the calls of a server by `pc_id`, and the
//! signalling requests that reach them.
//!
//! A `POST /api/offer` naming a live call's `pc_id` renegotiates it (or,
//! with `restart_pc`, replaces its connection); any other offer is a new
//! call, which the server admits and runs as a session (see
//! [`WebRtcSignalling::accept`]). A `PATCH /api/offer` adds trickled
//! candidates to a live call. A call leaves the registry when it is closed
//! or dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::transport::{NoStats, TransportStats};

use super::call::{CallLink, WebRtcCall};
use super::settings::WebRtcSettings;
use super::signalling::{Answer, OfferRequest, PatchRequest, SignallingError};

type Calls = Arc<Mutex<HashMap<Arc<str>, Weak<CallLink>>>>;

/// A server's WebRTC calls and their signalling.
#[derive(Clone)]
pub struct WebRtcSignalling {
    settings: Arc<WebRtcSettings>,
    sample_rate: u32,
    stats: Arc<dyn TransportStats>,
    calls: Calls,
}

/// Keeps a call in the registry; removes it when dropped.
pub(crate) struct Registration {
    calls: Calls,
    pc_id: Arc<str>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.calls).remove(&self.pc_id);
    }
}

fn lock(calls: &Calls) -> MutexGuard<'_, HashMap<Arc<str>, Weak<CallLink>>> {
    // Each change is one insert or remove: a panic cannot leave the map
    // half-changed.
    calls.lock().unwrap_or_else(|e| e.into_inner())
}

impl WebRtcSignalling {
    /// Signalling for calls of a pipeline running at `sample_rate`.
    pub fn new(settings: WebRtcSettings, sample_rate: u32) -> Self {
        WebRtcSignalling {
            settings: Arc::new(settings),
            sample_rate,
            stats: Arc::new(NoStats),
            calls: Arc::default(),
        }
    }

    /// Counts the calls' traffic in `stats` (a server's metrics).
    pub fn with_stats(mut self, stats: Arc<dyn TransportStats>) -> Self {
        self.stats = stats;
        self
    }

    fn call(&self, pc_id: &str) -> Option<Arc<CallLink>> {
        lock(&self.calls).get(pc_id).and_then(Weak::upgrade)
    }

    /// Answers an offer for a live call (`pc_id` names one): renegotiates
    /// it, or replaces its connection when `restart_pc` is set. `None` when
    /// the offer is for a new call.
    pub async fn reoffer(&self, request: OfferRequest) -> Option<Result<Answer, SignallingError>> {
        let call = self.call(request.pc_id.as_deref()?)?;
        Some(call.reoffer(request).await)
    }

    /// Answers the first offer of a new call, the session `session_id`,
    /// which becomes the call's `pc_id`. Run the call's session, then close
    /// it.
    ///
    /// # Errors
    /// A malformed offer, one that cannot be negotiated (no Opus audio), or
    /// a connection that cannot be set up here.
    pub async fn accept(
        &self,
        request: OfferRequest,
        session_id: Arc<str>,
    ) -> Result<(Answer, WebRtcCall), SignallingError> {
        let (answer, mut call) = WebRtcCall::accept(
            request,
            Arc::clone(&session_id),
            Arc::clone(&self.settings),
            self.sample_rate,
            Arc::clone(&self.stats),
        )
        .await?;
        lock(&self.calls).insert(Arc::clone(&session_id), Arc::downgrade(call.link()));
        call.set_registration(Registration {
            calls: Arc::clone(&self.calls),
            pc_id: session_id,
        });
        Ok((answer, call))
    }

    /// Adds trickled candidates to a live call.
    ///
    /// # Errors
    /// [`SignallingError::UnknownPeer`] when no live call has the `pc_id`;
    /// [`SignallingError::BadRequest`] for a candidate that cannot be used.
    pub async fn patch(&self, request: PatchRequest) -> Result<(), SignallingError> {
        let call = self
            .call(&request.pc_id)
            .ok_or_else(|| SignallingError::UnknownPeer(request.pc_id.clone()))?;
        call.add_candidates(&request).await
    }

    /// Calls live now.
    pub fn calls(&self) -> usize {
        lock(&self.calls).len()
    }

    /// The `pc_id`s of the calls live now.
    pub fn pc_ids(&self) -> Vec<Arc<str>> {
        lock(&self.calls).keys().cloned().collect()
    }
}
