//! [`ClientPeer`]: a client that calls a voxpipe server the way a browser
//! does (an Opus audio track both ways and a `chat` data channel, Pipecat's
//! signalling), for tests, benchmarks and load generation.
//!
//! ```no_run
//! # async fn call(server: &str) -> Result<(), Box<dyn std::error::Error>> {
//! use voxpipe::transport::webrtc::ClientPeer;
//! let (mut client, offer) = ClientPeer::offer().await?;
//! // POST `offer` to the server's /api/offer, then:
//! # let answer: voxpipe::transport::webrtc::Answer = todo!();
//! client.accept(&answer).await?;
//! let mut audio = client.take_audio().expect("taken once");
//! # Ok(()) }
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rtc::ice::mdns::MulticastDnsMode;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder,
};
use webrtc::rtp_transceiver::RtpSender;

use crate::frame::AudioFrame;
use crate::random::random_u32;

use super::outbound::{OutboundAudio, OutboundPacket};
use super::peer::{negotiated_payload_type, opus_media_engine, opus_track};
use super::signalling::{Answer, OfferRequest};
use super::writer::RtpStamper;

/// Why the client could not go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The WebRTC stack refused (negotiation, sockets).
    #[error("webrtc: {0}")]
    WebRtc(String),
    /// Something did not happen in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// Encoding the audio failed.
    #[error(transparent)]
    Audio(#[from] crate::audio::AudioError),
}

fn webrtc_error(err: impl std::fmt::Display) -> ClientError {
    ClientError::WebRtc(err.to_string())
}

/// One RTP packet of the server's audio, as it arrived.
#[derive(Debug, Clone)]
pub struct ReceivedAudio {
    /// The packet.
    pub packet: rtc::rtp::Packet,
    /// When it arrived.
    pub arrived: Instant,
}

struct ClientHandler {
    audio: mpsc::UnboundedSender<ReceivedAudio>,
    state: watch::Sender<RTCPeerConnectionState>,
    gathering: watch::Sender<RTCIceGatheringState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for ClientHandler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.gathering.send_replace(state);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.state.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let audio = self.audio.clone();
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(packet) = event {
                    let arrived = Instant::now();
                    if audio.send(ReceivedAudio { packet, arrived }).is_err() {
                        return;
                    }
                }
            }
        });
    }
}

/// What a [`ClientPeer`] offers.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientOptions {
    /// Also offer a video section after the audio one, as Pipecat's
    /// SmallWebRTC clients do (a voice server rejects it).
    pub video: bool,
}

/// A browser stand-in. See the module docs.
pub struct ClientPeer {
    pc: Arc<dyn PeerConnection>,
    track: Arc<TrackLocalStaticRTP>,
    sender: Arc<dyn RtpSender>,
    ssrc: u32,
    payload_type: Option<u8>,
    channel: Arc<dyn DataChannel>,
    channel_open: watch::Receiver<bool>,
    state: watch::Receiver<RTCPeerConnectionState>,
    audio: Option<mpsc::UnboundedReceiver<ReceivedAudio>>,
    messages: Option<mpsc::UnboundedReceiver<String>>,
    /// The microphone's encoder; locked only while encoding, so the client
    /// can be shared between tasks.
    microphone: Mutex<(OutboundAudio, RtpStamper)>,
}

impl ClientPeer {
    /// A client on loopback offering audio and a data channel, and its
    /// offer, with its candidates gathered.
    ///
    /// # Errors
    /// When the WebRTC stack cannot set up the connection.
    pub async fn offer() -> Result<(ClientPeer, OfferRequest), ClientError> {
        Self::offer_with(ClientOptions::default()).await
    }

    /// Like [`offer`](Self::offer), with `options`.
    ///
    /// # Errors
    /// When the WebRTC stack cannot set up the connection.
    pub async fn offer_with(
        options: ClientOptions,
    ) -> Result<(ClientPeer, OfferRequest), ClientError> {
        let (audio_tx, audio) = mpsc::unbounded_channel();
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let (gathering_tx, mut gathering) = watch::channel(RTCIceGatheringState::New);
        let handler = ClientHandler {
            audio: audio_tx,
            state: state_tx,
            gathering: gathering_tx,
        };
        let media_engine = if options.video {
            let mut engine = MediaEngine::default();
            engine.register_default_codecs().map_err(webrtc_error)?;
            engine
        } else {
            opus_media_engine().map_err(webrtc_error)?
        };
        // Loopback only, plain addresses: no multicast socket, which a
        // host without a multicast route could not open.
        let no_mdns = SettingEngineBuilder::new()
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .build();
        let pc = PeerConnectionBuilder::new()
            .with_media_engine(media_engine)
            .with_setting_engine(no_mdns)
            .with_handler(Arc::new(handler))
            .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
            .build()
            .await
            .map_err(webrtc_error)?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        let ssrc = random_u32();
        let track = opus_track(ssrc, "client");
        let sender = pc
            .add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
            .await
            .map_err(webrtc_error)?;
        if options.video {
            pc.add_transceiver_from_kind(RtpCodecKind::Video, None)
                .await
                .map_err(webrtc_error)?;
        }
        let channel = pc
            .create_data_channel("chat", None)
            .await
            .map_err(webrtc_error)?;
        let (open_tx, channel_open) = watch::channel(false);
        let (messages_tx, messages) = mpsc::unbounded_channel();
        let polled = Arc::clone(&channel);
        tokio::spawn(async move {
            while let Some(event) = polled.poll().await {
                match event {
                    DataChannelEvent::OnOpen => {
                        open_tx.send_replace(true);
                    }
                    DataChannelEvent::OnMessage(message) => {
                        let text = String::from_utf8_lossy(&message.data).into_owned();
                        if messages_tx.send(text).is_err() {
                            return;
                        }
                    }
                    DataChannelEvent::OnClose => return,
                    _ => {}
                }
            }
        });
        let offer = pc.create_offer(None).await.map_err(webrtc_error)?;
        pc.set_local_description(offer)
            .await
            .map_err(webrtc_error)?;
        let complete = gathering.wait_for(|s| *s == RTCIceGatheringState::Complete);
        tokio::time::timeout(Duration::from_secs(5), complete)
            .await
            .map_err(|_| ClientError::Timeout("candidate gathering"))?
            .map_err(webrtc_error)?;
        let sdp = pc
            .local_description()
            .await
            .ok_or_else(|| ClientError::WebRtc("no local description".into()))?
            .sdp;
        let client = ClientPeer {
            pc,
            track,
            sender,
            ssrc,
            payload_type: None,
            channel,
            channel_open,
            state,
            audio: Some(audio),
            messages: Some(messages),
            microphone: Mutex::new((
                OutboundAudio::new(random_u32())?,
                RtpStamper::new(random_u32() as u16),
            )),
        };
        let request = OfferRequest {
            sdp,
            kind: "offer".to_owned(),
            pc_id: None,
            restart_pc: None,
            request_data: None,
        };
        Ok((client, request))
    }

