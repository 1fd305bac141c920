//! One `RTCPeerConnection` of a call: negotiated as the answerer, Opus
//! audio both ways and the page's data channel.
//!
//! The connection's event handler runs on the `webrtc` crate's driver, so it
//! only forwards: remote audio packets to a bounded channel (a flood waits
//! here and is then dropped by the driver, never queued without bound),
//! connection states and data channel messages, in order, to another
//! bounded one. A page sending messages faster than the reader takes them
//! waits in its channel's task (SCTP then holds the page back); a state
//! change never makes the driver wait: when the queue is full it is sent
//! from a task of its own. Every event carries the connection's generation:
//! a call whose browser restarted its connection ignores the old one's
//! goodbyes.
//!
//! A built connection keeps its sockets and its driver task until it is
//! closed: dropping it is not enough (the `webrtc` crate's driver holds
//! its own reference). Every connection is therefore closed on every path,
//! and counted open until it is (`TransportStats::connection_opened`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::BytesMut;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::configure_rtcp_reports;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use tokio::sync::{mpsc, watch};
use tracing::Instrument as _;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceGatheringState, RTCPeerConnectionState,
    RTCSessionDescription, Registry,
};
use webrtc::rtp_transceiver::RtpSender;

use crate::random::random_u32;
use crate::transport::stats::TransportStats;

use super::settings::WebRtcSettings;
use super::signalling::{CandidatePatch, SignallingError};

/// Opus as browsers offer it (RFC 7587: always `/48000/2` in SDP).
fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// A media engine with Opus only: a browser's video sections are
/// rejected, its audio answered.
pub(crate) fn opus_media_engine() -> Result<MediaEngine, SignallingError> {
    let mut media_engine = MediaEngine::default();
    media_engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus_codec(),
                payload_type: 111,
            },
            RtpCodecKind::Audio,
        )
        .map_err(internal)?;
    Ok(media_engine)
}

/// A local Opus track sending as `ssrc`.
pub(crate) fn opus_track(ssrc: u32, name: &str) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        name.to_owned(),
        format!("{name}-audio"),
        format!("{name} audio"),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: opus_codec(),
            ..Default::default()
        }],
    )))
}

/// One remote audio packet.
pub(crate) struct MediaPacket {
    pub(crate) generation: u64,
    pub(crate) packet: rtc::rtp::Packet,
}

/// Something that happened to a connection.
#[derive(Debug)]
pub(crate) enum ControlEvent {
    State {
        generation: u64,
        state: RTCPeerConnectionState,
    },
    Message {
        generation: u64,
        data: BytesMut,
    },
    ChannelClosed {
        generation: u64,
    },
}

/// Where a call's connections deliver what they receive.
#[derive(Clone)]
pub(crate) struct PeerEvents {
    pub(crate) media: mpsc::Sender<MediaPacket>,
    pub(crate) control: mpsc::Sender<ControlEvent>,
    /// The page's data channel, once open.
    pub(crate) channel: Arc<watch::Sender<Option<Arc<dyn DataChannel>>>>,
}

