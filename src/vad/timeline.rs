//! [`ModelInput`]: inbound audio frames as a stream of samples at the
//! model's rate, and the way back from a position in that stream to
//! session time.
//!
//! Frames may come at any rate and channel count; they are mixed down to
//! mono and, at another rate than the model's, resampled (the resampler
//! delays its output, which the mapping accounts for). A change of input
//! rate starts a fresh resampler.
//!
//! Input known to carry nothing above the model's band
//! ([`ModelInput::band_limited`]: a phone call the transport upsampled, as
//! the VAD's narrowband detector found) at a whole multiple of the model's
//! rate is decimated instead: every n-th sample, no filter and no delay.
//! Nothing above the model's Nyquist frequency means nothing to alias, and
//! for audio the transport's half-band filter doubled, the samples taken are
//! the call's own (that filter copies each input sample to every other
//! output; a frame holds an even number of samples, so a stream's even
//! positions are the copies). A low-pass filter there would only add work
//! and its own ripple. The knowledge holds for the rate it was found at
//! only: input at any other rate is filtered as usual.
//!
//! Session time is taken from the frames' own `pts`, never from a clock:
//! the position of each frame's first sample is anchored to its `pts`, and
//! any position maps to `pts + (position - anchor) / rate` of the latest
//! frame, so a gap in the input shifts later times but never accumulates
//! error.

use std::time::Duration;

use crate::audio::{AudioError, StreamResampler, pcm};
use crate::frame::AudioFrame;

/// How a segment's input reaches the model's rate.
enum Conversion {
    /// Already at the model's rate.
    None,
    /// Filtered and resampled.
    Resample(StreamResampler),
    /// Band-limited input at `step` times the model's rate: every
    /// `step`-th sample, counting from the segment's first.
    Decimate { step: usize, skip: usize },
}

struct Segment {
    input_rate: u32,
    conversion: Conversion,
    /// Model-rate position where the segment began.
    model_start: u64,
    /// Input samples (per channel) of the segment so far.
    input_samples: u64,
}

/// Converts inbound frames for a model at one rate. See the module docs.
pub struct ModelInput {
    model_rate: u32,
    /// Input at this rate carries nothing above half the model's rate.
    band_limited_rate: Option<u32>,
    segment: Option<Segment>,
    /// Model-rate samples produced so far.
    produced: u64,
    /// The latest frame's `pts`, and the model-rate position (possibly
    /// fractional, hence nanosample units) its first sample maps to.
    anchor: (Duration, i128),
    samples: Vec<i16>,
    converted: Vec<i16>,
}

impl std::fmt::Debug for ModelInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelInput")
            .field("model_rate", &self.model_rate)
            .field("band_limited_rate", &self.band_limited_rate)
            .field("produced", &self.produced)
            .finish_non_exhaustive()
    }
}

const NANOS: i128 = 1_000_000_000;

impl ModelInput {
    /// Input for a model at `model_rate`.
    pub fn new(model_rate: u32) -> Self {
        ModelInput {
            model_rate,
            band_limited_rate: None,
            segment: None,
            produced: 0,
            anchor: (Duration::ZERO, 0),
            samples: Vec::new(),
            converted: Vec::new(),
        }
    }

    /// Input for a model at `model_rate` whose audio at `input_rate`
    /// carries nothing above half the model's rate: see the module docs.
    pub fn band_limited(model_rate: u32, input_rate: u32) -> Self {
        ModelInput {
            band_limited_rate: Some(input_rate),
            ..ModelInput::new(model_rate)
        }
    }

