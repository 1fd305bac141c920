//! [`CallConnection`]: a call's current peer connection, which a
//! renegotiation keeps and a restart replaces, and the signalling that
//! reaches it.
//!
//! Every part of a call holds it: the reader (to ignore events of a
//! replaced connection, by generation), the live calls map (to route later
//! offers and candidates by `pc_id`), and the call itself (to close it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, mpsc, watch};

use crate::transport::stats::TransportStats;

use super::peer::{Connection, PeerEvents};
use super::relay::{Outgoing, close_channel};
use super::settings::WebRtcSettings;
use super::signalling::{Answer, OfferRequest, PatchRequest, SignallingError};

/// How long closing waits for the last events to reach the page.
const CLOSE_FLUSH: Duration = Duration::from_secs(1);

/// What a call's parts share: the current connection and how to reach it.
pub(crate) struct CallConnection {
    pc_id: Arc<str>,
    session_id: Arc<str>,
    settings: Arc<WebRtcSettings>,
    events: PeerEvents,
    stats: Arc<dyn TransportStats>,
    connection: watch::Sender<Option<Arc<Connection>>>,
    generation: AtomicU64,
    /// One negotiation at a time.
    negotiating: Mutex<()>,
    outgoing: mpsc::UnboundedSender<Outgoing>,
}

impl CallConnection {
    /// The first connection (generation 0) of the session `session_id`'s
    /// call, named `pc_id` (see `pc_id`), the current one in `connection`,
    /// later ones counted in `stats`; events to the page go out through
    /// `outgoing`.
    pub(crate) fn new(
        pc_id: Arc<str>,
        session_id: Arc<str>,
        settings: Arc<WebRtcSettings>,
        events: PeerEvents,
        stats: Arc<dyn TransportStats>,
        connection: watch::Sender<Option<Arc<Connection>>>,
        outgoing: mpsc::UnboundedSender<Outgoing>,
    ) -> Self {
        CallConnection {
            pc_id,
            session_id,
            settings,
            events,
            stats,
            connection,
            generation: AtomicU64::new(0),
            negotiating: Mutex::new(()),
            outgoing,
        }
    }

    /// The call's `pc_id`.
    pub(crate) fn pc_id(&self) -> &Arc<str> {
        &self.pc_id
    }

    /// The id of the call's session.
    pub(crate) fn session_id(&self) -> &Arc<str> {
        &self.session_id
    }

    /// The generation of the current connection.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn current(&self) -> Result<Arc<Connection>, SignallingError> {
        self.connection
            .borrow()
            .clone()
            .ok_or_else(|| SignallingError::UnknownPeer(self.pc_id.to_string()))
    }

    /// Answers a later offer: on the same connection, or with
    /// `restart_pc` on a new one that replaces it.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropped while the new connection is being made,
    /// it leaves that one running; dropped while the old one closes, the
    /// old one. `WebRtcSignalling::reoffer` runs it in a task of its own.
    pub(crate) async fn reoffer(&self, request: OfferRequest) -> Result<Answer, SignallingError> {
        request.validate()?;
        let _one_at_a_time = self.negotiating.lock().await;
        let current = self.current()?;
        if !request.restart_pc.unwrap_or(false) {
            let sdp = current.renegotiate(&self.settings, request.sdp).await?;
            return Ok(Answer::new(sdp, &self.pc_id));
        }
        let generation = current.generation + 1;
        let (connection, sdp) = Connection::answer(
            &self.settings,
            generation,
            self.events.clone(),
            &self.stats,
            request.sdp,
        )
        .await?;
        tracing::info!(generation, "peer connection replaced");
        self.generation.store(generation, Ordering::Release);
        self.connection.send_replace(Some(Arc::new(connection)));
        // Trickled candidates wait on the lock: not for the old one's close.
        drop(_one_at_a_time);
        current.close().await;
        Ok(Answer::new(sdp, &self.pc_id))
    }

    /// Adds the candidates the browser trickled. They wait for an offer
    /// being answered: during a `restart_pc` the page trickles the new
    /// connection's candidates under the same `pc_id` before its answer
    /// comes, and they belong to the connection that answer makes, not the
    /// one it replaces.
    pub(crate) async fn add_candidates(&self, patch: &PatchRequest) -> Result<(), SignallingError> {
        patch.validate()?;
        let _after_the_answer = self.negotiating.lock().await;
        let current = self.current()?;
        for candidate in &patch.candidates {
            current.add_candidate(candidate).await?;
        }
        Ok(())
    }

    /// Sends the page the last events and closes the connection.
    pub(crate) async fn close(&self) {
        close_channel(&self.outgoing, CLOSE_FLUSH).await;
        let connection = self.connection.send_replace(None);
        if let Some(connection) = connection {
            connection.close().await;
        }
    }
}

impl Drop for CallConnection {
    fn drop(&mut self) {
        // A call dropped without `close` (its session never ran) must not
        // leave its connection's driver and sockets behind: the `webrtc`
        // crate keeps a dropped connection's driver running.
        if let Some(connection) = self.connection.send_replace(None)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move { connection.close().await });
        }
    }
}
