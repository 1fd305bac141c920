//! The WebRTC transport's input processor and the task that reads the call
//! for it.
//!
//! The reader starts with the session. It decodes the browser's audio into
//! `InputAudio` frames (20 ms at the pipeline rate, silence while the page
//! has muted the microphone, and silence when packets stop coming for
//! [`SILENCE_AFTER`], so a turn ends when the far end stops sending), turns typed text into a final
//! `Transcription` (interrupting the bot if it is speaking), hands RTVI
//! messages to the call's RTVI state and does what they ask (`ClientRequest`
//! and `Dtmf` frames, the end of the session), forgets a `client-message`
//! no processor answered when its time is up, and skips what it cannot use
//! (answering refused RTVI messages and taking `client-message` requests
//! within the page's budget: a flood of them is dropped, logged; audio
//! more than `AHEAD_ALLOWANCE` ahead of real time is dropped, counted as
//! `media_ahead_of_real_time`). When
//! the call ends (the connection closes or fails, the page's channel
//! closes, an RTVI client sends `disconnect-bot`, or nothing arrives for
//! the idle timeout) it asks the pipeline to end gracefully, so turns in
//! flight complete and are kept.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::time::Instant;
use webrtc::peer_connection::RTCPeerConnectionState;

use crate::frame::{Direction, Frame, FrameBody, StartFrame, TranscriptionFrame};
use crate::pipeline::{Processor, ProcessorContext, ProcessorError};
use crate::transport::reader_task::ReaderTask;
use crate::transport::real_time::{AHEAD_ALLOWANCE, RealTimeBudget};
use crate::transport::rtvi::{Rejected, RtviAction, RtviInbound, RtviRequest, RtviSession};
use crate::transport::skip_log::SkipLog;
use crate::transport::stats::TransportStats;

use super::budget::MessageBudget;
use super::client_gate::ClientGate;
use super::connection::CallConnection;
use super::inbound::{InboundAudio, PacketOutcome, RtpAudio};
use super::messages::{ClientMessage, parse_client_message, text_input};
use super::peer::{ControlEvent, MediaPacket};
use super::relay::PageChannel;

/// Without a caller packet for this long, silence stands in for the
/// missing audio (as long as none comes), so the VAD hears the caller stop
/// and the turn ends: a peer playing a file stops sending at its end, a
/// page may remove its track. (Pipecat's VAD forces the speech's stop
/// after 1 s without audio.) Shorter would put silence into speech over
/// every short network stall, and the stalled audio, late for the time
/// the silence took, is dropped.
pub(super) const SILENCE_AFTER: Duration = Duration::from_millis(500);

/// How often silence is added while no packet comes: 5 frames per wake-up.
const SILENCE_STEP: Duration = Duration::from_millis(100);

/// One frame of caller audio.
const FRAME: Duration = Duration::from_millis(20);

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
    /// The page asked the bot to leave (RTVI `disconnect-bot`).
    DisconnectBot,
}

impl PeerEnd {
    /// The session's end reason: `hangup`, `peer_failed`, `idle_timeout`
    /// or `disconnect_bot`.
    pub fn reason(self) -> &'static str {
        match self {
            PeerEnd::Closed => "hangup",
            PeerEnd::Failed => "peer_failed",
            PeerEnd::IdleTimeout => "idle_timeout",
            PeerEnd::DisconnectBot => "disconnect_bot",
        }
    }
}

/// State the input processor and its reader share.
#[derive(Debug, Default)]
struct InputShared {
    bot_speaking: AtomicBool,
    reader: ReaderTask,
    client: Mutex<ClientGate>,
}

