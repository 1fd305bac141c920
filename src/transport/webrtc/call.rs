//! [`WebRtcCall`]: one browser session's connection, from the first offer to
//! the goodbye, across renegotiations and connection restarts.
//!
//! A call owns the channels its connections deliver into and the tasks that
//! send out of it (bot audio, events to the page). Its current connection
//! can be renegotiated (a new offer on the same `RTCPeerConnection`) or
//! replaced (`restart_pc`: the browser made a new one after ICE failed);
//! the session goes on either way, and events of a replaced connection are
//! ignored by generation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, mpsc, watch};
use tracing::Instrument as _;

use crate::pipeline::{NamedProcessor, Observer};
use crate::transport::TransportEnds;
use crate::transport::{OutputTransport, Pacing, TransportStats};

use super::inbound::InboundAudio;
use super::input::{Reader, WebRtcInput};
use super::outbound::OutboundAudio;
use super::peer::{Connection, PeerEvents};
use super::registry::Registration;
use super::relay::{EventRelay, Outgoing, close_channel, run_channel_writer};
use super::settings::WebRtcSettings;
use super::signalling::{Answer, OfferRequest, PatchRequest, SignallingError};
use super::sink::WebRtcSink;
use super::writer::run_writer;

/// Remote audio packets waiting for the reader: about 2.5 s.
const MEDIA_QUEUE: usize = 128;

/// Connection events and page messages waiting for the reader.
const CONTROL_QUEUE: usize = 64;

/// How long closing waits for the last events to reach the page.
const CLOSE_FLUSH: Duration = Duration::from_secs(1);

/// What a call's parts share: the current connection and how to reach it.
pub(crate) struct CallLink {
    pc_id: Arc<str>,
    settings: Arc<WebRtcSettings>,
    events: PeerEvents,
    connection: watch::Sender<Option<Arc<Connection>>>,
    generation: AtomicU64,
    /// One negotiation at a time.
    negotiating: Mutex<()>,
    outgoing: mpsc::UnboundedSender<Outgoing>,
}

impl CallLink {
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
    pub(crate) async fn reoffer(&self, request: OfferRequest) -> Result<Answer, SignallingError> {
        request.validate()?;
        let _one_at_a_time = self.negotiating.lock().await;
        let current = self.current()?;
        if !request.restart_pc.unwrap_or(false) {
            let sdp = current.renegotiate(&self.settings, request.sdp).await?;
            return Ok(Answer::new(sdp, &self.pc_id));
        }
        let generation = current.generation + 1;
        let (connection, sdp) =
            Connection::answer(&self.settings, generation, self.events.clone(), request.sdp)
                .await?;
        tracing::info!(generation, "peer connection replaced");
        self.generation.store(generation, Ordering::Release);
        self.connection.send_replace(Some(Arc::new(connection)));
        current.close().await;
        Ok(Answer::new(sdp, &self.pc_id))
    }

    /// Adds the candidates the browser trickled.
    pub(crate) async fn add_candidates(&self, patch: &PatchRequest) -> Result<(), SignallingError> {
        patch.validate()?;
        let current = self.current()?;
        for candidate in &patch.candidates {
            current.add_candidate(candidate).await?;
        }
        Ok(())
    }

    async fn close(&self) {
        close_channel(&self.outgoing, CLOSE_FLUSH).await;
        let connection = self.connection.send_replace(None);
        if let Some(connection) = connection {
            connection.close().await;
        }
    }
}

