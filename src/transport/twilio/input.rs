//! The Twilio transport's input processor and the task that reads the
//! socket for it.
//!
//! The reader task starts with the session. It turns caller audio into
//! `InputAudio` frames (20 ms at the pipeline rate; silence when caller
//! audio stops coming for [`SILENCE_AFTER`], so a turn still ends) and key presses into
//! `Dtmf` frames, hands mark echoes to the sink, and skips what it cannot
//! use. When the stream ends (`stop`, the socket closing or failing, a
//! message over the size limit, or no usable caller audio for the idle
//! timeout) it asks
//! the pipeline to end gracefully, never to cancel: turns in flight finish
//! and are kept.
//!
//! Once the session is ending it stops pushing audio but keeps reading, so
//! that marks for the last utterance still arrive; the call's handle stops
//! it when the session is over.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{FutureExt as _, Stream, StreamExt};
use tokio::sync::mpsc;

use crate::frame::{Direction, Frame, FrameBody, StartFrame};
use crate::pipeline::{Processor, ProcessorContext, ProcessorError};
use crate::transport::reader_task::ReaderTask;
use crate::transport::skip_log::SkipLog;
use crate::transport::stats::TransportStats;
use crate::transport::wake_grid;
use crate::transport::websocket::WsInbound;

use super::marks::MarkTracker;
use super::stream::{Inbound, StreamReader};

/// The most messages read in one go after the first, when the socket is
/// read once per `interval`: eight times real time (Twilio's messages are
/// 20 ms each), at least 16, so a reader that fell behind catches up while
/// a flood is held back at the socket. A fixed bound would let a long
/// interval (a `read_interval_secs` of 0.5 takes 25 messages a read) fall
/// behind real time for good.
fn most_per_read(interval: Duration) -> usize {
    let real_time = interval.as_millis() / 20;
    usize::try_from(real_time.saturating_mul(8))
        .unwrap_or(usize::MAX)
        .max(16)
}

/// Without caller audio for this long, silence stands in for it (as long
/// as none comes), so the VAD hears the caller stop and the turn ends.
/// Twilio sends audio all the time, silence included; a client that stops
/// sending (a test driver at the end of its file) would otherwise leave
/// the turn open until the idle timeout. (Pipecat's VAD forces the
/// speech's stop after 1 s without audio; here the VAD hears silence.)
pub(super) const SILENCE_AFTER: Duration = Duration::from_millis(500);

/// How often silence is added while no audio comes.
const SILENCE_STEP: Duration = Duration::from_millis(100);

/// How a stream ended, as its reader saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamEnd {
    /// Twilio sent `stop`: the call is over.
    Stopped,
    /// The socket closed or dropped without `stop`.
    Disconnected,
    /// No usable caller audio came for the idle timeout.
    IdleTimeout,
    /// A message over the size limit.
    TooLarge,
    /// A message the stream cannot go on after.
    ProtocolError,
    /// The socket failed.
    SocketError,
}

impl StreamEnd {
    /// The session's end reason: `hangup`, `disconnected`, `idle_timeout`,
    /// `message_too_large`, `protocol_error` or `socket_error`.
    pub fn reason(self) -> &'static str {
        match self {
            StreamEnd::Stopped => "hangup",
            StreamEnd::Disconnected => "disconnected",
            StreamEnd::IdleTimeout => "idle_timeout",
            StreamEnd::TooLarge => "message_too_large",
            StreamEnd::ProtocolError => "protocol_error",
            StreamEnd::SocketError => "socket_error",
        }
    }
}

/// State the input, its reader task and the server share for one call.
#[derive(Debug, Default)]
pub(super) struct CallShared {
    pub(super) ended_by: OnceLock<StreamEnd>,
    pub(super) reader: ReaderTask,
}

/// Everything the reader task needs, handed over when the session starts.
pub(super) struct Reader<S> {
    pub(super) inbound: S,
    pub(super) stream: StreamReader,
    pub(super) echoes: mpsc::Sender<String>,
    pub(super) idle_timeout: Duration,
    /// Zero: read each message as it arrives; else read what has arrived
    /// once per interval.
    pub(super) read_interval: Duration,
    /// When caller audio last came (none yet: `None`).
    pub(super) audio_at: Option<tokio::time::Instant>,
    /// When the stream's `start` came.
    pub(super) started_at: tokio::time::Instant,
    pub(super) stats: Arc<dyn TransportStats>,
    pub(super) skips: SkipLog,
    pub(super) shared: Arc<CallShared>,
}

