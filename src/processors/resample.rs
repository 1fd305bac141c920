//! `resample`: converts audio frames to another sample rate (and to mono),
//! with a [`FrameResampler`] per stream so chunk edges stay seamless.
//!
//! The resampler delays each stream by about 10 ms (its filter); `pts` is
//! kept from the input frame. For output audio, the end of an utterance
//! (`TtsStopped`) pushes out what the filter still holds, so an
//! utterance's last milliseconds are heard, and an interruption drops it,
//! so none of the cut utterance leaks into the next.

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
            last_output_end: std::time::Duration::ZERO,
        }))
    }
}

/// Resamples selected audio frames. See the module docs.
#[derive(Debug)]
pub struct Resample {
    audio: AudioSelector,
    input: FrameResampler,
    output: FrameResampler,
    /// Where the last output frame ended: the flushed tail's `pts`.
    last_output_end: std::time::Duration,
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
                self.last_output_end = audio.pts + audio.duration();
                frame.derive(FrameBody::OutputAudio(self.output.convert(audio)?))
            }
            FrameBody::TtsStopped => {
                if let Some(tail) = self.output.flush(self.last_output_end) {
                    ctx.push_downstream(FrameBody::OutputAudio(tail)).await;
                }
                frame
            }
            _ => frame,
        };
        ctx.push(frame, direction).await;
        Ok(())
    }

    async fn on_interruption(&mut self, _ctx: &ProcessorContext) {
        self.output.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::AudioFrame;
    use crate::pipeline::NamedProcessor;
    use crate::testing::run_test;
    use std::time::Duration;

    fn resample_output() -> NamedProcessor {
        let config = ResampleConfig {
            rate: 8_000,
            audio: AudioSelector::Output,
        };
        NamedProcessor::new(
            "resample",
            Resample {
                audio: config.audio,
                input: FrameResampler::new(config.rate),
                output: FrameResampler::new(config.rate),
                last_output_end: Duration::ZERO,
            },
        )
    }

    fn samples_out(bodies: &[&FrameBody]) -> usize {
        bodies
            .iter()
            .filter_map(|body| match body {
                FrameBody::OutputAudio(audio) => Some(audio.num_frames()),
                _ => None,
            })
            .sum()
    }

    #[tokio::test]
    async fn an_utterance_ends_with_all_of_its_audio() {
        let speech = AudioFrame::from_samples(&[3_000; 480], 24_000, 1, Duration::ZERO);
        let delay = StreamResampler::new(24_000, 8_000).unwrap().delay_samples();
        let out = run_test(
            vec![resample_output()],
            vec![FrameBody::OutputAudio(speech), FrameBody::TtsStopped],
        )
        .await;
        let bodies: Vec<&FrameBody> = out.downstream.iter().map(|f| &f.body).collect();
        let stopped = bodies
            .iter()
            .position(|b| matches!(b, FrameBody::TtsStopped))
            .unwrap();
        // Its 20 ms at 8 kHz and the filter's delay, before `TtsStopped`;
        // without the flush, the delay's worth of it would be missing.
        assert_eq!(samples_out(&bodies[..stopped]), 160 + delay);
        let FrameBody::OutputAudio(tail) = bodies[stopped - 1] else {
            panic!("{:?}", out.downstream_names());
        };
        assert_eq!(tail.pts, Duration::from_millis(20));
        assert_eq!(samples_out(&bodies[stopped..]), 0);
    }

    #[tokio::test]
    async fn a_cut_utterance_leaves_nothing_for_the_next() {
        use crate::pipeline::{PipelineParams, PipelineTask};
        use crate::testing::RecordingObserver;

        let tone: Vec<i16> = (0..480).map(|i| ((i % 24) as i16 - 12) * 1_000).collect();
        let speech = AudioFrame::from_samples(&tone, 24_000, 1, Duration::ZERO);
        let recorder = RecordingObserver::new();
        let mut params = PipelineParams::new("test-session", 16_000);
        params.observers.push(recorder.clone());
        let task = PipelineTask::new(vec![resample_output()], params);
        let handle = task.handle();
        let running = tokio::spawn(task.run());
        let converted = || {
            recorder
                .frames_from("resample", Direction::Downstream)
                .into_iter()
                .filter_map(|f| match f.body {
                    FrameBody::OutputAudio(audio) => Some(audio),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        // One frame at a time, each through before the next: an
        // interruption queued behind audio would drop it.
        let wait_for = |n: usize| async move {
            while converted().len() < n {
                tokio::task::yield_now().await;
            }
        };
        handle
            .queue_frame(FrameBody::OutputAudio(speech.clone()))
            .await;
        wait_for(1).await;
        handle.queue_frame(FrameBody::Interruption).await;
        while !recorder
            .frames_from("resample", Direction::Downstream)
            .iter()
            .any(|f| matches!(f.body, FrameBody::Interruption))
        {
            tokio::task::yield_now().await;
        }
        handle
            .queue_frame(FrameBody::OutputAudio(speech.clone()))
            .await;
        wait_for(2).await;
        handle.end("end of test").await;
        running.await.unwrap();
        let fresh = FrameResampler::new(8_000).convert(&speech).unwrap();
        assert_eq!(converted()[1], fresh, "starts as a new resampler would");
    }
}
