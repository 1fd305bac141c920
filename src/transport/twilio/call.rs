//! One Twilio call: the handshake up to `start`, then the session's two
//! transport ends over the same socket.
//!
//! ```text
//! socket ──▶ TwilioCall::accept (connected, start) ──▶ TwilioCall::into_transport
//!               │                                          │
//!               └ StreamStart (call SID, parameters)       ├ transport.input  (reader task: audio, dtmf, marks)
//!                                                          ├ transport.output (TwilioSink, paced, sent ahead)
//!                                                          └ CallHandle (how the stream ended; stop reading)
//! ```

use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::audio::AudioError;
use crate::pipeline::NamedProcessor;
use crate::transport::ends::TransportEnds;
use crate::transport::output::{OutputTransport, Pacing};
use crate::transport::playout::SendAhead;
use crate::transport::skip_log::SkipLog;
use crate::transport::stats::TransportStats;
use crate::transport::websocket::WsInbound;

use super::codec::FRAME;
use super::input::{CallShared, Reader, StreamEnd, TwilioInput};
use super::protocol::{ProtocolError, StreamStart};
use super::sink::TwilioSink;
use super::stream::{Inbound, StreamReader};

/// Mark echoes the reader may queue for the sink, which reads them when an
/// utterance ends: far more than the marks (one per utterance) a call has
/// pending, and a bound on what a far end sending marks of its own can
/// make the server hold.
const MARK_ECHOES: usize = 64;

/// How a call is run.
#[derive(Clone)]
pub struct CallOptions {
    /// A stream that sends no caller audio the pipeline can use for this
    /// long is over (junk, marks, media too short to make a frame and media
    /// dropped over the real-time budget do not count); the wait for
    /// `start` is this or [`START_TIMEOUT`], the shorter.
    pub idle_timeout: Duration,
    /// Where traffic and skipped messages are counted.
    pub stats: Arc<dyn TransportStats>,
    /// How far ahead of the caller's playback bot audio may be sent
    /// (`[transport.twilio] send_ahead_secs`).
    pub send_ahead: SendAhead,
    /// How often the socket is read; zero: as each message arrives
    /// (`[transport.twilio] read_interval_secs`).
    pub read_interval: Duration,
}

impl CallOptions {
    /// Bot audio sent up to `most` ahead of the caller's playback. Twilio
    /// plays `media` in order as it arrives and buffers what is ahead, so
    /// audio that continues what is playing can leave early: a wake-up of
    /// the server up to `most` less two frames late (a busy core, a burst
    /// of other calls) is then not heard as a gap. Each wake-up sends two
    /// frames: at 1,000 calls (`twilio_load`, three runs each, one sitting)
    /// one frame per wake-up left 80 to 98% of calls with a late frame, two
    /// 1 to 31%, at the same CPU within 2%. (At 1,000 calls both cores are
    /// full, and the share late moves more between sittings than that.)
    /// The default lead, 0.5 s, covers the server's wake-ups when the two
    /// cores are full for seconds: at 1,000 calls with a third process
    /// spinning on one core, 0.2 s left 88% and 74% of calls with a late
    /// frame (worst 511 and 267 ms), 0.5 s 37% and 9%, alternating in one
    /// sitting. On a barge-in the `clear` drops what Twilio holds, and what
    /// was cut is counted by playing time; a longer lead only sends more
    /// that a barge-in throws away.
    pub fn send_ahead(most: Duration) -> SendAhead {
        SendAhead {
            most,
            refill_below: most.saturating_sub(2 * FRAME),
        }
    }
}

/// Why a stream never started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// No `start` within the idle timeout.
    #[error("no `start` within {0:?}")]
    Timeout(Duration),
    /// The socket closed before `start`.
    #[error("the socket closed before `start`")]
    Closed,
    /// Twilio sent `stop` before `start`.
    #[error("`stop` before `start`")]
    Stopped,
    /// A message over the size limit.
    #[error("a message of {size} bytes, over the limit of {max}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The `start` cannot be used.
    #[error(transparent)]
    Protocol(ProtocolError),
    /// The socket failed.
    #[error("the socket failed: {0}")]
    Socket(Box<dyn std::error::Error + Send + Sync>),
    /// The pipeline's rate cannot be converted to (cannot happen for a
    /// validated pipeline).
    #[error(transparent)]
    Audio(AudioError),
}

/// The longest wait for `start` once the socket is open: Twilio sends
/// `connected` and `start` at once, and a socket that sends neither (a
/// replayed upgrade, say) holds a session slot until then.
pub const START_TIMEOUT: Duration = Duration::from_secs(3);