impl<S> Reader<S>
where
    S: Stream<Item = WsInbound> + Send + Unpin + 'static,
{
    async fn run(mut self, ctx: ProcessorContext) {
        // Twilio has streamed since `start` while the session started.
        self.stream.set_head_start(self.started_at.elapsed());
        // Only caller audio that is used keeps the stream alive: junk,
        // marks or a flood dropped over the real-time budget do not.
        let mut idle_at = tokio::time::Instant::now() + self.idle_timeout;
        // When silence last stood in for missing audio.
        let mut filled_at: Option<tokio::time::Instant> = None;
        let end = loop {
            // Checked here too: a message waiting at every read would keep
            // `timeout_at` from ever looking at its deadline. Past it, what
            // has arrived is read first, so audio already here counts; a
            // reader still working through a backlog (a flood it reads at
            // its own pace) may not have reached the audio sent after it,
            // so it waits once more the timeout before giving up.
            if tokio::time::Instant::now() >= idle_at {
                let drained = match self.read_arrived(&ctx, &mut idle_at).await {
                    Ok(drained) => drained,
                    Err(end) => break end,
                };
                let now = tokio::time::Instant::now();
                if now >= idle_at && (drained || now >= idle_at + self.idle_timeout) {
                    break StreamEnd::IdleTimeout;
                }
            }
            // Checked here too, for the same reason: other messages may
            // keep coming where audio does not. What has arrived is read
            // first: audio waiting there is no gap (a read interval near
            // `SILENCE_AFTER`, a wake-up late under load), nor is there one
            // while the reader is still behind (a backlog of other
            // messages with the audio behind it).
            if self
                .silence_at(filled_at)
                .is_some_and(|at| tokio::time::Instant::now() >= at)
            {
                let drained = match self.read_arrived(&ctx, &mut idle_at).await {
                    Ok(drained) => drained,
                    Err(end) => break end,
                };
                if drained
                    && self
                        .silence_at(filled_at)
                        .is_some_and(|at| tokio::time::Instant::now() >= at)
                {
                    self.fill_silence(&ctx).await;
                    filled_at = Some(tokio::time::Instant::now());
                }
            }
            let wake = self
                .silence_at(filled_at)
                .map_or(idle_at, |at| at.min(idle_at));
            let next = tokio::time::timeout_at(wake, self.inbound.next()).await;
            let Ok(next) = next else {
                // Nothing came: the checks above end the stream or fill.
                continue;
            };
            if let Some(end) = self.on_message(next, &ctx, &mut idle_at).await {
                break end;
            }
            if self.read_interval.is_zero() {
                continue;
            }
            // Whatever else has arrived, without waiting; then nothing until
            // the interval is over, so that its messages are read in one
            // wake-up. (Polled without a waker, the socket does not wake
            // the call for the messages that arrive meanwhile.)
            if let Err(end) = self.read_arrived(&ctx, &mut idle_at).await {
                break end;
            }
            let next_read = tokio::time::Instant::now() + self.read_interval;
            tokio::time::sleep_until(wake_grid::nearest(next_read)).await;
        };
        if end != StreamEnd::Stopped {
            self.stats.input_error(end.reason());
        }
        if self.skips.count() > 0 {
            tracing::info!(
                skipped = self.skips.count(),
                "messages skipped in this call"
            );
        }
        let _first = self.shared.ended_by.set(end);
        tracing::info!(reason = end.reason(), "stream ended");
        ctx.request_end(end.reason()).await;
    }

    /// When silence is next due in place of caller audio, once there has
    /// been some: [`SILENCE_AFTER`] after the last, then every
    /// [`SILENCE_STEP`] after the last `filled_at`.
    fn silence_at(&self, filled_at: Option<tokio::time::Instant>) -> Option<tokio::time::Instant> {
        let heard = self.audio_at?;
        Some(match filled_at {
            Some(filled) if filled > heard => filled + SILENCE_STEP,
            _ => heard + SILENCE_AFTER,
        })
    }

    /// Pushes silence up to now in place of caller audio that has not come
    /// (see [`SILENCE_AFTER`]). It does not move the idle timeout: only
    /// audio the caller sent does.
    async fn fill_silence(&mut self, ctx: &ProcessorContext) {
        if self.shared.reader.ending() || !self.stream.fill_silence(ctx.now()) {
            return;
        }
        tracing::trace!("no caller audio: silence stands in");
        while let Some(audio) = self.stream.poll_audio() {
            ctx.push_downstream(FrameBody::InputAudio(audio)).await;
        }
    }

    /// Reads what has arrived, without waiting: a bounded number of
    /// messages, so a flood cannot hold the call's task. `Ok(true)` when
    /// that was all that had arrived, `Err` when the stream is over.
    async fn read_arrived(
        &mut self,
        ctx: &ProcessorContext,
        idle_at: &mut tokio::time::Instant,
    ) -> Result<bool, StreamEnd> {
        for _ in 0..most_per_read(self.read_interval) {
            let Some(next) = self.inbound.next().now_or_never() else {
                return Ok(true);
            };
            if let Some(end) = self.on_message(next, ctx, idle_at).await {
                return Err(end);
            }
        }
        Ok(false)
    }

    /// Acts on what the socket gave; `Some` when the stream is over. Only
    /// caller audio that is used moves `idle_at` on.
    async fn on_message(
        &mut self,
        next: Option<WsInbound>,
        ctx: &ProcessorContext,
        idle_at: &mut tokio::time::Instant,
    ) -> Option<StreamEnd> {
        let inbound = match next {
            None | Some(WsInbound::Closed) => return Some(StreamEnd::Disconnected),
            Some(WsInbound::Text(text)) => self.stream.handle_text(&text, ctx.now()),
            Some(WsInbound::Binary(len)) => self.stream.handle_binary(len),
            Some(WsInbound::TooLarge { size, max }) => {
                tracing::warn!(size, max, "message over the size limit");
                return Some(StreamEnd::TooLarge);
            }
            Some(WsInbound::Failed(err)) => {
                tracing::warn!(error = %err, "the socket failed");
                return Some(StreamEnd::SocketError);
            }
        };
        self.handle(inbound, ctx, idle_at).await
    }

    /// Acts on one message; `Some` when the stream is over. Only a whole
    /// frame of caller audio moves `idle_at` on.
    async fn handle(
        &mut self,
        inbound: Inbound,
        ctx: &ProcessorContext,
        idle_at: &mut tokio::time::Instant,
    ) -> Option<StreamEnd> {
        let ending = self.shared.reader.ending();
        match inbound {
            Inbound::Audio => {
                let (mut decoded, mut frames) = (false, 0);
                while let Some(audio) = self.stream.poll_audio() {
                    decoded = true;
                    if !ending {
                        ctx.push_downstream(FrameBody::InputAudio(audio)).await;
                        frames += 1;
                    }
                }
                if decoded {
                    let now = tokio::time::Instant::now();
                    *idle_at = now + self.idle_timeout;
                    self.audio_at = Some(now);
                }
                if frames > 0 {
                    self.stats.audio_in(frames);
                }
            }
            Inbound::Dtmf(digit) if !ending => {
                // Not the digit: keys pressed can be a PIN or a card number.
                tracing::debug!("key pressed");
                ctx.push_downstream(FrameBody::Dtmf { digit }).await;
            }
            Inbound::MarkPlayed(name) if !MarkTracker::could_be_ours(&name) => {
                tracing::debug!("echo of a mark that is not ours: dropped");
            }
            Inbound::MarkPlayed(name) => {
                // The queue is bounded: the sink drains it only when an
                // utterance ends, and a far end sending marks of its own
                // must not grow memory. Twilio echoes one mark per
                // utterance, far below the bound; an echo dropped because
                // junk filled it is given up on by the sink after its
                // timeout. Once the session is over the sink is gone:
                // nothing to tell.
                if let Err(mpsc::error::TrySendError::Full(_)) = self.echoes.try_send(name) {
                    tracing::debug!("mark echo dropped: too many queued");
                }
            }
            Inbound::Stopped => return Some(StreamEnd::Stopped),
            Inbound::Skipped(skip) => self.skips.skipped(skip.kind(), &skip, &*self.stats),
            Inbound::Failed(err) => {
                tracing::warn!(error = %err, "the stream cannot go on");
                return Some(StreamEnd::ProtocolError);
            }
            Inbound::Started(_) | Inbound::Ignored | Inbound::Dtmf(_) => {}
        }
        None
    }
}

