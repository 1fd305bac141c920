//! The WebRTC transport's input processor and the task that reads the call
//! for it.
//!
//! The reader starts with the session. It decodes the browser's audio into
//! `InputAudio` frames (20 ms at the pipeline rate, silence while the page
//! has muted the microphone), turns typed text into a final
//! `Transcription` (interrupting the bot if it is speaking), and skips what
//! it cannot use. When the call ends (the connection closes or fails, the
//! page's channel closes, or nothing arrives for the idle timeout) it asks
//! the pipeline to end gracefully, so turns in flight complete and are
//! kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::time::Instant;
use webrtc::peer_connection::RTCPeerConnectionState;

use crate::frame::{Direction, Frame, FrameBody, StartFrame, TranscriptionFrame};
use crate::pipeline::{Processor, ProcessorContext, ProcessorError};
use crate::transport::reader_task::ReaderTask;
use crate::transport::skip_log::SkipLog;
use crate::transport::stats::TransportStats;

use super::connection::CallConnection;
use super::inbound::{InboundAudio, PacketOutcome, RtpAudio};
use super::messages::{ClientMessage, parse_client_message};
use super::peer::{ControlEvent, MediaPacket};

/// How a call ended, as its reader saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerEnd {
    /// The browser closed the connection or its channel (hung up).
    Closed,
    /// ICE or DTLS failed: the browser is unreachable.
    Failed,
    /// Nothing came for the idle timeout.
    IdleTimeout,
}

impl PeerEnd {
    /// The session's end reason: `hangup`, `peer_failed` or `idle_timeout`.
    pub fn reason(self) -> &'static str {
        match self {
            PeerEnd::Closed => "hangup",
            PeerEnd::Failed => "peer_failed",
            PeerEnd::IdleTimeout => "idle_timeout",
        }
    }
}

/// State the input processor and its reader share.
#[derive(Debug, Default)]
struct InputShared {
    bot_speaking: AtomicBool,
    reader: ReaderTask,
}

/// Everything the reader task needs, handed over when the session starts.
pub(crate) struct Reader {
    pub(crate) connection: Arc<CallConnection>,
    pub(crate) media: mpsc::Receiver<MediaPacket>,
    pub(crate) control: mpsc::Receiver<ControlEvent>,
    pub(crate) inbound: InboundAudio,
    pub(crate) idle_timeout: Duration,
    pub(crate) stats: Arc<dyn TransportStats>,
}

struct Running {
    reader: Reader,
    shared: Arc<InputShared>,
    muted: bool,
    skips: SkipLog,
    heard: Instant,
}

impl Running {
    async fn run(mut self, ctx: ProcessorContext) {
        // One timer per call, moved on only when it fires: re-arming it for
        // every packet would touch the timer wheel 50 times a second.
        let idle = tokio::time::sleep_until(self.heard + self.reader.idle_timeout);
        tokio::pin!(idle);
        let end = loop {
            let result = tokio::select! {
                media = self.reader.media.recv() => match media {
                    Some(packet) => {
                        self.media(packet, &ctx).await;
                        None
                    }
                    None => Some(PeerEnd::Closed),
                },
                control = self.reader.control.recv() => match control {
                    Some(event) => self.control(event, &ctx).await,
                    None => Some(PeerEnd::Closed),
                },
                () = &mut idle => {
                    let idle_at = self.heard + self.reader.idle_timeout;
                    if idle_at <= Instant::now() {
                        Some(PeerEnd::IdleTimeout)
                    } else {
                        idle.as_mut().reset(idle_at);
                        None
                    }
                }
            };
            if let Some(end) = result {
                break end;
            }
        };
        if end != PeerEnd::Closed {
            self.reader.stats.input_error(end.reason());
        }
        if self.skips.count() > 0 {
            tracing::info!(skipped = self.skips.count(), "input skipped in this call");
        }
        tracing::info!(reason = end.reason(), "call ended");
        ctx.request_end(end.reason()).await;
    }

    fn current(&self, generation: u64) -> bool {
        generation == self.reader.connection.generation()
    }

