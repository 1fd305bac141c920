//! The TTS driver's task: sends text to the provider connection, turns what
//! comes back into frames, and keeps each response's bookkeeping.
//!
//! Every response (an LLM answer, or a `Text` utterance) is a numbered
//! context. For each, the engine pushes `TtsStarted` when its first
//! sentence goes out, then its audio (resampled to the pipeline's rate) and
//! spoken text (placed in that audio) as they come, the time to first byte
//! as a `Ttfb` metric, and, once the provider reports it done, `TtsStopped`
//! followed by the frame that closed the response (`LlmResponseEnd`).
//!
//! # Interruption without a stale frame
//!
//! The engine is never aborted (it owns the provider's socket). Instead
//! every push goes through a gate holding the highest cancelled response
//! number: the engine takes the gate, checks the response is still wanted,
//! and pushes while holding it. The processor's interruption hook raises
//! the number under the same gate before the interruption is forwarded, so
//! a push either completes before the interruption (and is dropped
//! downstream as stale) or sees the new number and is skipped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Mutex, mpsc};

use crate::audio::StreamResampler;
use crate::audio::pcm::{samples_from_le_bytes, samples_to_le_bytes};
use crate::frame::{AudioFrame, Frame, FrameBody, MetricsData, SpokenText};
use crate::pipeline::{ProcessorContext, ProcessorError};
use crate::services::task::report;

use super::wire::{TtsWire, WireEvent};

/// What the processor asks of the engine.
#[derive(Debug)]
pub(crate) enum Command {
    /// Speak a sentence of response `response`.
    Speak { response: u64, text: String },
    /// No more text for `response`; push `then` after its audio.
    Finish { response: u64, then: Option<Frame> },
    /// Responses up to `up_to` were interrupted.
    Cancel { up_to: u64 },
}

/// The highest cancelled response number, shared with the processor.
pub(crate) type Gate = Arc<Mutex<u64>>;

#[derive(Default)]
struct Response {
    started: bool,
    finishing: bool,
    then: Option<Frame>,
    /// Audio pushed so far.
    audio: Duration,
    /// When the first text went out, until the first audio came.
    asked_at: Option<Instant>,
    /// The odd byte of a sample split between two pieces.
    carry: Option<u8>,
    resampler: Option<StreamResampler>,
}

pub(crate) struct Engine {
    wire: Box<dyn TtsWire>,
    ctx: ProcessorContext,
    gate: Gate,
    rate: u32,
    prefix: String,
    responses: BTreeMap<u64, Response>,
}

impl Engine {
    pub(crate) fn new(
        wire: Box<dyn TtsWire>,
        ctx: ProcessorContext,
        gate: Gate,
        rate: u32,
    ) -> Self {
        // Context ids are unique per socket; a per-engine prefix keeps them
        // apart across sessions sharing a provider account.
        let prefix = format!("vp{:08x}", crate::random::random_u32());
        Engine {
            wire,
            ctx,
            gate,
            rate,
            prefix,
            responses: BTreeMap::new(),
        }
    }