    /// The frame's audio at the model's rate, mono. The result may be
    /// shorter or longer than the frame while the resampler fills its
    /// blocks; over a stream it is as long as the input.
    pub fn convert(&mut self, audio: &AudioFrame) -> Result<&[i16], AudioError> {
        if self
            .segment
            .as_ref()
            .is_none_or(|s| s.input_rate != audio.sample_rate)
        {
            let rate = audio.sample_rate;
            let conversion = if rate == self.model_rate {
                Conversion::None
            } else if self.band_limited_rate == Some(rate)
                && rate > self.model_rate
                && rate.is_multiple_of(self.model_rate)
            {
                Conversion::Decimate {
                    step: (rate / self.model_rate) as usize,
                    skip: 0,
                }
            } else {
                Conversion::Resample(StreamResampler::new(rate, self.model_rate)?)
            };
            self.segment = Some(Segment {
                input_rate: rate,
                conversion,
                model_start: self.produced,
                input_samples: 0,
            });
        }
        let Some(segment) = self.segment.as_mut() else {
            return Ok(&[]);
        };
        self.samples.clear();
        pcm::le_bytes_to_mono(&audio.data, audio.channels.max(1), &mut self.samples);
        // Where this frame's first sample lands in the model's stream, in
        // nanosamples: the segment start, the resampler's delay, and the
        // segment's input so far at the model's rate.
        let delay = match &segment.conversion {
            Conversion::Resample(resampler) => resampler.delay_samples(),
            Conversion::None | Conversion::Decimate { .. } => 0,
        };
        let first = (i128::from(segment.model_start) + delay as i128) * NANOS
            + i128::from(segment.input_samples) * i128::from(self.model_rate) * NANOS
                / i128::from(segment.input_rate.max(1));
        self.anchor = (audio.pts, first);
        segment.input_samples += self.samples.len() as u64;
        let out = match &mut segment.conversion {
            Conversion::None => &self.samples,
            Conversion::Resample(resampler) => {
                self.converted.clear();
                resampler.process(&self.samples, &mut self.converted);
                &self.converted
            }
            Conversion::Decimate { step, skip } => {
                self.converted.clear();
                let taken = self.samples.get(*skip..).unwrap_or_default();
                self.converted.extend(taken.iter().step_by(*step));
                // Samples to skip at the start of the next frame, so the
                // stride continues across frames of any length.
                *skip = (*skip + self.converted.len() * *step).saturating_sub(self.samples.len());
                &self.converted
            }
        };
        self.produced += out.len() as u64;
        Ok(out)
    }

    /// The model's rate.
    pub fn model_rate(&self) -> u32 {
        self.model_rate
    }