    /// Applies the server's answer.
    ///
    /// # Errors
    /// When the answer cannot be applied.
    pub async fn accept(&mut self, answer: &Answer) -> Result<(), ClientError> {
        let description =
            RTCSessionDescription::answer(answer.sdp.clone()).map_err(webrtc_error)?;
        self.pc
            .set_remote_description(description)
            .await
            .map_err(webrtc_error)?;
        self.payload_type = negotiated_payload_type(&*self.sender).await;
        Ok(())
    }

    /// Waits until the connection is up and the data channel open.
    ///
    /// # Errors
    /// [`ClientError::Timeout`] after `timeout`; [`ClientError::WebRtc`] if
    /// the connection failed.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), ClientError> {
        let mut state = self.state.clone();
        let mut open = self.channel_open.clone();
        let both = async {
            let up = state
                .wait_for(|s| {
                    matches!(
                        s,
                        RTCPeerConnectionState::Connected | RTCPeerConnectionState::Failed
                    )
                })
                .await
                .map(|s| *s)
                .map_err(webrtc_error)?;
            if up == RTCPeerConnectionState::Failed {
                return Err(ClientError::WebRtc("the connection failed".into()));
            }
            open.wait_for(|o| *o).await.map_err(webrtc_error)?;
            Ok(())
        };
        tokio::time::timeout(timeout, both)
            .await
            .map_err(|_| ClientError::Timeout("the connection"))?
    }

    /// The server's audio packets as they arrive (once).
    pub fn take_audio(&mut self) -> Option<mpsc::UnboundedReceiver<ReceivedAudio>> {
        self.audio.take()
    }

    /// The server's data channel messages as they arrive (once).
    pub fn take_messages(&mut self) -> Option<mpsc::UnboundedReceiver<String>> {
        self.messages.take()
    }

    /// Sends `audio` (20 ms, any rate) now, as the microphone would; the
    /// caller paces the frames. Returns how many RTP packets left.
    ///
    /// # Errors
    /// When encoding or sending fails.
    pub async fn send_audio(&self, audio: &AudioFrame) -> Result<usize, ClientError> {
        let packets: Vec<OutboundPacket> = {
            let mut microphone = self.microphone.lock().unwrap_or_else(|e| e.into_inner());
            let (outbound, _) = &mut *microphone;
            outbound.push(audio)?;
            std::iter::from_fn(|| outbound.poll_packet()).collect()
        };
        let sent = packets.len();
        for packet in packets {
            self.send_packet(packet).await?;
        }
        Ok(sent)
    }

    /// Sends one already encoded packet now (load generation: encode once,
    /// send from many clients).
    ///
    /// # Errors
    /// When no Opus was negotiated or sending fails.
    pub async fn send_packet(&self, packet: OutboundPacket) -> Result<(), ClientError> {
        let payload_type = self
            .payload_type
            .ok_or_else(|| ClientError::WebRtc("no Opus negotiated".into()))?;
        let packet = {
            let mut microphone = self.microphone.lock().unwrap_or_else(|e| e.into_inner());
            microphone.1.stamp(packet, self.ssrc, payload_type)
        };
        self.track.write_rtp(packet).await.map_err(webrtc_error)
    }

    /// Sends a data channel message.
    ///
    /// # Errors
    /// When the channel is not open.
    pub async fn send_message(&self, text: &str) -> Result<(), ClientError> {
        self.channel.send_text(text).await.map_err(webrtc_error)
    }

    /// Hangs up: closes the data channel and the connection.
    pub async fn close(&self) {
        if let Err(err) = self.channel.close().await {
            tracing::debug!(error = %err, "closing the client's channel");
        }
        if let Err(err) = self.pc.close().await {
            tracing::debug!(error = %err, "closing the client's connection");
        }
    }
}
