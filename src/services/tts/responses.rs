//! [`TtsResponses`]: the TTS driver's per-response bookkeeping, as a
//! sans-IO state machine: the engine's commands and the wire's events in
//! (with the instant they happened), frames to push and requests for the
//! wire out. No socket, no clock, no pipeline.
//!
//! Every response (an LLM answer, or a `Text` utterance) is a numbered
//! context on the wire. For each, `TtsStarted` goes out when its first
//! sentence does, then its audio (resampled to the pipeline's rate, a
//! sample split between two pieces joined again) and spoken text (placed
//! in that audio) as they come, the time to first byte as a `Ttfb` metric,
//! and, once the wire reports it done, `TtsStopped` followed by the frame
//! that closed the response (`LlmResponseEnd`).
//!
//! # Segments: a response's text cut by tool calls
//!
//! With a provider whose contexts expire when their audio pauses
//! (Cartesia's, a second after their last audio: text sent on one after
//! that is not spoken), when the LLM stops to call a tool, the text it
//! wrote so far is finished on the wire ([`TtsResponses::handle_break`])
//! and what it writes after the tool goes to a new context of the same
//! response (`PREFIX-N.1`, `.2`, ...), since a tool can take seconds.
//! Other providers keep one context per response. The response stays one
//! (one `TtsStarted`, one `TtsStopped`), so the rest of the pipeline sees
//! what it saw before. A segment's events wait until the segments before
//! it are done, so audio never interleaves, and its word times count from
//! where the response's audio stood when it began.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::audio::StreamResampler;
use crate::audio::pcm::{samples_from_le_bytes, samples_to_le_bytes};
use crate::frame::{AudioFrame, Frame, FrameBody, MetricsData, SpokenText};
use crate::pipeline::ProcessorError;

use super::wire::WireEvent;

/// What the engine is asked to do.
#[derive(Debug)]
pub(crate) enum TtsOutput {
    /// Push `frame` downstream, unless `response` was cancelled meanwhile.
    Push { response: u64, frame: Frame },
    /// Send a sentence of `context` to the wire.
    Speak { context: String, text: String },
    /// No more text for `context`.
    Finish { context: String },
    /// Drop `context` at the provider.
    Cancel { context: String },
    /// Report this error upstream.
    Report(ProcessorError),
}

#[derive(Default)]
struct Response {
    started: bool,
    finishing: bool,
    /// The segment text goes to now (see the module docs).
    segment: u32,
    /// Whether text went to the current segment (its context exists).
    segment_spoken: bool,
    /// Segments finished at a break, not yet done, oldest first; events
    /// of later segments wait in `held` until these are done.
    draining: VecDeque<u32>,
    held: VecDeque<WireEvent>,
    /// Where the live segment's audio began in the response's.
    segment_base: Duration,
    then: Option<Frame>,
    /// Audio pushed so far.
    audio: Duration,
    /// When the first text went out, until the first audio came.
    asked_at: Option<Instant>,
    /// The odd byte of a sample split between two pieces.
    carry: Option<u8>,
    resampler: Option<StreamResampler>,
}

/// The responses in flight. See the module docs.
pub(crate) struct TtsResponses {
    /// The processor's name, for the `Ttfb` metric.
    processor: String,
    /// The rate of the wire's audio, and of the pipeline's.
    wire_rate: u32,
    rate: u32,
    /// Makes this engine's context ids unique on a shared provider account.
    prefix: String,
    /// Whether a tool call starts a new context (see Segments).
    segments: bool,
    responses: BTreeMap<u64, Response>,
    outputs: VecDeque<TtsOutput>,
}

impl TtsResponses {
    /// No response yet; audio comes at `wire_rate` and goes on at `rate`;
    /// context ids start with `prefix`.
    pub(crate) fn new(processor: &str, wire_rate: u32, rate: u32, prefix: String) -> Self {
        TtsResponses {
            processor: processor.to_owned(),
            wire_rate,
            rate,
            prefix,
            segments: false,
            responses: BTreeMap::new(),
            outputs: VecDeque::new(),
        }
    }

    /// With `segments`, a tool call finishes the response's context and the
    /// text after it goes to a new one (see Segments).
    pub(crate) fn with_segments(mut self, segments: bool) -> Self {
        self.segments = segments;
        self
    }

    /// True while a response waits for its audio.
    pub(crate) fn is_busy(&self) -> bool {
        !self.responses.is_empty()
    }

    /// The next thing to do, in order.
    pub(crate) fn poll_output(&mut self) -> Option<TtsOutput> {
        self.outputs.pop_front()
    }

