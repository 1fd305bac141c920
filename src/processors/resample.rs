//! `resample`: converts audio frames to another sample rate (and to mono),
//! keeping a stateful resampler per stream so chunk edges stay seamless.
//!
//! The resampler delays each stream by about 10 ms (its filter); `pts` is
//! kept from the input frame.

use async_trait::async_trait;
use serde::Deserialize;

use crate::audio::{StreamResampler, pcm};
use crate::frame::{AudioFrame, Direction, Frame, FrameBody};
use crate::pipeline::ProcessorFactory;
use crate::pipeline::{BuildError, SessionSetup};
use crate::pipeline::{Processor, ProcessorContext, ProcessorError};
use crate::processors::AudioSelector;

/// Converts a stream of audio frames to one rate, mono.
#[derive(Debug)]
pub struct FrameResampler {
    to_hz: u32,
    resampler: Option<StreamResampler>,
    /// The input frame's samples, mono.
    mono: Vec<i16>,
    out: Vec<i16>,
}

impl FrameResampler {
    /// A converter to `to_hz`.
    pub fn new(to_hz: u32) -> Self {
        FrameResampler {
            to_hz,
            resampler: None,
            mono: Vec::new(),
            out: Vec::new(),
        }
    }

    /// `audio` at the target rate, mono. Frames already there pass as they
    /// are; a change of input rate starts a fresh resampler.
    pub fn convert(&mut self, audio: &AudioFrame) -> Result<AudioFrame, ProcessorError> {
        if audio.sample_rate == self.to_hz && audio.channels == 1 {
            return Ok(audio.clone());
        }
        let resampler = match &mut self.resampler {
            Some(r) if r.from_hz() == audio.sample_rate => r,
            slot => slot.insert(
                StreamResampler::new(audio.sample_rate, self.to_hz)
                    .map_err(ProcessorError::recoverable)?,
            ),
        };
        self.mono.clear();
        pcm::le_bytes_to_mono(&audio.data, audio.channels, &mut self.mono);
        self.out.clear();
        resampler.process(&self.mono, &mut self.out);
        Ok(AudioFrame::from_samples(
            &self.out, self.to_hz, 1, audio.pts,
        ))
    }
}

/// `[[processor]] type = "resample"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResampleConfig {
    /// The rate to convert to, in Hz.
    pub rate: u32,
    /// `input` (default), `output` or `both`.
    #[serde(default)]
    pub audio: AudioSelector,
}

impl ProcessorFactory for ResampleConfig {
    fn build(&self, _setup: &SessionSetup) -> Result<Box<dyn Processor>, BuildError> {
        StreamResampler::new(self.rate, self.rate)
            .map_err(|e| BuildError::Invalid(e.to_string()))?;
        Ok(Box::new(Resample {
            audio: self.audio,
            input: FrameResampler::new(self.rate),
            output: FrameResampler::new(self.rate),
        }))
    }
}

/// Resamples selected audio frames. See the module docs.
#[derive(Debug)]
pub struct Resample {
    audio: AudioSelector,
    input: FrameResampler,
    output: FrameResampler,
}

#[async_trait]
impl Processor for Resample {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        let frame = match &frame.body {
            FrameBody::InputAudio(audio) if self.audio.picks(&frame.body) => {
                frame.derive(FrameBody::InputAudio(self.input.convert(audio)?))
            }
            FrameBody::OutputAudio(audio) if self.audio.picks(&frame.body) => {
                frame.derive(FrameBody::OutputAudio(self.output.convert(audio)?))
            }
            _ => frame,
        };
        ctx.push(frame, direction).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn converts_rate_and_channels_per_frame() {
        let mut to_16k = FrameResampler::new(16_000);
        let stereo_8k = AudioFrame::from_samples(&[100; 320], 8_000, 2, Duration::from_millis(40));
        let out = to_16k.convert(&stereo_8k).unwrap();
        assert_eq!((out.sample_rate, out.channels), (16_000, 1));
        assert_eq!(out.duration(), Duration::from_millis(20));
        assert_eq!(out.pts, Duration::from_millis(40));
        let same = AudioFrame::from_samples(&[7; 320], 16_000, 1, Duration::ZERO);
        assert_eq!(to_16k.convert(&same).unwrap(), same);
    }
}
