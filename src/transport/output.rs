//! The output end of every transport: schedules bot audio, releases it in
//! real time (or on the audio clock), keeps the bot's speaking state, and
//! cuts playback on an interruption. What "leaving" means is the
//! [`AudioSink`]'s business: a WAV file, a Twilio socket, a WebRTC track.
//!
//! Speaking state is pushed both ways as one frame each
//! (`BotStartedSpeaking`, `BotStoppedSpeaking`) when audio actually leaves,
//! not when it is queued. A sink whose far end buffers audio and can confirm
//! playback (Twilio echoes a `mark` once the audio before it has played)
//! holds `BotStoppedSpeaking` back until the listener has heard the end of
//! the utterance ([`AudioSink::still_playing`]); if the next utterance starts
//! first, the bot simply goes on speaking. On an interruption the output
//! pushes `BotInterrupted` (how much of the utterance was heard, how much was
//! cut) both ways, after the sink has been told to drop what it buffered.
//!
//! A [`PlaybackTap`] the session installed (a recorder) is told of each
//! frame as it leaves and of the time of each cut: what the caller heard.
//!
//! A TTS that times words (`TtsText` with word timing) has each word
//! reported (`BotWordHeard`, downstream) when its audio plays: placed in the
//! playout by [`HeardWords`], reported by the same ticker that releases the
//! audio (no task or timer of its own), never if an interruption cut it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::AbortHandle;
use tokio::sync::Notify;
use tracing::Instrument as _;

use crate::frame::FrameResampler;
use crate::frame::{AudioFrame, Direction, Frame, FrameBody, SpokenTiming, StartFrame};
use crate::pipeline::{Processor, ProcessorContext, ProcessorError};

use super::heard_words::{self, HeardWords};
use super::playback_tap::PlaybackTap;
use super::playout::{Playout, PlayoutEvent, SendAhead};
use super::wake_grid;

/// How often the end of a session checks whether the far end has confirmed
/// playback of the last utterance.
const CONFIRMATION_POLL: Duration = Duration::from_millis(20);

/// Where bot audio goes when it leaves.
pub trait AudioSink: Send + 'static {
    /// `audio` leaves now; `audio.pts` is its session time.
    fn write(&mut self, audio: &AudioFrame) -> Result<(), ProcessorError>;

    /// The bot was interrupted: drop whatever the far end still buffers.
    fn clear(&mut self) {}

    /// The bot's utterance has left: all of its audio has been written and,
    /// by the output's clock, it finishes playing at session time `end`. A
    /// sink sends here what it held back (the part of a message not yet
    /// full, a resampler's delay), and one that can have the far end
    /// confirm playback asks for it. Where audio is sent ahead, this comes
    /// as soon as the last audio of an utterance its producer marked
    /// complete (`TtsStopped`) has left, so the tail plays on from it;
    /// otherwise when the bot stops, once the audio has played.
    fn utterance_sent(&mut self, _end: Duration) {}

    /// Whether the far end is still playing audio that has left, at session
    /// time `now`. While it is, the output holds `BotStoppedSpeaking` back.
    /// It must turn false eventually: a sink stops waiting for a
    /// confirmation that does not come.
    fn still_playing(&mut self, _now: Duration) -> bool {
        false
    }

    /// The session is over at session time `end`: flush and close.
    fn finish(&mut self, _end: Duration) -> Result<(), ProcessorError> {
        Ok(())
    }
}

/// What moves the output forward in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// Inbound audio reaching the output end of the chain: a file run on
    /// the audio clock, fast or in real time.
    InboundAudio {
        /// After the input ends, release the rest in real time (`true`) or
        /// at once (`false`).
        realtime: bool,
    },
    /// Live transports: audio is released when it is due on the session
    /// clock. The output sleeps while it has nothing to release and wakes
    /// when audio is scheduled, so a silent bot costs no wake-ups.
    Timer {
        /// How often the output looks again while the end of an utterance
        /// is pending (a pause that may be followed by more audio, a
        /// playback confirmation), usually 20 ms.
        period: Duration,
        /// How far ahead of its time audio may leave while the far end is
        /// playing.
        send_ahead: SendAhead,
    },
}