    async fn media(&mut self, media: MediaPacket, ctx: &ProcessorContext) {
        if !self.current(media.generation) {
            return;
        }
        self.heard = Instant::now();
        let header = &media.packet.header;
        let packet = RtpAudio {
            ssrc: header.ssrc,
            sequence: header.sequence_number,
            timestamp: header.timestamp,
            payload: &media.packet.payload,
        };
        match self.reader.inbound.handle_packet(packet, ctx.now()) {
            PacketOutcome::Corrupt(err) => {
                self.skips
                    .skipped("corrupt_audio", &err, &*self.reader.stats);
            }
            PacketOutcome::NewStream => tracing::debug!(ssrc = header.ssrc, "audio stream"),
            PacketOutcome::Decoded { concealed } if concealed > 0 => {
                tracing::trace!(concealed, "lost audio concealed");
            }
            PacketOutcome::Decoded { .. } | PacketOutcome::Late => {}
        }
        let ending = self.shared.reader.ending();
        let mut frames = 0;
        while let Some(mut audio) = self.reader.inbound.poll_frame() {
            if ending {
                continue;
            }
            if self.muted {
                // Zeroed bytes are silence in 16-bit PCM: one allocation
                // per frame, no sample conversion.
                audio.data = vec![0; audio.data.len()].into();
            }
            ctx.push_downstream(FrameBody::InputAudio(audio)).await;
            frames += 1;
        }
        if frames > 0 {
            self.reader.stats.audio_in(frames);
        }
    }

    /// Acts on a connection event; `Some` when the call is over.
    async fn control(&mut self, event: ControlEvent, ctx: &ProcessorContext) -> Option<PeerEnd> {
        match event {
            ControlEvent::State { generation, state } if self.current(generation) => match state {
                RTCPeerConnectionState::Failed => Some(PeerEnd::Failed),
                RTCPeerConnectionState::Closed => Some(PeerEnd::Closed),
                _ => None,
            },
            ControlEvent::ChannelClosed { generation } if self.current(generation) => {
                Some(PeerEnd::Closed)
            }
            ControlEvent::Message { generation, data } if self.current(generation) => {
                self.heard = Instant::now();
                match parse_client_message(&data) {
                    Ok(message) => self.message(message, ctx).await,
                    Err(err) => self.skips.skipped(err.kind(), &err, &*self.reader.stats),
                }
                None
            }
            _ => None, // an earlier connection of a restarted call
        }
    }

    async fn message(&mut self, message: ClientMessage, ctx: &ProcessorContext) {
        match message {
            ClientMessage::Text(text) => {
                if self.shared.reader.ending() {
                    return;
                }
                if self.shared.bot_speaking.load(Ordering::Acquire) {
                    ctx.request_interruption().await;
                }
                tracing::debug!(chars = text.chars().count(), "text input");
                ctx.push_downstream(FrameBody::Transcription(TranscriptionFrame {
                    text,
                    user_id: None,
                    language: None,
                    at: ctx.now(),
                }))
                .await;
            }
            ClientMessage::Mute(muted) => {
                if muted != self.muted {
                    tracing::info!(muted, "microphone");
                }
                self.muted = muted;
            }
            ClientMessage::Ping | ClientMessage::Ignored => {}
        }
    }
}

/// The input processor of a WebRTC call: the head of the chain.
pub struct WebRtcInput {
    reader: Option<Reader>,
    shared: Arc<InputShared>,
}

impl WebRtcInput {
    pub(crate) fn new(reader: Reader) -> Self {
        WebRtcInput {
            reader: Some(reader),
            shared: Arc::default(),
        }
    }

    fn stop_reading(&self) {
        self.shared.reader.stop();
    }
}

#[async_trait]
impl Processor for WebRtcInput {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        match &frame.body {
            FrameBody::BotStartedSpeaking => {
                self.shared.bot_speaking.store(true, Ordering::Release)
            }
            FrameBody::BotStoppedSpeaking => {
                self.shared.bot_speaking.store(false, Ordering::Release);
            }
            _ => {}
        }
        ctx.push(frame, direction).await;
        Ok(())
    }

    async fn on_start(
        &mut self,
        _start: &StartFrame,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        if let Some(reader) = self.reader.take() {
            let running = Running {
                reader,
                shared: Arc::clone(&self.shared),
                muted: false,
                skips: SkipLog::default(),
                heard: Instant::now(),
            };
            self.shared.reader.start(running.run(ctx.clone()));
        }
        Ok(())
    }

    async fn on_end(&mut self, _ctx: &ProcessorContext) -> Result<(), ProcessorError> {
        self.stop_reading();
        Ok(())
    }

    async fn on_cancel(&mut self, _ctx: &ProcessorContext) {
        self.stop_reading();
    }
}