/// A Twilio stream that has started.
pub struct TwilioCall<S> {
    start: StreamStart,
    /// When `start` came: Twilio streams from then on.
    started_at: tokio::time::Instant,
    stream: StreamReader,
    inbound: S,
    skips: SkipLog,
    options: CallOptions,
}

impl<S> TwilioCall<S>
where
    S: Stream<Item = WsInbound> + Send + Unpin + 'static,
{
    /// Reads `inbound` until Twilio's `start`, skipping (and logging) what
    /// comes before it that does not belong there, for at most the idle
    /// timeout or [`START_TIMEOUT`] in all, the shorter: a far end sending
    /// anything but `start` cannot hold its session slot. Audio will be
    /// decoded to `pipeline_rate`.
    pub async fn accept(
        mut inbound: S,
        pipeline_rate: u32,
        options: CallOptions,
    ) -> Result<Self, AcceptError> {
        let mut stream = StreamReader::new(pipeline_rate).map_err(AcceptError::Audio)?;
        // A read takes what arrived over the interval at once: audio that
        // far ahead of real time is a read's worth, not a backlog.
        stream.set_lead_allowance(options.read_interval + Duration::from_millis(100));
        let mut skips = SkipLog::default();
        let wait = options.idle_timeout.min(START_TIMEOUT);
        let deadline = tokio::time::Instant::now() + wait;
        let start = loop {
            let event = match tokio::time::timeout_at(deadline, inbound.next()).await {
                Err(_elapsed) => return Err(AcceptError::Timeout(wait)),
                Ok(None | Some(WsInbound::Closed)) => return Err(AcceptError::Closed),
                Ok(Some(WsInbound::TooLarge { size, max })) => {
                    return Err(AcceptError::TooLarge { size, max });
                }
                Ok(Some(WsInbound::Failed(err))) => return Err(AcceptError::Socket(err)),
                Ok(Some(WsInbound::Binary(len))) => stream.handle_binary(len),
                Ok(Some(WsInbound::Text(text))) => stream.handle_text(&text, Duration::ZERO),
            };
            match event {
                Inbound::Started(start) => break start,
                Inbound::Stopped => return Err(AcceptError::Stopped),
                Inbound::Failed(err) => return Err(AcceptError::Protocol(err)),
                Inbound::Skipped(skip) => skips.skipped(skip.kind(), &skip, &*options.stats),
                Inbound::Ignored | Inbound::Audio | Inbound::Dtmf(_) | Inbound::MarkPlayed(_) => {}
            }
        };
        Ok(TwilioCall {
            start,
            started_at: tokio::time::Instant::now(),
            stream,
            inbound,
            skips,
            options,
        })
    }

    /// What Twilio said about the stream.
    pub fn start(&self) -> &StreamStart {
        &self.start
    }

    /// The session's transport ends: `transport.input` reads the rest of
    /// the stream, `transport.output` sends bot audio as messages on
    /// `outbound` for the socket's writer.
    pub fn into_transport(self, outbound: mpsc::Sender<String>) -> (TransportEnds, CallHandle) {
        let shared = Arc::new(CallShared::default());
        let (echoes_tx, echoes_rx) = mpsc::channel(MARK_ECHOES);
        let sink = TwilioSink::new(
            self.start.stream_sid.clone(),
            outbound,
            echoes_rx,
            Arc::clone(&self.options.stats),
        );
        let reader = Reader {
            inbound: self.inbound,
            stream: self.stream,
            echoes: echoes_tx,
            idle_timeout: self.options.idle_timeout,
            read_interval: self.options.read_interval,
            audio_at: None,
            started_at: self.started_at,
            stats: self.options.stats,
            skips: self.skips,
            shared: Arc::clone(&shared),
        };
        let ends = TransportEnds {
            input: NamedProcessor::new("transport.input", TwilioInput::new(reader)),
            output: NamedProcessor::new(
                "transport.output",
                OutputTransport::new(
                    sink,
                    Pacing::Timer {
                        period: FRAME,
                        send_ahead: self.options.send_ahead,
                    },
                ),
            ),
        };
        (ends, CallHandle { shared })
    }
}

/// What the call's socket keeps of it while its session runs.
#[derive(Debug, Clone)]
pub struct CallHandle {
    shared: Arc<CallShared>,
}

impl CallHandle {
    /// How the stream ended, if it has: `None` while Twilio is still
    /// streaming (the pipeline ended the session itself).
    pub fn ended_by(&self) -> Option<StreamEnd> {
        self.shared.ended_by.get().copied()
    }

    /// Whether the call may still be up at Twilio: everything but `stop`.
    pub fn call_may_be_up(&self) -> bool {
        self.ended_by() != Some(StreamEnd::Stopped)
    }

    /// Stops reading the socket (the session is over).
    pub fn stop_reading(&self) {
        self.shared.reader.stop();
    }
}

