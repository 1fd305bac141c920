//! `gain`: changes the level of inbound or outbound audio by a fixed number
//! of decibels, saturating at full scale.

use async_trait::async_trait;
use serde::Deserialize;

use crate::audio::pcm;
use crate::frame::{AudioFrame, Direction, Frame, FrameBody};
use crate::pipeline::ProcessorFactory;
use crate::pipeline::{BuildError, SessionSetup};
use crate::pipeline::{Processor, ProcessorContext, ProcessorError};

/// Which audio a processor acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioSelector {
    /// The user's audio (`InputAudio`).
    #[default]
    Input,
    /// The bot's audio (`OutputAudio`).
    Output,
    /// Both.
    Both,
}

impl AudioSelector {
    /// Whether this selector picks `body`'s audio.
    pub fn picks(self, body: &FrameBody) -> bool {
        matches!(
            (self, body),
            (Self::Input | Self::Both, FrameBody::InputAudio(_))
                | (Self::Output | Self::Both, FrameBody::OutputAudio(_))
        )
    }
}

/// `[[processor]] type = "gain"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GainConfig {
    /// Decibels to add (negative to attenuate), -60 to +40.
    pub gain_db: f32,
    /// `input` (default), `output` or `both`.
    #[serde(default)]
    pub audio: AudioSelector,
}

impl ProcessorFactory for GainConfig {
    fn build(&self, _setup: &SessionSetup) -> Result<Box<dyn Processor>, BuildError> {
        if !(-60.0..=40.0).contains(&self.gain_db) {
            return Err(BuildError::Invalid(format!(
                "gain_db must be between -60 and 40, not {}",
                self.gain_db
            )));
        }
        Ok(Box::new(Gain {
            gain_db: self.gain_db,
            audio: self.audio,
        }))
    }
}

/// Applies a fixed gain. See the module docs.
#[derive(Debug, Clone)]
pub struct Gain {
    gain_db: f32,
    audio: AudioSelector,
}

impl Gain {
    /// A gain of `gain_db` on the audio `audio` selects.
    pub fn new(gain_db: f32, audio: AudioSelector) -> Self {
        Gain { gain_db, audio }
    }

    fn apply(&self, audio: &AudioFrame) -> AudioFrame {
        let mut samples = audio.samples();
        pcm::apply_gain_db(&mut samples, self.gain_db);
        AudioFrame::from_samples(&samples, audio.sample_rate, audio.channels, audio.pts)
    }
}

#[async_trait]
impl Processor for Gain {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        let frame = match &frame.body {
            FrameBody::InputAudio(audio) if self.audio.picks(&frame.body) => {
                frame.derive(FrameBody::InputAudio(self.apply(audio)))
            }
            FrameBody::OutputAudio(audio) if self.audio.picks(&frame.body) => {
                frame.derive(FrameBody::OutputAudio(self.apply(audio)))
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
    use crate::pipeline::NamedProcessor;
    use crate::testing::run_test;
    use std::time::Duration;

    #[tokio::test]
    async fn halves_input_audio_at_minus_six_db_and_leaves_output_alone() {
        let input = AudioFrame::from_samples(&[10_000; 320], 16_000, 1, Duration::ZERO);
        let out = run_test(
            vec![NamedProcessor::new(
                "gain",
                Gain::new(-6.0206, AudioSelector::Input),
            )],
            vec![
                FrameBody::InputAudio(input.clone()),
                FrameBody::OutputAudio(input),
            ],
        )
        .await;
        let FrameBody::InputAudio(quiet) = &out.downstream[1].body else {
            panic!("{:?}", out.downstream_names());
        };
        assert!(quiet.samples().iter().all(|s| (*s - 5_000).abs() <= 1));
        let FrameBody::OutputAudio(same) = &out.downstream[2].body else {
            panic!("{:?}", out.downstream_names());
        };
        assert!(same.samples().iter().all(|s| *s == 10_000));
    }
}