struct State<S> {
    playout: Playout,
    sink: S,
    /// The playout has stopped but the far end is still playing: the bot
    /// still speaks for the listener.
    heard_until_confirmed: bool,
    /// Told what left and what was cut.
    tap: Option<PlaybackTap>,
    /// The timed words of the audio scheduled, until they are heard.
    heard: HeardWords,
}

/// The output processor of a transport, generic over where audio goes.
pub struct OutputTransport<S: AudioSink> {
    state: Arc<Mutex<State<S>>>,
    /// Brings audio at another rate (a TTS at 24 kHz) to the pipeline's.
    convert: Option<FrameResampler>,
    pacing: Pacing,
    ticker: Option<AbortHandle>,
    /// Wakes the ticker when audio is scheduled.
    scheduled: Arc<Notify>,
    /// The last (wall, session) time pair seen, to pace the end in real time.
    last_tick: Option<(tokio::time::Instant, Duration)>,
}

impl<S: AudioSink> OutputTransport<S> {
    /// An output writing to `sink`, paced by `pacing`.
    pub fn new(sink: S, pacing: Pacing) -> Self {
        OutputTransport {
            state: Arc::new(Mutex::new(State {
                playout: match pacing {
                    Pacing::Timer { send_ahead, .. } => Playout::with_send_ahead(send_ahead),
                    Pacing::InboundAudio { .. } => Playout::new(),
                },
                sink,
                heard_until_confirmed: false,
                tap: None,
                heard: HeardWords::new(),
            })),
            pacing,
            convert: None,
            ticker: None,
            scheduled: Arc::new(Notify::new()),
            last_tick: None,
        }
    }

    /// Caller audio passing by: when a top-up of the far end's playback
    /// is due within one refill and audio may already leave, the ticker is
    /// woken now, in the wake-up the caller's audio already cost, rather
    /// than at a timer of its own (a call's socket reads and its top-ups
    /// then share one wake-up in two). Only the ticker releases audio, so
    /// speaking state keeps one order; it sends what may leave now, within
    /// the send-ahead bound, which is only ever earlier.
    fn top_up_with_input(&self, send_ahead: SendAhead, now: Duration) {
        let due_soon = {
            let state = lock(&self.state);
            !state.heard_until_confirmed
                && state.playout.releasable(now)
                && state
                    .playout
                    .next_due()
                    .is_some_and(|due| due <= now + send_ahead.refill())
        };
        if due_soon {
            self.scheduled.notify_one();
        }
    }

    /// A word of the response whose audio is coming, `start` into it. One
    /// placed after its audio was scheduled may be due before the ticker's
    /// next wake-up: it is woken to plan again.
    fn place_word(&self, word: String, start: Duration) {
        let wake = {
            let mut state = lock(&self.state);
            let at = state.heard.word(word, start);
            at.is_some_and(|at| {
                state
                    .playout
                    .next_deadline()
                    .is_none_or(|deadline| at + heard_words::LATENESS < deadline)
            })
        };
        if wake && matches!(self.pacing, Pacing::Timer { .. }) {
            self.scheduled.notify_one();
        }
    }

    fn stop_ticker(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
    }
}

fn lock<S>(state: &Mutex<State<S>>) -> MutexGuard<'_, State<S>> {
    // The state is consistent between calls: a panic mid-call leaves at
    // worst a frame unwritten.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Releases what is due at `now`; pushes speaking state after the lock is
/// released.
async fn tick<S: AudioSink>(
    state: &Mutex<State<S>>,
    now: Duration,
    ctx: &ProcessorContext,
) -> Result<(), ProcessorError> {
    let mut signals = Vec::new();
    let mut failed = None;
    {
        let mut guard = lock(state);
        let state = &mut *guard;
        while let Some(event) = state.playout.poll(now) {
            match event {
                PlayoutEvent::Started(_) => {
                    // Still heard from the last utterance: one turn goes on.
                    if !std::mem::take(&mut state.heard_until_confirmed) {
                        signals.push(FrameBody::BotStartedSpeaking);
                    }
                }
                PlayoutEvent::Sent(end) => state.sink.utterance_sent(end),
                PlayoutEvent::Stopped(_) => {
                    // The utterance's words were heard before its end.
                    words_heard(&mut state.heard, now, &mut signals);
                    if state.sink.still_playing(now) {
                        state.heard_until_confirmed = true;
                    } else {
                        signals.push(FrameBody::BotStoppedSpeaking);
                    }
                }
                PlayoutEvent::Audio(audio) => {
                    if let Err(err) = state.sink.write(&audio) {
                        failed = Some(err);
                        break;
                    }
                    if let Some(tap) = &state.tap {
                        tap.played(&audio, now);
                    }
                }
            }
        }
        words_heard(&mut state.heard, now, &mut signals);
        if state.heard_until_confirmed && !state.sink.still_playing(now) {
            state.heard_until_confirmed = false;
            signals.push(FrameBody::BotStoppedSpeaking);
        }
    }
    for signal in signals {
        match signal {
            // For the client (events, RTVI); nothing upstream needs it.
            FrameBody::BotWordHeard { .. } => ctx.push(signal, Direction::Downstream).await,
            _ => ctx.push_both_ways(signal).await,
        }
    }
    failed.map_or(Ok(()), Err)
}