    /// A sentence of `response` to speak (one not cancelled).
    pub(crate) fn handle_speak(&mut self, response: u64, text: String, now: Instant) {
        let state = self.responses.entry(response).or_default();
        state.segment_spoken = true;
        let segment = state.segment;
        if !state.started {
            state.started = true;
            state.asked_at = Some(now);
            if self.wire_rate != self.rate {
                match StreamResampler::new(self.wire_rate, self.rate) {
                    Ok(resampler) => state.resampler = Some(resampler),
                    Err(error) => self
                        .outputs
                        .push_back(TtsOutput::Report(ProcessorError::recoverable(error))),
                }
            }
            self.push(response, FrameBody::TtsStarted);
        }
        let context = self.context(response, segment);
        self.outputs.push_back(TtsOutput::Speak { context, text });
    }

    /// `response`'s text stops for a tool call: what was sent so far is
    /// finished on the wire, and later text goes to a new segment.
    pub(crate) fn handle_break(&mut self, response: u64, _now: Instant) {
        if !self.segments {
            return;
        }
        let Some(state) = self.responses.get_mut(&response) else {
            return;
        };
        if !state.segment_spoken || state.finishing {
            return;
        }
        let segment = state.segment;
        state.draining.push_back(segment);
        state.segment += 1;
        state.segment_spoken = false;
        let context = self.context(response, segment);
        self.outputs.push_back(TtsOutput::Finish { context });
    }

    /// No more text for `response`; `then` goes out after its audio.
    pub(crate) fn handle_finish(&mut self, response: u64, then: Option<Frame>, _now: Instant) {
        let Some(state) = self.responses.get_mut(&response) else {
            // Nothing was spoken: nothing to wait for.
            if let Some(then) = then {
                self.push(response, then);
            }
            return;
        };
        state.finishing = true;
        state.then = then;
        if !state.segment_spoken {
            // Nothing was said since the last break: the response ends
            // when its earlier segments are done.
            if state.draining.is_empty() {
                self.done(response);
            }
            return;
        }
        let segment = state.segment;
        let context = self.context(response, segment);
        self.outputs.push_back(TtsOutput::Finish { context });
    }

    /// Responses up to `up_to` were interrupted.
    pub(crate) fn handle_cancel(&mut self, up_to: u64, _now: Instant) {
        let cancelled: Vec<u64> = self.responses.range(..=up_to).map(|(r, _)| *r).collect();
        for response in cancelled {
            let Some(state) = self.responses.remove(&response) else {
                continue;
            };
            let current = state.segment_spoken.then_some(state.segment);
            for segment in state.draining.into_iter().chain(current) {
                let context = self.context(response, segment);
                self.outputs.push_back(TtsOutput::Cancel { context });
            }
        }
    }

    /// Something the wire reported; `provider` names it in errors.
    pub(crate) fn handle_event(&mut self, event: WireEvent, provider: &str, now: Instant) {
        let context = match &event {
            WireEvent::Audio { context, .. }
            | WireEvent::Text { context, .. }
            | WireEvent::Done { context } => Some(context.as_str()),
            WireEvent::Failed { .. } => None,
        };
        // The response a context names, read once: `None` for a context
        // not in flight (cancelled, finished, someone else's).
        let response = match context.map(|c| self.segment_of(c)) {
            Some(None) => return,
            Some(Some((response, segment))) => {
                let Some(state) = self.responses.get_mut(&response) else {
                    return;
                };
                let live = state.draining.front().copied().unwrap_or(state.segment);
                if segment > live {
                    state.held.push_back(event);
                    return;
                }
                if segment < live {
                    return; // a segment done already
                }
                response
            }
            None => 0, // `Failed`, which names no response it needs
        };
        match event {
            WireEvent::Audio { pcm, .. } => self.audio(response, pcm, now),
            WireEvent::Text {
                text,
                start,
                timing,
                ..
            } => {
                let (at, base) = self
                    .responses
                    .get(&response)
                    .map_or((Duration::ZERO, Duration::ZERO), |r| {
                        (r.audio, r.segment_base)
                    });
                let spoken = SpokenText {
                    text,
                    // Saturating: the time comes from the provider, and a
                    // far-off one (Cartesia's 1e300) is `Duration::MAX`.
                    start: start.map_or(at, |start| base.saturating_add(start)),
                    timing,
                };
                self.push(response, FrameBody::TtsText(spoken));
            }
            WireEvent::Done { .. } => self.segment_done(response, provider, now),
            WireEvent::Failed { context, error } => {
                tracing::warn!(provider, ?context, %error, "synthesis failed");
                let error = error.into_processor_error(provider);
                self.outputs.push_back(TtsOutput::Report(error));
            }
        }
    }

