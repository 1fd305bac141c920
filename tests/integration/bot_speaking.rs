//! The bot's speaking state follows its audio leaving the transport, not
//! its audio being queued, and reaches both ends of the chain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use voxpipe::frame::{AudioFrame, Direction, FrameBody};
use voxpipe::pipeline::ProcessorError;
use voxpipe::pipeline::{
    NamedProcessor, Observer, PipelineParams, PipelineTask, PushEvent, SessionClock,
};
use voxpipe::processors::Passthrough;
use voxpipe::transport::{AudioSink, OutputTransport, Pacing, SendAhead};

/// Records the session time of every push of speaking state.
#[derive(Default)]
struct Speaking {
    pushes: Mutex<Vec<(&'static str, Direction, Duration)>>,
}

impl Observer for Speaking {
    fn on_push(&self, event: &PushEvent<'_>) {
        if event.from == "transport.output"
            && matches!(
                event.frame.body,
                FrameBody::BotStartedSpeaking | FrameBody::BotStoppedSpeaking
            )
        {
            self.pushes
                .lock()
                .unwrap()
                .push((event.frame.name(), event.direction, event.at));
        }
    }
}

/// Records when each piece of audio left, on the session clock.
struct Leaving {
    clock: SessionClock,
    left: Arc<Mutex<Vec<(Duration, Duration)>>>,
}

impl AudioSink for Leaving {
    fn write(&mut self, audio: &AudioFrame) -> Result<(), ProcessorError> {
        self.left
            .lock()
            .unwrap()
            .push((self.clock.now(), audio.pts));
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn speaking_state_follows_the_audio_leaving_both_ways() {
    let clock = SessionClock::wall();
    let left = Arc::new(Mutex::new(Vec::new()));
    let observer = Arc::new(Speaking::default());
    let mut params = PipelineParams::new("bot-speaking", 16_000);
    params.clock = clock.clone();
    params.observers.push(observer.clone());
    let output = OutputTransport::new(
        Leaving {
            clock: clock.clone(),
            left: Arc::clone(&left),
        },
        Pacing::Timer {
            period: Duration::from_millis(20),
            send_ahead: SendAhead::NONE,
        },
    );
    let task = PipelineTask::new(
        vec![
            NamedProcessor::new("before", Passthrough),
            NamedProcessor::new("transport.output", output),
        ],
        params,
    );
    let handle = task.handle();
    let running = tokio::spawn(task.run());

    // 300 ms in, a whole second of bot audio is queued at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle.queue_frame(FrameBody::TtsStarted).await;
    for _ in 0..50 {
        handle
            .queue_frame(FrameBody::OutputAudio(AudioFrame::from_samples(
                &[500; 320],
                16_000,
                1,
                Duration::ZERO,
            )))
            .await;
    }
    handle.queue_frame(FrameBody::TtsStopped).await;
    handle.end("done").await;
    running.await.unwrap();

    let left = left.lock().unwrap().clone();
    assert_eq!(left.len(), 50);
    // Each 20 ms piece left at its own time, not all when queued.
    for (i, (at, pts)) in left.iter().enumerate() {
        let due = Duration::from_millis(300 + 20 * i as u64);
        assert_eq!(*pts, due);
        assert!(
            *at >= due && *at < due + Duration::from_millis(20),
            "{i}: left at {at:?}"
        );
    }
    let pushes = observer.pushes.lock().unwrap().clone();
    let ms = Duration::from_millis;
    let when = |name: &str, direction: Direction| {
        pushes
            .iter()
            .find(|(n, d, _)| *n == name && *d == direction)
            .map(|(_, _, at)| *at)
            .unwrap_or_else(|| panic!("no {name} {direction:?} in {pushes:?}"))
    };
    for direction in [Direction::Upstream, Direction::Downstream] {
        let started = when("BotStartedSpeaking", direction);
        let stopped = when("BotStoppedSpeaking", direction);
        // Started with the first audio out; stopped once the last piece had
        // played, a second later, although TtsStopped came at 300 ms.
        assert!(started >= ms(300) && started < ms(320), "{started:?}");
        assert!(stopped >= ms(1300) && stopped < ms(1320), "{stopped:?}");
    }
    assert_eq!(pushes.len(), 4, "{pushes:?}");
}