#[cfg(test)]
mod tests {
    use axum::extract::ws::Utf8Bytes;

    use super::*;
    use crate::transport::stats::NoStats;

    /// Twilio's `start` of stream MZ1.
    const START: &str = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"streamSid":"MZ1","accountSid":"AC1","callSid":"CA1","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{}}}"#;

    #[tokio::test(start_paused = true)]
    async fn messages_other_than_start_cannot_hold_off_the_timeout() {
        // Junk every second, forever; the idle timeout is two seconds.
        let junk = futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some((WsInbound::Text(Utf8Bytes::from_static("hello")), ()))
        });
        let options = CallOptions {
            idle_timeout: Duration::from_secs(2),
            stats: Arc::new(NoStats),
            send_ahead: SendAhead::NONE,
            read_interval: Duration::ZERO,
        };
        let accepted = tokio::time::timeout(
            Duration::from_secs(60),
            TwilioCall::accept(Box::pin(junk), 16_000, options),
        )
        .await;
        assert!(
            matches!(accepted, Ok(Err(AcceptError::Timeout(_)))),
            "the wait for `start` ends after the idle timeout"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_for_start_is_short_whatever_the_idle_timeout() {
        let silent = futures_util::stream::pending::<WsInbound>();
        let options = CallOptions {
            idle_timeout: Duration::from_secs(30),
            stats: Arc::new(NoStats),
            send_ahead: SendAhead::NONE,
            read_interval: Duration::ZERO,
        };
        let began = tokio::time::Instant::now();
        let accepted = TwilioCall::accept(Box::pin(silent), 16_000, options).await;
        assert!(matches!(accepted, Err(AcceptError::Timeout(_))));
        assert_eq!(began.elapsed(), START_TIMEOUT);
    }

    /// Runs a call whose stream sends `start`, then `junk` as its only
    /// messages, reading every `read_interval` with an idle timeout of 2 s;
    /// returns how it ended and when.
    async fn ended_by_junk(
        junk: impl Stream<Item = WsInbound> + Send + Unpin + 'static,
        read_interval: Duration,
    ) -> (Option<StreamEnd>, Duration) {
        let inbound = futures_util::stream::iter([WsInbound::Text(Utf8Bytes::from_static(START))])
            .chain(junk);
        let options = CallOptions {
            idle_timeout: Duration::from_secs(2),
            stats: Arc::new(NoStats),
            send_ahead: SendAhead::NONE,
            read_interval,
        };
        let call = TwilioCall::accept(Box::pin(inbound), 16_000, options).await;
        let Ok(call) = call else {
            panic!("the stream did not start");
        };
        let (outbound, _sent) = mpsc::channel(16);
        let (ends, handle) = call.into_transport(outbound);
        let task = crate::pipeline::PipelineTask::new(
            vec![ends.input, ends.output],
            crate::pipeline::PipelineParams::new("test", 16_000),
        );
        let started = tokio::time::Instant::now();
        let ran = tokio::time::timeout(Duration::from_secs(60), task.run()).await;
        assert!(ran.is_ok(), "the session outlived the idle timeout");
        (handle.ended_by(), started.elapsed())
    }

    fn junk() -> WsInbound {
        WsInbound::Text(Utf8Bytes::from_static("hello"))
    }

    /// `message` every `period`, forever.
    fn every(
        period: Duration,
        message: fn() -> WsInbound,
    ) -> impl Stream<Item = WsInbound> + Send + Unpin + 'static {
        Box::pin(futures_util::stream::unfold((), move |()| async move {
            tokio::time::sleep(period).await;
            Some((message(), ()))
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn junk_waiting_at_every_read_cannot_hold_off_the_idle_timeout() {
        // Junk every 10 ms: reading every 40 ms, the reader finds a message
        // waiting each time it wakes; reading each as it comes, always.
        for read_interval in [Duration::from_millis(40), Duration::ZERO] {
            let junk_every_10_ms = every(Duration::from_millis(10), junk);
            let (end, after) = ended_by_junk(junk_every_10_ms, read_interval).await;
            assert_eq!(end, Some(StreamEnd::IdleTimeout), "{read_interval:?}");
            assert!(
                after < Duration::from_secs(3),
                "{read_interval:?}: {after:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn media_too_short_for_a_frame_does_not_keep_the_stream_alive() {
        // One byte of audio every 100 ms: a 20 ms frame would take 16 s.
        fn one_byte() -> WsInbound {
            WsInbound::Text(Utf8Bytes::from_static(
                r#"{"event":"media","streamSid":"MZ1","media":{"track":"inbound","chunk":"1","timestamp":"0","payload":"/w=="}}"#,
            ))
        }
        let (end, after) = ended_by_junk(
            every(Duration::from_millis(100), one_byte),
            Duration::from_millis(40),
        )
        .await;
        assert_eq!(end, Some(StreamEnd::IdleTimeout));
        assert!(after < Duration::from_secs(3), "{after:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn audio_waiting_at_a_slow_read_is_not_a_gap_and_silence_follows_its_end() {
        // 3 s of a loud tone in real time, then nothing (the socket open),
        // read every 600 ms: more than the half second after which silence
        // stands in for missing audio.
        let tone = every(Duration::from_millis(20), loud).take(150);
        let loudness = loudness_heard(tone, Duration::from_millis(600), Duration::ZERO).await;
        let tone = loudness.iter().filter(|&&loud| loud).count();
        let last_loud = loudness.iter().rposition(|&loud| loud).unwrap();
        let first_loud = loudness.iter().position(|&loud| loud).unwrap();
        assert_eq!(
            tone,
            last_loud - first_loud + 1,
            "no silence inside the tone"
        );
        assert!(tone >= 148, "the tone is kept: {tone} frames");
        assert!(
            loudness.len() - last_loud > 50,
            "silence after it until the idle timeout: {}",
            loudness.len() - last_loud
        );
    }

    #[tokio::test(start_paused = true)]
    async fn audio_sent_while_the_session_started_is_heard_not_dropped_as_a_flood() {
        // The 4 s Twilio streamed while the session started (a slow store,
        // say) wait in the socket, all read at once.
        let backlog = futures_util::stream::iter((0..200).map(|_| loud()));
        let loudness =
            loudness_heard(backlog, Duration::from_millis(40), Duration::from_secs(4)).await;
        let loud_frames = loudness.iter().filter(|&&loud| loud).count();
        // All 200, but for the resampler's edge.
        assert!(loud_frames >= 198, "{loud_frames} of 200 frames heard");
    }

    /// A media message of a loud tone (mu-law 0x80: near full scale).
    fn loud() -> WsInbound {
        use base64::Engine as _;
        let payload = base64::engine::general_purpose::STANDARD.encode([0x80_u8; 160]);
        WsInbound::Text(Utf8Bytes::from(format!(
            r#"{{"event":"media","streamSid":"MZ1","media":{{"track":"inbound","payload":"{payload}"}}}}"#
        )))
    }

    /// Runs a call whose stream sends `start`, then `media`, then stays
    /// open; the session starts `wait` after `start` and reads every
    /// `read_interval` until the idle timeout (2 s). Whether each frame
    /// the input pushed was loud.
    async fn loudness_heard(
        media: impl Stream<Item = WsInbound> + Send + Unpin + 'static,
        read_interval: Duration,
        wait: Duration,
    ) -> Vec<bool> {
        use crate::frame::{Direction, FrameBody};
        use crate::testing::RecordingObserver;
        let inbound = futures_util::stream::iter([WsInbound::Text(Utf8Bytes::from_static(START))])
            .chain(media)
            .chain(futures_util::stream::pending());
        let options = CallOptions {
            idle_timeout: Duration::from_secs(2),
            stats: Arc::new(NoStats),
            send_ahead: SendAhead::NONE,
            read_interval,
        };
        let Ok(call) = TwilioCall::accept(Box::pin(inbound), 16_000, options).await else {
            panic!("the stream did not start");
        };
        tokio::time::sleep(wait).await;
        let (outbound, _sent) = mpsc::channel(16);
        let (ends, _handle) = call.into_transport(outbound);
        let recorder = RecordingObserver::new();
        let mut params = crate::pipeline::PipelineParams::new("test", 16_000);
        params.observers.push(recorder.clone());
        let task = crate::pipeline::PipelineTask::new(vec![ends.input, ends.output], params);
        let ran = tokio::time::timeout(Duration::from_secs(60), task.run()).await;
        assert!(ran.is_ok(), "the idle timeout ends it");
        recorder
            .frames_from("transport.input", Direction::Downstream)
            .iter()
            .filter_map(|f| match &f.body {
                FrameBody::InputAudio(audio) => {
                    Some(audio.samples().iter().any(|&s| s.abs() > 1_000))
                }
                _ => None,
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_the_reader_never_catches_up_with_ends_after_twice_the_timeout() {
        // Always more waiting than a read takes: the reader is behind for
        // good, and audio sent after the flood might be on its way, so it
        // waits once more the timeout, not forever.
        let flood = futures_util::stream::repeat_with(junk);
        let (end, after) = ended_by_junk(flood, Duration::from_millis(40)).await;
        assert_eq!(end, Some(StreamEnd::IdleTimeout));
        assert!(after >= Duration::from_secs(4), "{after:?}");
        assert!(after < Duration::from_secs(5), "{after:?}");
    }
}
