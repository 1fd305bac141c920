//! The file transport's input: pushes a WAV's audio into the pipeline in
//! 20 ms frames, then asks for the session to end.
//!
//! Faster than real time, each frame is pushed only once the pipeline is
//! idle, and the audio clock is moved to the end of the frame first: every
//! processor sees the session as it would have unfolded live, so a run is
//! deterministic and its events carry the times they would have had.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::frame::{AudioFrame, Direction, Frame, StartFrame};
use crate::pipeline::{Processor, ProcessorContext, ProcessorError};

/// Length of each pushed frame.
pub const FRAME_DURATION: Duration = Duration::from_millis(20);

/// Pushes audio from memory as 20 ms `InputAudio` frames.
pub struct FileInput {
    samples: Arc<[i16]>,
    sample_rate: u32,
    realtime: bool,
    reader: Option<JoinHandle<()>>,
}

impl FileInput {
    /// Input of mono `samples` at `sample_rate` (the pipeline's rate),
    /// paced in real time or as fast as the pipeline takes them.
    pub fn new(samples: impl Into<Arc<[i16]>>, sample_rate: u32, realtime: bool) -> Self {
        FileInput {
            samples: samples.into(),
            sample_rate,
            realtime,
            reader: None,
        }
    }
}

async fn read(samples: Arc<[i16]>, sample_rate: u32, realtime: bool, ctx: ProcessorContext) {
    let per_frame = (sample_rate as usize * FRAME_DURATION.as_millis() as usize) / 1000;
    let started = tokio::time::Instant::now();
    for (index, chunk) in samples.chunks(per_frame.max(1)).enumerate() {
        let pts = FRAME_DURATION * index as u32;
        let end = pts + FRAME_DURATION;
        if realtime {
            // The frame can leave once all of it has been "captured".
            tokio::time::sleep_until(started + end).await;
        }
        ctx.clock().advance_to(end);
        let mut padded;
        let chunk = if chunk.len() < per_frame {
            padded = chunk.to_vec();
            padded.resize(per_frame, 0);
            &padded[..]
        } else {
            chunk
        };
        let audio = AudioFrame::from_samples(chunk, sample_rate, 1, pts);
        ctx.push_downstream(crate::frame::FrameBody::InputAudio(audio))
            .await;
        if !realtime {
            ctx.wait_idle().await;
        }
    }
    ctx.request_end("end_of_input").await;
}

#[async_trait]
impl Processor for FileInput {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        ctx.push(frame, direction).await;
        Ok(())
    }

    async fn on_start(
        &mut self,
        _start: &StartFrame,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        self.reader = Some(tokio::spawn(
            read(
                Arc::clone(&self.samples),
                self.sample_rate,
                self.realtime,
                ctx.clone(),
            )
            .in_current_span(),
        ));
        Ok(())
    }

    async fn on_cancel(&mut self, _ctx: &ProcessorContext) {
        if let Some(reader) = self.reader.take() {
            reader.abort();
        }
    }
}