struct Handler {
    generation: u64,
    events: PeerEvents,
    gathering: watch::Sender<RTCIceGatheringState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.gathering.send_replace(state);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(generation = self.generation, %state, "peer connection state");
        let event = ControlEvent::State {
            generation: self.generation,
            state,
        };
        // A closed queue means the call has ended: nothing to tell.
        if let Err(mpsc::error::TrySendError::Full(event)) = self.events.control.try_send(event) {
            let control = self.events.control.clone();
            tokio::spawn(async move {
                let _ended = control.send(event).await;
            });
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if track.kind().await != RtpCodecKind::Audio {
            return;
        }
        let media = self.events.media.clone();
        let generation = self.generation;
        tokio::spawn(
            async move {
                while let Some(event) = track.poll().await {
                    match event {
                        TrackRemoteEvent::OnRtpPacket(packet) => {
                            let packet = MediaPacket { generation, packet };
                            if media.send(packet).await.is_err() {
                                return;
                            }
                        }
                        TrackRemoteEvent::OnEnded => return,
                        _ => {}
                    }
                }
            }
            .in_current_span(),
        );
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        let events = self.events.clone();
        let generation = self.generation;
        tokio::spawn(
            async move {
                while let Some(event) = channel.poll().await {
                    match event {
                        DataChannelEvent::OnOpen => {
                            events.channel.send_replace(Some(Arc::clone(&channel)));
                        }
                        DataChannelEvent::OnMessage(message) => {
                            let data = message.data;
                            if events
                                .control
                                .send(ControlEvent::Message { generation, data })
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                        DataChannelEvent::OnClose => break,
                        _ => {}
                    }
                }
                let _ended = events
                    .control
                    .send(ControlEvent::ChannelClosed { generation })
                    .await;
            }
            .in_current_span(),
        );
    }
}

/// A negotiated connection and the track bot audio leaves on.
pub(crate) struct Connection {
    pub(crate) generation: u64,
    pub(crate) pc: Arc<dyn PeerConnection>,
    pub(crate) track: Arc<TrackLocalStaticRTP>,
    pub(crate) ssrc: u32,
    pub(crate) payload_type: u8,
    gathering: watch::Receiver<RTCIceGatheringState>,
    /// Candidates the page trickled to this connection so far.
    trickled: AtomicUsize,
    /// Counted open in `stats` until the first `close`.
    open: AtomicBool,
    stats: Arc<dyn TransportStats>,
}

/// The most candidates a page may trickle to one connection: a browser
/// finds a handful per network interface; each one kept costs memory and
/// connectivity checks.
pub(crate) const MAX_TRICKLED_CANDIDATES: usize = 128;

/// Whether a candidate line offers TCP. This server gathers UDP only, so a
/// TCP candidate cannot pair; and the `webrtc` crate dials a remote
/// `tcptype passive` candidate's address itself, so a page could make the
/// server open connections anywhere. Read as the crate reads it (its own
/// parser, which splits on any Unicode space), and by the third field for
/// a line it cannot parse.
fn is_tcp(candidate: &str) -> bool {
    let line = candidate.strip_prefix("candidate:").unwrap_or(candidate);
    rtc::ice::candidate::unmarshal_candidate(line)
        .map(|parsed| parsed.network_type().is_tcp())
        .unwrap_or_else(|_| {
            line.split_whitespace()
                .nth(2)
                .is_some_and(|transport| transport.eq_ignore_ascii_case("tcp"))
        })
}

impl Connection {
    /// Answers `offer` with a new connection, counted in `stats`; the
    /// answer carries the candidates gathered within the settings' gather
    /// timeout.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropped once the connection is built, the future
    /// leaves it running, unclosed. Run it to completion (in a task of its
    /// own where the caller may be cancelled: see `offers`).
    pub(crate) async fn answer(
        settings: &WebRtcSettings,
        generation: u64,
        events: PeerEvents,
        stats: &Arc<dyn TransportStats>,
        offer: String,
    ) -> Result<(Connection, String), SignallingError> {
        let (gathering_tx, gathering) = watch::channel(RTCIceGatheringState::New);
        let handler = Handler {
            generation,
            events,
            gathering: gathering_tx,
        };
        let handler = Arc::new(handler);
        let mdns = settings.mdns_wanted();
        let pc = match build(settings, mdns, Arc::clone(&handler)).await {
            Ok(pc) => pc,
            // Most likely the multicast socket (no multicast route: a
            // container, a network namespace): go on without mDNS.
            Err(err) if mdns && settings.mdns_optional() => {
                tracing::debug!(error = %err, "connection with mDNS failed; trying without");
                let pc = build(settings, false, handler).await?;
                settings.multicast_unavailable();
                pc
            }
            Err(err) => return Err(err),
        };
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        stats.connection_opened();
        match Self::negotiate_new(settings, generation, &pc, gathering, stats, offer).await {
            Ok(answered) => Ok(answered),
            Err(err) => {
                // A half-made connection must not keep its sockets.
                if let Err(close) = pc.close().await {
                    tracing::debug!(error = %close, "closing a failed connection");
                }
                stats.connection_closed();
                Err(err)
            }
        }
    }

    async fn negotiate_new(
        settings: &WebRtcSettings,
        generation: u64,
        pc: &Arc<dyn PeerConnection>,
        gathering: watch::Receiver<RTCIceGatheringState>,
        stats: &Arc<dyn TransportStats>,
        offer: String,
    ) -> Result<(Connection, String), SignallingError> {
        let offer = RTCSessionDescription::offer(offer).map_err(negotiation)?;
        pc.set_remote_description(offer)
            .await
            .map_err(negotiation)?;
        let ssrc = random_u32();
        let track = opus_track(ssrc, "voxpipe");
        // Refused when the offer's audio section has no codec we speak:
        // the offer's fault (400), not the server's.
        let sender = pc
            .add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
            .await
            .map_err(negotiation)?;
        let answer = pc.create_answer(None).await.map_err(negotiation)?;
        let no_audio =
            || SignallingError::Negotiation("the offer has no Opus audio to answer".into());
        if !answers_audio(&answer) {
            return Err(no_audio());
        }
        pc.set_local_description(answer)
            .await
            .map_err(negotiation)?;
        let payload_type = negotiated_payload_type(&*sender)
            .await
            .ok_or_else(no_audio)?;
        let connection = Connection {
            generation,
            pc: Arc::clone(pc),
            track,
            ssrc,
            payload_type,
            gathering,
            trickled: AtomicUsize::new(0),
            open: AtomicBool::new(true),
            stats: Arc::clone(stats),
        };
        let sdp = connection.local_sdp(settings).await?;
        Ok((connection, sdp))
    }