impl InputShared {
    fn client(&self) -> std::sync::MutexGuard<'_, ClientGate> {
        self.client.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Everything the reader task needs, handed over when the session starts.
pub(crate) struct Reader {
    pub(crate) connection: Arc<CallConnection>,
    pub(crate) page: PageChannel,
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
    /// When the last caller packet came (none yet: `None`, and no silence
    /// is due).
    audio_at: Option<Instant>,
    budget: MessageBudget,
    /// The caller audio admitted against real time: a page sending RTP
    /// faster than it plays has the excess dropped, not decoded and queued.
    real_time: RealTimeBudget,
    /// An RTVI `client-message` is waiting for an answer.
    requests_pending: bool,
}

impl Running {
    async fn run(mut self, ctx: ProcessorContext) {
        // One timer per call, moved on only when it fires: re-arming it for
        // every packet would touch the timer wheel 50 times a second.
        let idle = tokio::time::sleep_until(self.heard + self.reader.idle_timeout);
        tokio::pin!(idle);
        // The next deadline of the page's pending RTVI requests, when any.
        let requests = tokio::time::sleep_until(Instant::now());
        tokio::pin!(requests);
        // Moved on only when it fires, as `idle` is; off until audio comes.
        let silence = tokio::time::sleep_until(Instant::now() + SILENCE_AFTER);
        tokio::pin!(silence);
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
                    Some(event) => {
                        let end = self.control(event, &ctx).await;
                        self.arm_requests(requests.as_mut(), &ctx);
                        end
                    }
                    None => Some(PeerEnd::Closed),
                },
                () = &mut requests, if self.requests_pending => {
                    let now = ctx.now();
                    self.reader.page.rtvi(|rtvi| rtvi.handle_timeout(now));
                    self.arm_requests(requests.as_mut(), &ctx);
                    None
                }
                () = &mut silence, if self.audio_at.is_some() => {
                    let due = self.audio_at.map_or(Instant::now(), |at| at + SILENCE_AFTER);
                    let now = Instant::now();
                    if due > now {
                        silence.as_mut().reset(due);
                    } else if !self.reader.media.is_empty() {
                        // Packets came after all: they go first.
                        silence.as_mut().reset(now + SILENCE_STEP);
                    } else {
                        self.fill_silence(&ctx).await;
                        silence.as_mut().reset(now + SILENCE_STEP);
                    }
                    None
                }
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
        // A restart coming from now on is for an ended call.
        self.reader.connection.end();
        if !matches!(end, PeerEnd::Closed | PeerEnd::DisconnectBot) {
            self.reader.stats.input_error(end.reason());
        }
        if self.skips.count() > 0 {
            tracing::info!(skipped = self.skips.count(), "input skipped in this call");
        }
        tracing::info!(reason = end.reason(), "call ended");
        ctx.request_end(end.reason()).await;
    }

    /// Sets the request timer to the earliest pending deadline, if any.
    fn arm_requests(
        &mut self,
        timer: std::pin::Pin<&mut tokio::time::Sleep>,
        ctx: &ProcessorContext,
    ) {
        let deadline = self.reader.page.rtvi(|rtvi| rtvi.poll_timeout());
        self.requests_pending = deadline.is_some();
        if let Some(deadline) = deadline {
            timer.reset(Instant::now() + deadline.saturating_sub(ctx.now()));
        }
    }

    fn current(&self, generation: u64) -> bool {
        generation == self.reader.connection.generation()
    }

    async fn media(&mut self, media: MediaPacket, ctx: &ProcessorContext) {
        if !self.current(media.generation) {
            return;
        }
        let now = ctx.now();
        if self.real_time.exhausted(now) {
            self.skip_ahead_of_real_time();
            return;
        }
        let arrived = Instant::now();
        self.audio_at = Some(arrived);
        let header = &media.packet.header;
        let packet = RtpAudio {
            ssrc: header.ssrc,
            sequence: header.sequence_number,
            timestamp: header.timestamp,
            payload: &media.packet.payload,
        };
        // Only audio that decodes keeps the call alive: junk or late
        // packets do not hold its slot past the idle timeout.
        match self.reader.inbound.handle_packet(packet, ctx.now()) {
            PacketOutcome::Corrupt(err) => {
                self.skips
                    .skipped("corrupt_audio", &err, &*self.reader.stats);
            }
            PacketOutcome::NewStream => {
                self.heard = arrived;
                tracing::debug!(ssrc = header.ssrc, "audio stream");
            }
            PacketOutcome::Decoded { concealed } => {
                self.heard = arrived;
                if concealed > 0 {
                    tracing::trace!(concealed, "lost audio concealed");
                }
            }
            PacketOutcome::Late => {}
        }
        self.push_frames(now, true, ctx).await;
    }