    /// Runs until the processor has closed the command channel and every
    /// response has played out.
    pub(crate) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        if let Err(error) = self.wire.warm_up().await {
            tracing::warn!(provider = self.wire.provider(), %error, "TTS connection not ready");
            self.fail(error).await;
        }
        let mut open = true;
        while open || !self.responses.is_empty() {
            tokio::select! {
                biased;
                command = commands.recv(), if open => match command {
                    Some(command) => self.command(command).await,
                    None => open = false,
                },
                event = self.wire.next_event() => self.event(event).await,
            }
        }
        self.wire.close().await;
    }

    fn context(&self, response: u64) -> String {
        format!("{}-{response}", self.prefix)
    }

    fn response_of(&self, context: &str) -> Option<u64> {
        context
            .strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|n| n.parse().ok())
            .filter(|n| self.responses.contains_key(n))
    }

    /// Pushes a frame of `response` unless it was cancelled. See the module
    /// docs for why the gate is held during the push.
    async fn push(&mut self, response: u64, frame: impl Into<Frame>) {
        let cancelled = self.gate.lock().await;
        if response > *cancelled {
            self.ctx.push_downstream(frame).await;
        }
    }

    async fn fail(&mut self, error: crate::services::ServiceError) {
        let provider = self.wire.provider();
        report(error.into_processor_error(provider), &self.ctx).await;
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Speak { response, text } => {
                if response <= *self.gate.lock().await {
                    return;
                }
                let state = self.responses.entry(response).or_default();
                let first = !state.started;
                if first {
                    state.started = true;
                    state.asked_at = Some(Instant::now());
                    if self.wire.sample_rate() != self.rate {
                        match StreamResampler::new(self.wire.sample_rate(), self.rate) {
                            Ok(resampler) => state.resampler = Some(resampler),
                            Err(error) => {
                                report(ProcessorError::recoverable(error), &self.ctx).await;
                            }
                        }
                    }
                    self.push(response, FrameBody::TtsStarted).await;
                }
                let context = self.context(response);
                if let Err(error) = self.wire.send_text(&context, &text).await {
                    self.fail(error).await;
                }
            }
            Command::Finish { response, then } => {
                let Some(state) = self.responses.get_mut(&response) else {
                    // Nothing was spoken: nothing to wait for.
                    if let Some(then) = then {
                        self.push(response, then).await;
                    }
                    return;
                };
                state.finishing = true;
                state.then = then;
                let context = self.context(response);
                if let Err(error) = self.wire.finish(&context).await {
                    self.fail(error).await;
                }
            }
            Command::Cancel { up_to } => {
                let cancelled: Vec<u64> = self.responses.range(..=up_to).map(|(r, _)| *r).collect();
                for response in cancelled {
                    self.responses.remove(&response);
                    let context = self.context(response);
                    self.wire.cancel(&context).await;
                }
            }
        }
    }

    async fn event(&mut self, event: WireEvent) {
        match event {
            WireEvent::Audio { context, pcm } => {
                if let Some(response) = self.response_of(&context) {
                    self.audio(response, pcm).await;
                }
            }
            WireEvent::Text {
                context,
                text,
                start,
                timing,
            } => {
                let Some(response) = self.response_of(&context) else {
                    return;
                };
                let at = self
                    .responses
                    .get(&response)
                    .map_or(Duration::ZERO, |r| r.audio);
                let spoken = SpokenText {
                    text,
                    start: start.unwrap_or(at),
                    timing,
                };
                self.push(response, FrameBody::TtsText(spoken)).await;
            }
            WireEvent::Done { context } => {
                if let Some(response) = self.response_of(&context) {
                    self.done(response).await;
                }
            }
            WireEvent::Failed { context, error } => {
                tracing::warn!(provider = self.wire.provider(), ?context, %error, "synthesis failed");
                self.fail(error).await;
            }
        }
    }

    async fn audio(&mut self, response: u64, pcm: Bytes) {
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
        let ttfb = state.asked_at.take();
        if data.is_empty() {
            state.asked_at = ttfb;
            return;
        }
        let audio = AudioFrame {
            data,
            sample_rate: rate,
            channels: 1,
            pts: Duration::ZERO,
        };
        state.audio += audio.duration();
        if let Some(asked) = ttfb {
            let metric = MetricsData::Ttfb {
                processor: self.ctx.name().to_owned(),
                value_ms: asked.elapsed().as_secs_f64() * 1000.0,
            };
            self.push(response, FrameBody::Metrics(metric)).await;
        }
        self.push(response, FrameBody::OutputAudio(audio)).await;
    }

    async fn done(&mut self, response: u64) {
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
                self.push(response, FrameBody::OutputAudio(audio)).await;
            }
        }
        if state.started {
            self.push(response, FrameBody::TtsStopped).await;
        }
        if let Some(then) = state.then.take() {
            self.push(response, then).await;
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
mod tests {
    use super::*;

    #[test]
    fn pieces_split_mid_sample_are_joined_and_whole_ones_are_not_copied() {
        let mut carry = None;
        let whole = Bytes::from_static(&[1, 2, 3, 4]);
        let out = whole_samples(&mut carry, whole.clone());
        assert_eq!(out, whole);
        assert_eq!(out.as_ptr(), whole.as_ptr(), "no copy");
        assert_eq!(carry, None);

        let out = whole_samples(&mut carry, Bytes::from_static(&[5, 6, 7]));
        assert_eq!(&out[..], [5, 6]);
        assert_eq!(carry, Some(7));
        let out = whole_samples(&mut carry, Bytes::from_static(&[8]));
        assert_eq!(&out[..], [7, 8]);
        assert_eq!(carry, None);
        let out = whole_samples(&mut carry, Bytes::from_static(&[9]));
        assert!(out.is_empty());
        assert_eq!(carry, Some(9));
        let out = whole_samples(&mut carry, Bytes::new());
        assert!(out.is_empty());
        assert_eq!(carry, Some(9), "an empty piece keeps the odd byte");
    }
}
