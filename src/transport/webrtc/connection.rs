//! [`CallConnection`]: a call's current peer connection, which a
//! renegotiation keeps and a restart replaces, and the signalling that
//! reaches it.
//!
//! Every part of a call holds it: the reader (to ignore events of a
//! replaced connection, by generation), the live calls map (to route later
//! offers and candidates by `pc_id`), and the call itself (to close it).
//!
//! A call's end begins once (its reader saw the connection go, its session
//! is ending, or it is closing): from then on it takes no offer, and a
//! restart already being answered is not installed but closed, its offer
//! treated as one for an ended call (a new session). Ending and installing
//! a connection are decided under one lock, so neither can slip between
//! the other's check and its change.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard};
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
    /// The call's end has begun; held while a connection is installed.
    ending: std::sync::Mutex<bool>,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    #[cfg(test)]
    pub(super) before_install: install_hook::InstallHook,
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
            ending: std::sync::Mutex::new(false),
            outgoing,
            #[cfg(test)]
            before_install: install_hook::InstallHook::default(),
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

    fn ending(&self) -> MutexGuard<'_, bool> {
        // A plain flag: a panic cannot leave it half-changed.
        self.ending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the call still takes offers and candidates: its end has
    /// not begun.
    pub(crate) fn is_live(&self) -> bool {
        !*self.ending()
    }

    /// Begins the call's end (idempotent): no later offer reaches it, and
    /// a restart being answered is not installed.
    pub(crate) fn end(&self) {
        *self.ending() = true;
    }

    /// Begins the call's end if `generation` is its current connection's;
    /// whether it did. An event of a connection that a restart replaced
    /// meanwhile does not end the call: checked with the install's lock, so
    /// the restart is either installed first (and the event is of an old
    /// connection) or refused (the call ended first).
    pub(crate) fn end_if_current(&self, generation: u64) -> bool {
        let mut ending = self.ending();
        let current = generation == self.generation();
        if current {
            *ending = true;
        }
        current
    }

    /// Makes `connection` (of `generation`) the current one, unless the
    /// call's end has begun: then it is given back, to be closed.
    fn install(&self, generation: u64, connection: Connection) -> Result<(), Connection> {
        let ending = self.ending();
        if *ending {
            return Err(connection);
        }
        self.generation.store(generation, Ordering::Release);
        self.connection.send_replace(Some(Arc::new(connection)));
        drop(ending);
        Ok(())
    }

    fn current(&self) -> Result<Arc<Connection>, SignallingError> {
        self.connection
            .borrow()
            .clone()
            .ok_or_else(|| SignallingError::UnknownPeer(self.pc_id.to_string()))
    }

    /// Answers a later offer: on the same connection, or with
    /// `restart_pc` on a new one that replaces it. `None` when the call's
    /// end has begun (before, or while, the offer was answered): the offer
    /// is then one for an ended call, and a connection made for it is
    /// closed.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropped while the new connection is being made,
    /// it leaves that one running; dropped while the old one closes, the
    /// old one. `WebRtcSignalling::reoffer` runs it in a task of its own.
    pub(crate) async fn reoffer(
        &self,
        request: OfferRequest,
    ) -> Result<Option<Answer>, SignallingError> {
        request.validate()?;
        let _one_at_a_time = self.negotiating.lock().await;
        if !self.is_live() {
            return Ok(None);
        }
        let current = self.current()?;
        if !request.restart_pc.unwrap_or(false) {
            let sdp = current.renegotiate(&self.settings, request.sdp).await?;
            return Ok(Some(Answer::new(sdp, &self.pc_id)));
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
        #[cfg(test)]
        self.before_install.pause().await;
        if let Err(unwanted) = self.install(generation, connection) {
            tracing::info!(
                generation,
                "the call ended while its connection was restarted"
            );
            drop(_one_at_a_time);
            unwanted.close().await;
            return Ok(None);
        }
        tracing::info!(generation, "peer connection replaced");
        // Trickled candidates wait on the lock: not for the old one's close.
        drop(_one_at_a_time);
        current.close().await;
        Ok(Some(Answer::new(sdp, &self.pc_id)))
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
        self.end();
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

#[cfg(test)]
pub(super) mod install_hook {
    use std::sync::Mutex;

    use tokio::sync::oneshot;

    /// Holds a restart between making its connection and installing it, so
    /// that a test can put the call's end in between.
    #[derive(Default)]
    pub(crate) struct InstallHook(Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>);

    impl InstallHook {
        /// The next restart stops before installing its connection:
        /// `reached` fires then, and it goes on once `resume` is sent or
        /// dropped.
        pub(crate) fn hold(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
            let (reached_tx, reached) = oneshot::channel();
            let (resume, resume_rx) = oneshot::channel();
            *self.0.lock().unwrap() = Some((reached_tx, resume_rx));
            (reached, resume)
        }

        pub(super) async fn pause(&self) {
            let held = self.0.lock().unwrap().take();
            if let Some((reached, resume)) = held {
                let _ = reached.send(());
                let _ = resume.await;
            }
        }
    }
}