    /// The session time of model-rate `position`, by the latest frame.
    pub fn time_of(&self, position: u64) -> Duration {
        let (pts, first) = self.anchor;
        let offset = (i128::from(position) * NANOS - first) / i128::from(self.model_rate.max(1));
        let nanos = (pts.as_nanos() as i128 + offset).max(0);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn frame(rate: u32, channels: u16, pts: Duration) -> AudioFrame {
        let n = rate as usize / 50 * usize::from(channels);
        AudioFrame::from_samples(&vec![100; n], rate, channels, pts)
    }

    #[test]
    fn same_rate_passes_through_and_maps_positions_to_pts() {
        let mut input = ModelInput::new(16_000);
        assert_eq!(input.convert(&frame(16_000, 1, ms(0))).unwrap().len(), 320);
        assert_eq!(input.convert(&frame(16_000, 1, ms(20))).unwrap().len(), 320);
        assert_eq!(input.time_of(0), ms(0));
        assert_eq!(input.time_of(16 * 32), ms(32));
        assert_eq!(input.time_of(640), ms(40));
    }

    #[test]
    fn resampled_positions_account_for_the_delay() {
        let mut input = ModelInput::new(16_000);
        let mut produced = 0;
        for i in 0..10 {
            produced += input.convert(&frame(8_000, 1, ms(20 * i))).unwrap().len();
        }
        // 200 ms in, 200 ms out: the resampler's delay line holds the
        // start of the stream's output.
        assert_eq!(produced, 3200);
        // Model sample 96 is the first input sample (6 ms delay).
        assert_eq!(input.time_of(96), ms(0));
        assert_eq!(input.time_of(96 + 1600), ms(100));
    }

    /// A ramp `0, 1, 2, …` at `rate`, cut into frames of `lengths`, through
    /// a model input at 8 kHz told the audio is band-limited.
    fn decimated_ramp(rate: u32, lengths: &[usize]) -> Vec<i16> {
        let mut input = ModelInput::band_limited(8_000, rate);
        let mut out = Vec::new();
        let mut at = 0;
        for &len in lengths {
            let ramp: Vec<i16> = (at..at + len).map(|i| i as i16).collect();
            let frame = AudioFrame::from_samples(&ramp, rate, 1, ms(0));
            out.extend_from_slice(input.convert(&frame).unwrap());
            at += len;
        }
        out
    }

    #[test]
    fn band_limited_input_is_decimated_without_delay_across_odd_frames() {
        // Frames of odd and even lengths: the stride continues across them.
        let out = decimated_ramp(16_000, &[3, 320, 1, 2, 319, 355]);
        assert_eq!(out, (0..1000).step_by(2).collect::<Vec<i16>>());
        // No delay: model position n is input sample 2n.
        let mut input = ModelInput::band_limited(8_000, 16_000);
        input.convert(&frame(16_000, 1, ms(40))).unwrap();
        assert_eq!(input.time_of(0), ms(40));
        assert_eq!(input.time_of(80), ms(50));
    }

    #[test]
    fn a_call_the_transport_upsampled_comes_back_sample_for_sample() {
        // What the Twilio input does for a 16 kHz pipeline.
        let call: Vec<i16> = (0..1600)
            .map(|i| (8000.0 * (f64::from(i) * 0.37).sin()) as i16)
            .collect();
        let mut upsampler = StreamResampler::new(8_000, 16_000).unwrap();
        let mut input = ModelInput::band_limited(8_000, 16_000);
        let mut back = Vec::new();
        for (i, chunk) in call.chunks(160).enumerate() {
            let mut wide = Vec::new();
            upsampler.process(chunk, &mut wide);
            let frame = AudioFrame::from_samples(&wide, 16_000, 1, ms(20 * i as u64));
            back.extend_from_slice(input.convert(&frame).unwrap());
        }
        // The upsampler's delay (96 samples at 16 kHz) is 48 at 8 kHz.
        let delay = upsampler.delay_samples() / 2;
        assert_eq!(back[..delay], vec![0; delay]);
        assert_eq!(back[delay..], call[..call.len() - delay]);
    }

    #[test]
    fn a_sixfold_stride_continues_across_frames_shorter_than_it() {
        let out = decimated_ramp(48_000, &[1, 5, 7, 2, 3, 11, 480, 191]);
        assert_eq!(out, (0..700).step_by(6).collect::<Vec<i16>>());
    }

    #[test]
    fn band_limited_knowledge_holds_for_its_rate_only() {
        // Found at 16 kHz; the stream then moves to 48 kHz: filtered, with
        // the resampler's delay, not decimated.
        let mut input = ModelInput::band_limited(8_000, 16_000);
        input.convert(&frame(16_000, 1, ms(0))).unwrap();
        let ramp: Vec<i16> = (0..960).collect();
        let wide = AudioFrame::from_samples(&ramp, 48_000, 1, ms(20));
        let out = input.convert(&wide).unwrap().to_vec();
        assert_ne!(out, (0..960).step_by(6).collect::<Vec<i16>>());
        // The segment's first model sample is the resampler's delay line,
        // before the frame's first sample: a decimated one would be at it.
        assert!(input.time_of(160) < ms(20), "the resampler's delay counts");
    }

    #[test]
    fn band_limited_input_at_no_whole_multiple_is_resampled() {
        let mut input = ModelInput::band_limited(16_000, 24_000);
        let mut produced = 0;
        for i in 0..10 {
            produced += input.convert(&frame(24_000, 1, ms(20 * i))).unwrap().len();
        }
        assert!(produced > 0 && produced <= 3200, "{produced}");
        // And a rate below the model's is filtered up, as without the hint.
        let mut input = ModelInput::band_limited(16_000, 8_000);
        input.convert(&frame(8_000, 1, ms(0))).unwrap();
        assert_eq!(input.time_of(96), ms(0));
    }

    #[test]
    fn stereo_is_mixed_down_and_a_gap_in_pts_is_followed() {
        let mut input = ModelInput::new(8_000);
        assert_eq!(input.convert(&frame(8_000, 2, ms(0))).unwrap().len(), 160);
        // The next frame comes 1 s later than its predecessor's end.
        input.convert(&frame(8_000, 2, ms(1020))).unwrap();
        assert_eq!(input.time_of(160), ms(1020));
        assert_eq!(input.time_of(240), ms(1030));
    }

    #[test]
    fn an_impossible_rate_is_an_error() {
        let mut input = ModelInput::new(16_000);
        let bad = AudioFrame::from_samples(&[0; 10], 0, 1, ms(0));
        assert!(input.convert(&bad).is_err());
    }
}