/// The input processor of a Twilio call: the head of the chain.
pub struct TwilioInput<S> {
    reader: Option<Reader<S>>,
    shared: Arc<CallShared>,
}

impl<S> TwilioInput<S> {
    pub(super) fn new(reader: Reader<S>) -> Self {
        TwilioInput {
            shared: Arc::clone(&reader.shared),
            reader: Some(reader),
        }
    }
}

#[async_trait]
impl<S> Processor for TwilioInput<S>
where
    S: Stream<Item = WsInbound> + Send + Unpin + 'static,
{
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        ctx.push(frame, direction).await;
        Ok(())
    }

    async fn on_start(
        &mut self,
        _start: &StartFrame,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        if let Some(reader) = self.reader.take() {
            self.shared.reader.start(ctx, reader.run(ctx.clone()));
        }
        Ok(())
    }

    async fn on_end(&mut self, _ctx: &ProcessorContext) -> Result<(), ProcessorError> {
        self.shared.reader.stop_pushing();
        Ok(())
    }

    async fn on_cancel(&mut self, _ctx: &ProcessorContext) {
        self.shared.reader.stop_pushing();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_takes_several_times_real_time_whatever_the_interval() {
        assert_eq!(most_per_read(Duration::from_millis(40)), 16);
        assert_eq!(most_per_read(Duration::from_millis(20)), 16);
        // Half a second brings 25 messages; a read may take 200.
        assert_eq!(most_per_read(Duration::from_millis(500)), 200);
        assert!(most_per_read(Duration::from_secs(1)) >= 50 * 8);
    }
}