    /// Answers a new offer on this connection (the browser renegotiated,
    /// or restarted ICE).
    pub(crate) async fn renegotiate(
        &self,
        settings: &WebRtcSettings,
        offer: String,
    ) -> Result<String, SignallingError> {
        let offer = RTCSessionDescription::offer(offer).map_err(negotiation)?;
        self.pc
            .set_remote_description(offer)
            .await
            .map_err(negotiation)?;
        let answer = self.pc.create_answer(None).await.map_err(negotiation)?;
        self.pc
            .set_local_description(answer)
            .await
            .map_err(negotiation)?;
        self.local_sdp(settings).await
    }

    /// Adds a candidate the browser trickled.
    pub(crate) async fn add_candidate(
        &self,
        candidate: &CandidatePatch,
    ) -> Result<(), SignallingError> {
        if candidate.candidate.trim().is_empty() {
            return Ok(()); // end of candidates
        }
        if self.trickled.fetch_add(1, Ordering::Relaxed) >= MAX_TRICKLED_CANDIDATES {
            return Err(SignallingError::BadRequest(format!(
                "more than {MAX_TRICKLED_CANDIDATES} candidates for one connection"
            )));
        }
        if is_tcp(&candidate.candidate) {
            tracing::debug!("a TCP candidate ignored: this server's candidates are UDP");
            return Ok(());
        }
        self.pc
            .add_ice_candidate(RTCIceCandidateInit {
                candidate: candidate.candidate.clone(),
                sdp_mid: candidate.sdp_mid.clone(),
                sdp_mline_index: candidate.sdp_mline_index,
                ..Default::default()
            })
            .await
            .map_err(|e| SignallingError::BadRequest(format!("candidate: {e}")))
    }

    /// The local description once gathering completed, or the timeout
    /// passed: host candidates are there at once, STUN and TURN take a
    /// round trip.
    async fn local_sdp(&self, settings: &WebRtcSettings) -> Result<String, SignallingError> {
        let mut gathering = self.gathering.clone();
        let complete = gathering.wait_for(|s| *s == RTCIceGatheringState::Complete);
        if tokio::time::timeout(settings.gather_timeout, complete)
            .await
            .is_err()
        {
            tracing::debug!("candidate gathering not complete; answering with what there is");
        }
        self.pc
            .local_description()
            .await
            .map(|d| d.sdp)
            .ok_or_else(|| SignallingError::Internal("no local description".into()))
    }

    /// Closes the connection (idempotent).
    pub(crate) async fn close(&self) {
        if let Err(err) = self.pc.close().await {
            tracing::debug!(error = %err, "closing the peer connection");
        }
        if self.open.swap(false, Ordering::AcqRel) {
            self.stats.connection_closed();
        }
    }
}

/// A new connection, with or without mDNS.
async fn build(
    settings: &WebRtcSettings,
    mdns: bool,
    handler: Arc<Handler>,
) -> Result<impl PeerConnection + use<>, SignallingError> {
    PeerConnectionBuilder::new()
        .with_configuration(
            RTCConfigurationBuilder::default()
                .with_ice_servers(settings.rtc_ice_servers())
                .build(),
        )
        .with_media_engine(opus_media_engine()?)
        .with_interceptor_registry(configure_rtcp_reports(Registry::new()))
        .with_setting_engine(settings.setting_engine(mdns))
        .with_handler(handler)
        .with_udp_addrs(settings.udp_addrs.clone())
        .build()
        .await
        .map_err(internal)
}

/// Whether `answer` accepts an audio section (a rejected one has port 0).
fn answers_audio(answer: &RTCSessionDescription) -> bool {
    answer.unmarshal().is_ok_and(|sdp| {
        sdp.media_descriptions
            .iter()
            .any(|m| m.media_name.media == "audio" && m.media_name.port.value != 0)
    })
}

/// The payload type the answer gave Opus on this sender, if any.
pub(crate) async fn negotiated_payload_type(sender: &dyn RtpSender) -> Option<u8> {
    let parameters = sender.get_parameters().await.ok()?;
    parameters
        .rtp_parameters
        .codecs
        .iter()
        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_OPUS))
        .map(|c| c.payload_type)
}

fn negotiation(err: impl std::fmt::Display) -> SignallingError {
    SignallingError::Negotiation(err.to_string())
}

fn internal(err: impl std::fmt::Display) -> SignallingError {
    SignallingError::Internal(err.to_string())
}

#[cfg(test)]
mod tests {
    use super::is_tcp;

    #[test]
    fn a_candidates_transport_is_its_third_field() {
        assert!(is_tcp(
            "candidate:9 1 tcp 1518280447 10.0.0.5 443 typ host tcptype passive"
        ));
        assert!(is_tcp("1 1 TCP 1 10.0.0.5 9 typ host tcptype active"));
        assert!(!is_tcp(
            "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host"
        ));
        assert!(!is_tcp("candidate:tcp"));
        // A non-ASCII space the crate splits on, as it does.
        assert!(is_tcp(
            "candidate:1 1\u{a0}tcp 2105524479 10.0.0.5 6379 typ host tcptype passive"
        ));
    }
}