/// The words heard by session time `now`, as frames to push.
fn words_heard(heard: &mut HeardWords, now: Duration, signals: &mut Vec<FrameBody>) {
    while let Some(text) = heard.poll(now) {
        signals.push(FrameBody::BotWordHeard { text });
    }
}

/// The earlier of two (due, latest) pairs of wake-up times, by each bound.
fn earliest(
    a: Option<(Duration, Duration)>,
    b: Option<(Duration, Duration)>,
) -> Option<(Duration, Duration)> {
    match (a, b) {
        (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.min(b.1))),
        (a, b) => a.or(b),
    }
}

#[async_trait]
impl<S: AudioSink> Processor for OutputTransport<S> {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        match &frame.body {
            FrameBody::OutputAudio(audio) if direction == Direction::Downstream => {
                let audio = match &mut self.convert {
                    Some(convert) => convert.convert(audio)?,
                    None => audio.clone(),
                };
                {
                    let mut state = lock(&self.state);
                    let now = ctx.now();
                    // Only a response whose words are placed costs more.
                    if state.heard.follows_audio() {
                        let duration = audio.duration();
                        let start = state.playout.schedule(audio, now);
                        state.heard.audio_scheduled(start, duration);
                    } else {
                        state.playout.schedule(audio, now);
                    }
                }
                match self.pacing {
                    Pacing::InboundAudio { .. } => tick(&self.state, ctx.now(), ctx).await?,
                    Pacing::Timer { .. } => self.scheduled.notify_one(),
                }
                return Ok(());
            }
            FrameBody::TtsStarted if direction == Direction::Downstream => {
                lock(&self.state).heard.response_started();
            }
            FrameBody::TtsText(spoken)
                if direction == Direction::Downstream && spoken.timing == SpokenTiming::Word =>
            {
                self.place_word(spoken.text.clone(), spoken.start);
            }
            FrameBody::TtsStopped => {
                let mut state = lock(&self.state);
                state.heard.response_ended();
                state.playout.mark_utterance_complete();
                drop(state);
                if let Pacing::Timer { send_ahead, .. } = self.pacing
                    && !send_ahead.most.is_zero()
                {
                    // Its audio may all have left already: the ticker
                    // reports the end now, with the tail the sink holds.
                    self.scheduled.notify_one();
                }
            }
            FrameBody::InputAudio(_) if matches!(self.pacing, Pacing::InboundAudio { .. }) => {
                let now = ctx.now();
                self.last_tick = Some((tokio::time::Instant::now(), now));
                tick(&self.state, now, ctx).await?;
            }
            FrameBody::InputAudio(_) if direction == Direction::Downstream => {
                if let Pacing::Timer { send_ahead, .. } = self.pacing {
                    self.top_up_with_input(send_ahead, ctx.now());
                }
            }
            _ => {}
        }
        ctx.push(frame, direction).await;
        Ok(())
    }

    async fn on_start(
        &mut self,
        start: &StartFrame,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        self.convert = Some(FrameResampler::new(start.sample_rate));
        lock(&self.state).tap = PlaybackTap::find(ctx.resources());
        if let Pacing::Timer { period, send_ahead } = self.pacing {
            let refill = send_ahead.refill();
            let state = Arc::clone(&self.state);
            let scheduled = Arc::clone(&self.scheduled);
            let ticker_ctx = ctx.clone();
            let ticker = async move {
                let ctx = ticker_ctx;
                loop {
                    // Read together: the wall instant of `now`, so time a
                    // push below waits does not move the next wake-up.
                    let (now, wall) = (ctx.now(), tokio::time::Instant::now());
                    if let Err(err) = tick(&state, now, &ctx).await {
                        ctx.push_upstream(FrameBody::Error(err.to_frame(ctx.name())))
                            .await;
                        return;
                    }
                    let next = {
                        let state = lock(&state);
                        let audio = if state.heard_until_confirmed {
                            Some((now + period, now + period))
                        } else {
                            state.playout.next_due().zip(state.playout.next_deadline())
                        };
                        let word = state
                            .heard
                            .next_due()
                            .map(|at| (at, at + heard_words::LATENESS));
                        earliest(audio, word)
                    };
                    // Audio scheduled meanwhile has left a permit: no
                    // wake-up is lost between the check and the wait.
                    let woken = scheduled.notified();
                    match next {
                        None => woken.await,
                        Some((due, latest)) => {
                            // Due already but nothing came out: a stop in
                            // its hangover. Look again a period later.
                            let wait = due
                                .checked_sub(now)
                                .filter(|w| !w.is_zero())
                                .unwrap_or(period);
                            // A top-up waits one refill more, for caller
                            // audio to bring it (`top_up_with_input`), and
                            // then for the grid, never past the audio's time.
                            let latest = wall + latest.saturating_sub(now).max(wait);
                            let wake =
                                wake_grid::later_within((wall + wait + refill).min(latest), latest);
                            let _timed_out = tokio::time::timeout_at(wake, woken).await;
                        }
                    }
                }
            };
            self.ticker = Some(ctx.create_task(ticker.in_current_span()));
        }
        Ok(())
    }

    async fn on_interruption(&mut self, ctx: &ProcessorContext) {
        let now = ctx.now();
        let (cut, still_heard) = {
            let mut state = lock(&self.state);
            let cut = state.playout.interrupt(now);
            state.heard.interrupt();
            let still_heard = std::mem::take(&mut state.heard_until_confirmed);
            state.sink.clear();
            if let Some(tap) = &state.tap {
                tap.cut(now);
            }
            (cut, still_heard)
        };
        tracing::debug!(played = ?cut.played, cut = ?cut.cut, "playback interrupted");
        ctx.push_both_ways(FrameBody::BotInterrupted {
            played: cut.played,
            cut: cut.cut,
        })
        .await;
        if cut.was_speaking || still_heard {
            ctx.push_both_ways(FrameBody::BotStoppedSpeaking).await;
        }
    }

    async fn on_end(&mut self, ctx: &ProcessorContext) -> Result<(), ProcessorError> {
        self.stop_ticker();
        lock(&self.state).playout.mark_utterance_complete();
        // What has already left ends now (the ticker that would have said
        // so is stopped), not once it has played.
        tick(&self.state, ctx.now(), ctx).await?;
        let realtime = match self.pacing {
            Pacing::InboundAudio { realtime } => realtime,
            Pacing::Timer { .. } => true,
        };
        // Play out what is left, then close the sink.
        loop {
            let Some(due) = lock(&self.state).playout.next_due() else {
                break;
            };
            let now = ctx.now();
            if due > now {
                if realtime {
                    let (wall, session) = self
                        .last_tick
                        .unwrap_or_else(|| (tokio::time::Instant::now(), now));
                    tokio::time::sleep_until(wall + (due - session)).await;
                }
                ctx.clock().advance_to(due);
            }
            tick(&self.state, ctx.now().max(due), ctx).await?;
        }
        // Wait for the far end to confirm the last utterance (bounded by
        // the sink), so speaking state ends when the listener heard it.
        while lock(&self.state).heard_until_confirmed {
            tokio::time::sleep(CONFIRMATION_POLL).await;
            tick(&self.state, ctx.now(), ctx).await?;
        }
        let end = ctx.now();
        lock(&self.state).sink.finish(end)
    }

    async fn on_cancel(&mut self, ctx: &ProcessorContext) {
        self.stop_ticker();
        let end = ctx.now();
        if let Err(err) = lock(&self.state).sink.finish(end) {
            tracing::warn!(error = %err, "output could not be closed cleanly");
        }
    }
}