    /// The context of `response`'s `segment`: `PREFIX-N`, then
    /// `PREFIX-N.S` after a break.
    fn context(&self, response: u64, segment: u32) -> String {
        match segment {
            0 => format!("{}-{response}", self.prefix),
            _ => format!("{}-{response}.{segment}", self.prefix),
        }
    }

    /// The response and segment `context` names, for a response in flight.
    fn segment_of(&self, context: &str) -> Option<(u64, u32)> {
        let rest = context
            .strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix('-'))?;
        let (response, segment) = match rest.split_once('.') {
            Some((response, segment)) => (response.parse().ok()?, segment.parse().ok()?),
            None => (rest.parse().ok()?, 0),
        };
        self.responses
            .contains_key(&response)
            .then_some((response, segment))
    }

    /// The live segment of `response` is done: the next one's held events
    /// go on, or, with none left, the response ends if its text has.
    fn segment_done(&mut self, response: u64, provider: &str, now: Instant) {
        let Some(state) = self.responses.get_mut(&response) else {
            return;
        };
        if state.draining.pop_front().is_none() {
            if state.finishing {
                self.done(response);
            } else {
                // The provider lost the context (a socket gone): its text
                // goes on in a context opened again, whose times count
                // from here.
                state.segment_base = state.audio;
            }
            return;
        }
        state.segment_base = state.audio;
        let held = std::mem::take(&mut state.held);
        let nothing_left = state.draining.is_empty() && !state.segment_spoken;
        if nothing_left && state.finishing {
            self.done(response);
            return;
        }
        // Replayed in order; a segment still waiting holds its own again.
        for event in held {
            self.handle_event(event, provider, now);
        }
    }

    fn push(&mut self, response: u64, frame: impl Into<Frame>) {
        let frame = frame.into();
        self.outputs.push_back(TtsOutput::Push { response, frame });
    }

    fn audio(&mut self, response: u64, pcm: Bytes, now: Instant) {
        let rate = self.rate;
        let Some(state) = self.responses.get_mut(&response) else {
            return;
        };
        let pcm = whole_samples(&mut state.carry, pcm);
        let data = match &mut state.resampler {
            Some(resampler) => {
                let samples = samples_from_le_bytes(&pcm);
                let mut out = Vec::with_capacity(samples.len() * 2);
                resampler.process(&samples, &mut out);
                samples_to_le_bytes(&out)
            }
            None => pcm,
        };
        if data.is_empty() {
            return;
        }
        let ttfb = state.asked_at.take();
        let audio = AudioFrame {
            data,
            sample_rate: rate,
            channels: 1,
            pts: Duration::ZERO,
        };
        state.audio = state.audio.saturating_add(audio.duration());
        if let Some(asked) = ttfb {
            let metric = MetricsData::Ttfb {
                processor: self.processor.clone(),
                value_ms: now.saturating_duration_since(asked).as_secs_f64() * 1000.0,
            };
            self.push(response, FrameBody::Metrics(metric));
        }
        self.push(response, FrameBody::OutputAudio(audio));
    }

    fn done(&mut self, response: u64) {
        let finishing = self.responses.get(&response).is_some_and(|r| r.finishing);
        if !finishing {
            // The provider lost the context before the response ended; the
            // response ends when its text does.
            return;
        }
        let Some(mut state) = self.responses.remove(&response) else {
            return;
        };
        if let Some(mut resampler) = state.resampler.take().filter(|_| !state.audio.is_zero()) {
            let mut tail = Vec::new();
            resampler.flush(&mut tail);
            if !tail.is_empty() {
                let audio = AudioFrame::from_samples(&tail, self.rate, 1, Duration::ZERO);
                self.push(response, FrameBody::OutputAudio(audio));
            }
        }
        if state.started {
            self.push(response, FrameBody::TtsStopped);
        }
        if let Some(then) = state.then.take() {
            self.push(response, then);
        }
    }
}

/// The whole 16-bit samples of `pcm` after the odd byte `carry` left by the
/// previous piece, keeping a new odd byte in `carry`. A piece that splits
/// no sample, the usual case, is passed on without a copy.
fn whole_samples(carry: &mut Option<u8>, mut pcm: Bytes) -> Bytes {
    if let Some(first) = carry.take() {
        let mut joined = Vec::with_capacity(pcm.len() + 1);
        joined.push(first);
        joined.extend_from_slice(&pcm);
        pcm = Bytes::from(joined);
    }
    if pcm.len() % 2 == 1 {
        *carry = pcm.last().copied();
        pcm.truncate(pcm.len() - 1);
    }
    pcm
}

#[cfg(test)]
mod tests;