    /// Silence up to now in place of packets that stopped coming. It does
    /// not count against the real-time budget: it never runs ahead of real
    /// time, and the stalled audio it stood in for may still come.
    async fn fill_silence(&mut self, ctx: &ProcessorContext) {
        if self.shared.reader.ending() {
            return;
        }
        // Up to a frame ago: a packet resuming right now (its audio
        // captured over the last 20 ms) then carries on after the silence
        // rather than being late for it.
        let now = ctx.now();
        if self.reader.inbound.fill_silence(now.saturating_sub(FRAME)) {
            tracing::trace!("no caller audio: silence stands in");
            self.push_frames(now, false, ctx).await;
        }
    }

    /// Pushes the frames the inbound audio has ready, admitting them
    /// against real time when `budgeted`.
    async fn push_frames(&mut self, now: Duration, budgeted: bool, ctx: &ProcessorContext) {
        let ending = self.shared.reader.ending();
        let mut frames = 0;
        let mut ahead = false;
        while let Some(mut audio) = self.reader.inbound.poll_frame() {
            if ending {
                continue;
            }
            if budgeted && !self.real_time.admit(now, audio.duration()) {
                ahead = true;
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
        if ahead {
            self.skip_ahead_of_real_time();
        }
    }

    fn skip_ahead_of_real_time(&mut self) {
        // Formatted only if logged: a flood of packets is mostly counted.
        self.skips.skipped(
            "media_ahead_of_real_time",
            &format_args!("caller audio more than {AHEAD_ALLOWANCE:?} ahead of real time"),
            &*self.reader.stats,
        );
    }

    /// Acts on a connection event; `Some` when the call is over.
    async fn control(&mut self, event: ControlEvent, ctx: &ProcessorContext) -> Option<PeerEnd> {
        match event {
            ControlEvent::State { generation, state } if self.current(generation) => match state {
                RTCPeerConnectionState::Connected => {
                    // The session's opening waits for this (`ClientGate`).
                    if self.shared.client().connected() {
                        ctx.push_downstream(FrameBody::ClientConnected).await;
                    }
                    None
                }
                RTCPeerConnectionState::Failed => self.ended_by(generation, PeerEnd::Failed),
                RTCPeerConnectionState::Closed => self.ended_by(generation, PeerEnd::Closed),
                _ => None,
            },
            ControlEvent::ChannelClosed { generation } if self.current(generation) => {
                self.ended_by(generation, PeerEnd::Closed)
            }
            ControlEvent::Message { generation, data } if self.current(generation) => {
                match parse_client_message(&data) {
                    Ok(message) => {
                        self.heard = Instant::now();
                        self.message(message, ctx).await
                    }
                    Err(err) => {
                        self.skips.skipped(err.kind(), &err, &*self.reader.stats);
                        None
                    }
                }
            }
            _ => None, // an earlier connection of a restarted call
        }
    }

    /// `end` if the connection `generation` is still the call's current
    /// one (the call's end then begun), `None` if a restart replaced it
    /// since `current` was checked: the call goes on (see
    /// `CallConnection::end_if_current`).
    fn ended_by(&self, generation: u64, end: PeerEnd) -> Option<PeerEnd> {
        self.reader
            .connection
            .end_if_current(generation)
            .then_some(end)
    }

    /// Acts on a message from the page; `Some` when the call is over.
    async fn message(&mut self, message: ClientMessage, ctx: &ProcessorContext) -> Option<PeerEnd> {
        match message {
            ClientMessage::Text(text) => self.text(text, ctx).await,
            ClientMessage::Mute(muted) => {
                if muted != self.muted {
                    tracing::info!(muted, "microphone");
                }
                self.muted = muted;
            }
            ClientMessage::Rtvi(Ok(inbound)) => {
                let asks = matches!(inbound.request, RtviRequest::ClientMessage { .. });
                if !asks || self.within_budget(ctx) {
                    return self.rtvi(inbound, ctx).await;
                }
            }
            ClientMessage::Rtvi(Err(rejected)) => {
                self.skips
                    .skipped("rtvi_rejected", &rejected, &*self.reader.stats);
                if self.within_budget(ctx) {
                    self.reader.page.rtvi(|rtvi| rtvi.reject(&rejected));
                }
            }
            ClientMessage::Ping => self.reader.page.rtvi(RtviSession::handle_keepalive),
            ClientMessage::Ignored => {}
        }
        None
    }

    /// Whether the page may have one more answer (see `budget`); when not,
    /// the message is dropped, and logged.
    fn within_budget(&mut self, ctx: &ProcessorContext) -> bool {
        let admitted = self.budget.admit(ctx.now());
        if !admitted {
            let reason = "over the page's budget of answered messages";
            self.skips
                .skipped("message_flood", &reason, &*self.reader.stats);
        }
        admitted
    }

    async fn rtvi(&mut self, inbound: RtviInbound, ctx: &ProcessorContext) -> Option<PeerEnd> {
        let id = inbound.id.clone();
        let now = ctx.now();
        let action = self
            .reader
            .page
            .rtvi(|rtvi| rtvi.handle_inbound(inbound, now));
        let ending = self.shared.reader.ending();
        match action {
            RtviAction::None => {}
            RtviAction::Text(content) => match text_input(content) {
                Ok(ClientMessage::Text(text)) => self.text(text, ctx).await,
                Ok(_) => {}
                Err(err) => {
                    let rejected = Rejected {
                        id,
                        error: err.to_string(),
                    };
                    self.skips.skipped(err.kind(), &err, &*self.reader.stats);
                    self.reader.page.rtvi(|rtvi| rtvi.reject(&rejected));
                }
            },
            RtviAction::Request(request) if !ending => {
                ctx.push_downstream(FrameBody::ClientRequest(request)).await;
            }
            RtviAction::Dtmf(keys) if !ending => {
                for digit in keys {
                    ctx.push_downstream(FrameBody::Dtmf { digit }).await;
                }
            }
            RtviAction::Disconnect => return Some(PeerEnd::DisconnectBot),
            RtviAction::FunctionCallResult {
                tool_call_id,
                result,
            } if !ending => {
                ctx.push_downstream(FrameBody::ClientToolResult {
                    tool_call_id,
                    result,
                })
                .await;
            }
            RtviAction::Request(_)
            | RtviAction::Dtmf(_)
            | RtviAction::FunctionCallResult { .. } => {}
        }
        None
    }

    async fn text(&mut self, text: String, ctx: &ProcessorContext) {
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
}

/// The input processor of a WebRTC call: the head of the chain.
pub struct WebRtcInput {
    reader: Option<Reader>,
    connection: Arc<CallConnection>,
    shared: Arc<InputShared>,
}

impl WebRtcInput {
    pub(crate) fn new(reader: Reader) -> Self {
        WebRtcInput {
            connection: Arc::clone(&reader.connection),
            reader: Some(reader),
            shared: Arc::default(),
        }
    }

    /// The session is ending: the reader stops, and the call takes no more
    /// offers (a restart would be a connection on a dying call).
    fn stop_reading(&self) {
        self.connection.end();
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
            // Held until the peer connection is up (`ClientGate`).
            FrameBody::ClientConnected if !self.shared.client().announced() => return Ok(()),
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
                audio_at: None,
                budget: MessageBudget::default(),
                real_time: RealTimeBudget::default(),
                requests_pending: false,
            };
            self.shared.reader.start(ctx, running.run(ctx.clone()));
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
