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
            responses: BTreeMap::new(),
            outputs: VecDeque::new(),
        }
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
        let context = self.context(response);
        self.outputs.push_back(TtsOutput::Speak { context, text });
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
        let context = self.context(response);
        self.outputs.push_back(TtsOutput::Finish { context });
    }

    /// Responses up to `up_to` were interrupted.
    pub(crate) fn handle_cancel(&mut self, up_to: u64, _now: Instant) {
        let cancelled: Vec<u64> = self.responses.range(..=up_to).map(|(r, _)| *r).collect();
        for response in cancelled {
            self.responses.remove(&response);
            let context = self.context(response);
            self.outputs.push_back(TtsOutput::Cancel { context });
        }
    }

    /// Something the wire reported; `provider` names it in errors.
    pub(crate) fn handle_event(&mut self, event: WireEvent, provider: &str, now: Instant) {
        match event {
            WireEvent::Audio { context, pcm } => {
                if let Some(response) = self.response_of(&context) {
                    self.audio(response, pcm, now);
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
                self.push(response, FrameBody::TtsText(spoken));
            }
            WireEvent::Done { context } => {
                if let Some(response) = self.response_of(&context) {
                    self.done(response);
                }
            }
            WireEvent::Failed { context, error } => {
                tracing::warn!(provider, ?context, %error, "synthesis failed");
                let error = error.into_processor_error(provider);
                self.outputs.push_back(TtsOutput::Report(error));
            }
        }
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
        state.audio += audio.duration();
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
mod tests {
    use crate::frame::SpokenTiming;
    use crate::services::ServiceError;

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

    const PREFIX: &str = "vp0000abcd";

    fn outputs(r: &mut TtsResponses) -> Vec<TtsOutput> {
        std::iter::from_fn(|| r.poll_output()).collect()
    }

    /// The kinds of frame pushed, with the response each belongs to.
    fn pushed(outputs: &[TtsOutput]) -> Vec<(u64, &'static str)> {
        outputs
            .iter()
            .filter_map(|o| match o {
                TtsOutput::Push { response, frame } => Some((*response, label(&frame.body))),
                _ => None,
            })
            .collect()
    }

    /// Our own names for the frames a response pushes (the frame's own
    /// names are for logs).
    fn label(body: &FrameBody) -> &'static str {
        match body {
            FrameBody::TtsStarted => "tts_started",
            FrameBody::Metrics(_) => "metrics",
            FrameBody::OutputAudio(_) => "output_audio",
            FrameBody::TtsText(_) => "tts_text",
            FrameBody::TtsStopped => "tts_stopped",
            FrameBody::LlmResponseEnd => "llm_response_end",
            _ => "other",
        }
    }

    fn pcm(ms: u64, rate: u32) -> Bytes {
        Bytes::from(vec![0u8; (ms * u64::from(rate) / 1000 * 2) as usize])
    }

    #[test]
    fn a_response_starts_speaks_times_its_first_byte_and_stops_after_its_audio() {
        let t0 = Instant::now();
        let mut r = TtsResponses::new("tts", 16_000, 16_000, PREFIX.into());
        r.handle_speak(1, "Hello.".into(), t0);
        let first = outputs(&mut r);
        assert_eq!(pushed(&first), [(1, "tts_started")]);
        assert!(matches!(&first[1], TtsOutput::Speak { context, text }
            if context == "vp0000abcd-1" && text == "Hello."));
        r.handle_speak(1, "Bye.".into(), t0);
        assert_eq!(pushed(&outputs(&mut r)), [], "started once");

        let context = || "vp0000abcd-1".to_owned();
        let t1 = t0 + Duration::from_millis(180);
        r.handle_event(
            WireEvent::Audio {
                context: context(),
                pcm: pcm(100, 16_000),
            },
            "p",
            t1,
        );
        r.handle_event(
            WireEvent::Text {
                context: context(),
                text: "Bye.".into(),
                start: None,
                timing: SpokenTiming::Sentence,
            },
            "p",
            t1,
        );
        let got = outputs(&mut r);
        assert_eq!(
            pushed(&got),
            [(1, "metrics"), (1, "output_audio"), (1, "tts_text")]
        );
        assert!(matches!(&got[0], TtsOutput::Push { frame, .. }
            if matches!(&frame.body, FrameBody::Metrics(MetricsData::Ttfb { value_ms, .. }) if (*value_ms - 180.0).abs() < 1e-6)));
        assert!(
            matches!(&got[2], TtsOutput::Push { frame, .. }
            if matches!(&frame.body, FrameBody::TtsText(s) if s.start == Duration::from_millis(100))),
            "placed where the audio stands"
        );

        // Done before the response's text ended: not the end yet.
        r.handle_event(WireEvent::Done { context: context() }, "p", t1);
        assert!(outputs(&mut r).is_empty());
        assert!(r.is_busy());
        r.handle_finish(1, Some(Frame::new(FrameBody::LlmResponseEnd)), t1);
        assert!(
            matches!(&outputs(&mut r)[..], [TtsOutput::Finish { context }] if context == "vp0000abcd-1")
        );
        r.handle_event(WireEvent::Done { context: context() }, "p", t1);
        assert_eq!(
            pushed(&outputs(&mut r)),
            [(1, "tts_stopped"), (1, "llm_response_end")]
        );
        assert!(!r.is_busy());
    }

    #[test]
    fn a_response_with_nothing_spoken_passes_its_closing_frame_at_once() {
        let t0 = Instant::now();
        let mut r = TtsResponses::new("tts", 16_000, 16_000, PREFIX.into());
        r.handle_finish(4, Some(Frame::new(FrameBody::LlmResponseEnd)), t0);
        assert_eq!(pushed(&outputs(&mut r)), [(4, "llm_response_end")]);
    }

    #[test]
    fn cancelled_responses_are_dropped_at_the_provider_and_their_events_ignored() {
        let t0 = Instant::now();
        let mut r = TtsResponses::new("tts", 16_000, 16_000, PREFIX.into());
        r.handle_speak(1, "One.".into(), t0);
        r.handle_speak(2, "Two.".into(), t0);
        r.handle_speak(3, "Three.".into(), t0);
        outputs(&mut r);
        r.handle_cancel(2, t0);
        let cancelled: Vec<String> = outputs(&mut r)
            .into_iter()
            .filter_map(|o| match o {
                TtsOutput::Cancel { context } => Some(context),
                _ => None,
            })
            .collect();
        assert_eq!(cancelled, ["vp0000abcd-1", "vp0000abcd-2"]);
        for context in ["vp0000abcd-1", "someone-else-3", "vp0000abcd-x"] {
            let audio = WireEvent::Audio {
                context: context.into(),
                pcm: pcm(20, 16_000),
            };
            r.handle_event(audio, "p", t0);
        }
        assert!(outputs(&mut r).is_empty(), "not ours, or no longer wanted");
        r.handle_event(
            WireEvent::Audio {
                context: "vp0000abcd-3".into(),
                pcm: pcm(20, 16_000),
            },
            "p",
            t0,
        );
        assert_eq!(
            pushed(&outputs(&mut r)),
            [(3, "metrics"), (3, "output_audio")]
        );
    }

    #[test]
    fn audio_is_resampled_and_its_tail_flushed_at_the_end() {
        let t0 = Instant::now();
        let mut r = TtsResponses::new("tts", 24_000, 16_000, PREFIX.into());
        r.handle_speak(1, "Hi.".into(), t0);
        r.handle_finish(1, None, t0);
        outputs(&mut r);
        let context = || "vp0000abcd-1".to_owned();
        r.handle_event(
            WireEvent::Audio {
                context: context(),
                pcm: pcm(100, 24_000),
            },
            "p",
            t0,
        );
        r.handle_event(WireEvent::Done { context: context() }, "p", t0);
        let mut frames = Vec::new();
        for output in outputs(&mut r) {
            if let TtsOutput::Push { frame, .. } = output
                && let FrameBody::OutputAudio(audio) = frame.body
            {
                assert_eq!(audio.sample_rate, 16_000);
                frames.push(audio.data.len() / 2);
            }
        }
        assert_eq!(frames.len(), 2, "the audio, then the resampler's tail");
        let samples: usize = frames.iter().sum();
        assert!(
            (1_600..1_800).contains(&samples),
            "0.1 s at 16 kHz: {samples}"
        );
    }

    #[test]
    fn failures_are_reported_naming_the_provider() {
        let t0 = Instant::now();
        let mut r = TtsResponses::new("tts", 16_000, 16_000, PREFIX.into());
        let failed = WireEvent::Failed {
            context: None,
            error: ServiceError::Remote("bad voice".into()),
        };
        r.handle_event(failed, "cartesia", t0);
        assert!(
            matches!(&outputs(&mut r)[..], [TtsOutput::Report(e)] if e.to_string().contains("bad voice"))
        );
    }
}
