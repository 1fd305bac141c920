//! [`ModelInput`]: inbound audio frames as a stream of samples at the
//! model's rate, and the way back from a position in that stream to
//! session time.
//!
//! Frames may come at any rate and channel count; they are mixed down to
//! mono and, at another rate than the model's, resampled (the resampler
//! delays its output by 10 ms, which the mapping accounts for). A change
//! of input rate starts a fresh resampler.
//!
//! Session time is taken from the frames' own `pts`, never from a clock:
//! the position of each frame's first sample is anchored to its `pts`, and
//! any position maps to `pts + (position - anchor) / rate` of the latest
//! frame, so a gap in the input shifts later times but never accumulates
//! error.

use std::time::Duration;

use crate::audio::{AudioError, StreamResampler, pcm};
use crate::frame::AudioFrame;

struct Segment {
    input_rate: u32,
    resampler: Option<StreamResampler>,
    /// Model-rate position where the segment began.
    model_start: u64,
    /// Input samples (per channel) of the segment so far.
    input_samples: u64,
}

/// Converts inbound frames for a model at one rate. See the module docs.
pub struct ModelInput {
    model_rate: u32,
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
            segment: None,
            produced: 0,
            anchor: (Duration::ZERO, 0),
            samples: Vec::new(),
            converted: Vec::new(),
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
            let resampler = if audio.sample_rate == self.model_rate {
                None
            } else {
                Some(StreamResampler::new(audio.sample_rate, self.model_rate)?)
            };
            self.segment = Some(Segment {
                input_rate: audio.sample_rate,
                resampler,
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
        let delay = segment
            .resampler
            .as_ref()
            .map_or(0, StreamResampler::delay_samples);
        let first = (i128::from(segment.model_start) + delay as i128) * NANOS
            + i128::from(segment.input_samples) * i128::from(self.model_rate) * NANOS
                / i128::from(segment.input_rate.max(1));
        self.anchor = (audio.pts, first);
        segment.input_samples += self.samples.len() as u64;
        let out = match segment.resampler.as_mut() {
            Some(resampler) => {
                self.converted.clear();
                resampler.process(&self.samples, &mut self.converted);
                &self.converted
            }
            None => &self.samples,
        };
        self.produced += out.len() as u64;
        Ok(out)
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
