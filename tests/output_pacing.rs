//! Live output pacing (`Pacing::Timer`): each frame leaves at its time, the
//! first of an utterance at once, whatever the timer's phase.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use voxpipe::frame::{AudioFrame, FrameBody};
use voxpipe::pipeline::{NamedProcessor, PipelineParams, PipelineTask};
use voxpipe::processor::ProcessorError;
use voxpipe::transport::{AudioSink, OutputTransport, Pacing};

type Writes = Arc<Mutex<Vec<(Duration, Duration)>>>;

/// Records when each frame was written (since `start`) and its `pts`.
struct Recording {
    start: Instant,
    writes: Writes,
}

impl AudioSink for Recording {
    fn write(&mut self, audio: &AudioFrame) -> Result<(), ProcessorError> {
        let mut writes = self.writes.lock().unwrap();
        writes.push((self.start.elapsed(), audio.pts));
        Ok(())
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn twenty_ms() -> FrameBody {
    FrameBody::OutputAudio(AudioFrame::from_samples(&[100; 320], 16_000, 1, ms(0)))
}

#[tokio::test(start_paused = true)]
async fn frames_leave_at_their_time_and_the_first_at_once() {
    let writes = Writes::default();
    let sink = Recording {
        start: Instant::now(),
        writes: Arc::clone(&writes),
    };
    let output = OutputTransport::new(sink, Pacing::Timer { period: ms(20) });
    let task = PipelineTask::new(
        vec![NamedProcessor::new("out", output)],
        PipelineParams::new("pacing", 16_000),
    );
    let handle = task.handle();
    let running = tokio::spawn(task.run());

    // Out of phase with any 20 ms grid started with the session.
    tokio::time::sleep(ms(7)).await;
    for _ in 0..5 {
        handle.queue_frame(twenty_ms()).await;
    }
    tokio::time::sleep(ms(500)).await;
    // A second utterance, later.
    tokio::time::sleep(ms(3)).await;
    handle.queue_frame(twenty_ms()).await;
    tokio::time::sleep(ms(100)).await;
    handle.end("done").await;
    running.await.unwrap();

    let writes = writes.lock().unwrap().clone();
    let expected: Vec<(Duration, Duration)> = [7, 27, 47, 67, 87, 510]
        .into_iter()
        .map(|t| (ms(t), ms(t)))
        .collect();
    assert_eq!(writes, expected);
}
