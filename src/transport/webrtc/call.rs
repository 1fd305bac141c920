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
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::Instrument as _;

use crate::pipeline::{NamedProcessor, Observer};
use crate::random::random_u32;
use crate::transport::ends::TransportEnds;
use crate::transport::output::{OutputTransport, Pacing};
use crate::transport::playout::SendAhead;
use crate::transport::rtvi::RtviSession;
use crate::transport::stats::TransportStats;

use super::connection::CallConnection;
use super::inbound::InboundAudio;
use super::input::{Reader, WebRtcInput};
use super::live_calls::Registration;
use super::outbound::OutboundAudio;
use super::pc_id::new_pc_id;
use super::peer::{Connection, PeerEvents};
use super::relay::{EventRelay, PageChannel, run_channel_writer};
use super::settings::WebRtcSettings;
use super::signalling::{Answer, OfferRequest, SignallingError};
use super::sink::WebRtcSink;
use super::writer::run_writer;

/// Remote audio packets waiting for the reader: about 2.5 s.
const MEDIA_QUEUE: usize = 128;

/// Connection events and page messages waiting for the reader.
const CONTROL_QUEUE: usize = 64;

/// One browser session's connection. Run its [`ends`](Self::take_ends) as a
/// session with its [`observer`](Self::observer), then [`close`](Self::close)
/// it.
pub struct WebRtcCall {
    connection: Arc<CallConnection>,
    ends: Option<TransportEnds>,
    relay: Arc<EventRelay>,
    custom_parameters: BTreeMap<String, String>,
    registration: Option<Registration>,
}

impl WebRtcCall {
    /// Answers a first offer with a new connection for the session
    /// `session_id`, named by a fresh `pc_id`, its pipeline running at
    /// `sample_rate`, its traffic counted in `stats`. An offer restarting
    /// a connection (`restart_pc` with a `pc_id`) comes here when its call
    /// has ended: its session's RTVI is resumed ([`RtviSession::resumed`]).
    pub(crate) async fn accept(
        request: OfferRequest,
        session_id: Arc<str>,
        settings: Arc<WebRtcSettings>,
        sample_rate: u32,
        stats: Arc<dyn TransportStats>,
    ) -> Result<(Answer, WebRtcCall), SignallingError> {
        request.validate()?;
        // A restart naming a call no longer live (it ended while the page
        // reconnected): a Pipecat client will not say `client-ready` again.
        let resumed = request.restart_pc == Some(true) && request.pc_id.is_some();
        let pc_id: Arc<str> = new_pc_id()?.into();
        let custom_parameters = request.custom_parameters();
        let inbound = InboundAudio::new(sample_rate).map_err(internal)?;
        let outbound = OutboundAudio::new(random_u32()).map_err(internal)?;

        let (media_tx, media) = mpsc::channel(MEDIA_QUEUE);
        let (control_tx, control) = mpsc::channel(CONTROL_QUEUE);
        let (channel_tx, channel) = watch::channel(None);
        let events = PeerEvents {
            media: media_tx,
            control: control_tx,
            channel: Arc::new(channel_tx),
        };
        let (connection, sdp) =
            Connection::answer(&settings, 0, events.clone(), &stats, request.sdp).await?;
        let (connection_tx, connection_rx) = watch::channel(Some(Arc::new(connection)));
        let (outgoing_tx, outgoing) = mpsc::unbounded_channel();
        let connection = Arc::new(CallConnection::new(
            Arc::clone(&pc_id),
            Arc::clone(&session_id),
            Arc::clone(&settings),
            events,
            Arc::clone(&stats),
            connection_tx,
            outgoing_tx.clone(),
        ));

        let (packets_tx, packets) = mpsc::unbounded_channel();
        let epoch = Arc::new(AtomicU64::new(0));
        tokio::spawn(run_writer(packets, Arc::clone(&epoch), connection_rx).in_current_span());
        let writer = run_channel_writer(outgoing, channel, Arc::clone(&stats));
        tokio::spawn(writer.in_current_span());

        let rtvi = if resumed {
            tracing::info!("an ended call's connection restarted: a new session for the same page");
            RtviSession::resumed(Arc::clone(&session_id))
        } else {
            RtviSession::new(Arc::clone(&session_id))
        };
        let page = PageChannel::new(outgoing_tx, rtvi);
        let input = WebRtcInput::new(Reader {
            connection: Arc::clone(&connection),
            page: page.clone(),
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
                send_ahead: SendAhead::NONE,
            },
        );
        let call = WebRtcCall {
            connection,
            ends: Some(TransportEnds {
                input: NamedProcessor::new("transport.input", input),
                output: NamedProcessor::new("transport.output", output),
            }),
            relay: Arc::new(EventRelay::new(page)),
            custom_parameters,
            registration: None,
        };
        Ok((Answer::new(sdp, &pc_id), call))
    }

    /// The session's id.
    pub fn session_id(&self) -> &Arc<str> {
        self.connection.session_id()
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

    pub(crate) fn connection(&self) -> &Arc<CallConnection> {
        &self.connection
    }

    pub(crate) fn set_registration(&mut self, registration: Registration) {
        self.registration = Some(registration);
    }

    /// Ends the call after its session: the last events and Pipecat's
    /// `peerLeft` go to the page, then the connection closes and the call
    /// leaves the registry.
    pub async fn close(self) {
        self.connection.close().await;
    }
}

fn internal(err: impl std::fmt::Display) -> SignallingError {
    SignallingError::Internal(err.to_string())
}