impl Drop for CallLink {
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

/// One browser session's connection. Run its [`ends`](Self::take_ends) as a
/// session with its [`observer`](Self::observer), then [`close`](Self::close)
/// it.
pub struct WebRtcCall {
    link: Arc<CallLink>,
    ends: Option<TransportEnds>,
    relay: Arc<EventRelay>,
    custom_parameters: BTreeMap<String, String>,
    registration: Option<Registration>,
}

impl WebRtcCall {
    /// Answers a first offer with a new connection for the session
    /// `session_id` (which becomes its `pc_id`), its pipeline running at
    /// `sample_rate`, its traffic counted in `stats`.
    pub(crate) async fn accept(
        request: OfferRequest,
        session_id: Arc<str>,
        settings: Arc<WebRtcSettings>,
        sample_rate: u32,
        stats: Arc<dyn TransportStats>,
    ) -> Result<(Answer, WebRtcCall), SignallingError> {
        request.validate()?;
        let custom_parameters = request.custom_parameters();
        let inbound = InboundAudio::new(sample_rate).map_err(internal)?;
        let outbound = OutboundAudio::new(super::random_u32()).map_err(internal)?;

        let (media_tx, media) = mpsc::channel(MEDIA_QUEUE);
        let (control_tx, control) = mpsc::channel(CONTROL_QUEUE);
        let (channel_tx, channel) = watch::channel(None);
        let events = PeerEvents {
            media: media_tx,
            control: control_tx,
            channel: Arc::new(channel_tx),
        };
        let (connection, sdp) =
            Connection::answer(&settings, 0, events.clone(), request.sdp).await?;
        let (connection_tx, connection_rx) = watch::channel(Some(Arc::new(connection)));
        let (outgoing_tx, outgoing) = mpsc::unbounded_channel();
        let link = Arc::new(CallLink {
            pc_id: Arc::clone(&session_id),
            settings: Arc::clone(&settings),
            events,
            connection: connection_tx,
            generation: AtomicU64::new(0),
            negotiating: Mutex::new(()),
            outgoing: outgoing_tx.clone(),
        });

        let (packets_tx, packets) = mpsc::unbounded_channel();
        let epoch = Arc::new(AtomicU64::new(0));
        tokio::spawn(run_writer(packets, Arc::clone(&epoch), connection_rx).in_current_span());
        tokio::spawn(run_channel_writer(outgoing, channel).in_current_span());

        let input = WebRtcInput::new(Reader {
            link: Arc::clone(&link),
            media,
            control,
            inbound,
            idle_timeout: settings.idle_timeout,
            stats: Arc::clone(&stats),
        });
        let output = OutputTransport::new(
            WebRtcSink::new(outbound, packets_tx, epoch, stats),
            Pacing::Timer {
                period: Duration::from_millis(20),
            },
        );
        let call = WebRtcCall {
            link,
            ends: Some(TransportEnds {
                input: NamedProcessor::new("transport.input", input),
                output: NamedProcessor::new("transport.output", output),
            }),
            relay: Arc::new(EventRelay::new(outgoing_tx)),
            custom_parameters,
            registration: None,
        };
        Ok((Answer::new(sdp, &session_id), call))
    }

    /// The session's id, which is also the connection's `pc_id`.
    pub fn session_id(&self) -> &Arc<str> {
        &self.link.pc_id
    }

    /// What the page sent as `request_data`, for
    /// [`SessionSetup::custom_parameters`](crate::pipeline::SessionSetup).
    pub fn custom_parameters(&self) -> &BTreeMap<String, String> {
        &self.custom_parameters
    }

    /// The transport's input and output processors (once).
    pub fn take_ends(&mut self) -> Option<TransportEnds> {
        self.ends.take()
    }

    /// The observer that relays the session's events to the page; add it to
    /// the session's observers.
    pub fn observer(&self) -> Arc<dyn Observer> {
        Arc::clone(&self.relay) as Arc<dyn Observer>
    }

    pub(crate) fn link(&self) -> &Arc<CallLink> {
        &self.link
    }

    pub(crate) fn set_registration(&mut self, registration: Registration) {
        self.registration = Some(registration);
    }

    /// Ends the call after its session: the last events and Pipecat's
    /// `peerLeft` go to the page, then the connection closes and the call
    /// leaves the registry.
    pub async fn close(self) {
        self.link.close().await;
    }
}

fn internal(err: impl std::fmt::Display) -> SignallingError {
    SignallingError::Internal(err.to_string())
}
