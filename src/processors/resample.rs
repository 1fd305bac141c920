//! `resample`: converts audio frames to another sample rate (and to mono),
//! with a [`FrameResampler`] per stream so chunk edges stay seamless.
//!
//! The resampler delays each stream by about 10 ms (its filter); `pts` is
//! kept from the input frame.

use async_trait::async_trait;
use serde::Deserialize;

use crate::audio::StreamResampler;
use crate::frame::{Direction, Frame, FrameBody, FrameResampler};
use crate::pipeline::ProcessorFactory;
use crate::pipeline::{BuildError, SessionSetup};
use crate::pipeline::{Processor, ProcessorContext, ProcessorError};
use crate::processors::AudioSelector;

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
