//! The output transport with a sink whose far end confirms playback (as
//! Twilio echoes marks): the bot stops speaking when the listener has heard
//! the end, not when the audio was sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use voxpipe::frame::{AudioFrame, Direction, FrameBody};
use voxpipe::pipeline::ProcessorError;
use voxpipe::pipeline::{
    NamedProcessor, Observer, PipelineHandle, PipelineParams, PipelineTask, PushEvent,
};
use voxpipe::transport::{AudioSink, OutputTransport, Pacing, SendAhead};

type Log = Arc<Mutex<Vec<String>>>;

/// Confirms each utterance after `polls` calls of `still_playing`.
struct ConfirmingSink {
    log: Log,
    polls: usize,
    waiting: Option<usize>,
}

impl AudioSink for ConfirmingSink {
    fn write(&mut self, _audio: &AudioFrame) -> Result<(), ProcessorError> {
        Ok(())
    }

    fn clear(&mut self) {
        self.waiting = None;
        self.log.lock().unwrap().push("clear".into());
    }

    fn utterance_sent(&mut self, _end: Duration) {
        self.waiting = Some(0);
        self.log.lock().unwrap().push("utterance_sent".into());
    }

    fn still_playing(&mut self, _now: Duration) -> bool {
        let Some(polls) = self.waiting.as_mut() else {
            return false;
        };
        *polls += 1;
        let playing = *polls <= self.polls;
        if !playing {
            self.waiting = None;
        }
        self.log
            .lock()
            .unwrap()
            .push(format!("still_playing {playing}"));
        playing
    }
}

/// Logs the speaking state the output pushes downstream.
struct Speaking(Log);

impl Observer for Speaking {
    fn on_push(&self, event: &PushEvent<'_>) {
        if event.from == "out" && event.direction == Direction::Downstream {
            let name = event.frame.name();
            if name.starts_with("Bot") {
                self.0.lock().unwrap().push(name.into());
            }
        }
    }
}

fn start(polls: usize) -> (PipelineHandle, tokio::task::JoinHandle<()>, Log) {
    let log = Log::default();
    let sink = ConfirmingSink {
        log: Arc::clone(&log),
        polls,
        waiting: None,
    };
    let output = OutputTransport::new(
        sink,
        Pacing::Timer {
            period: Duration::from_millis(20),
            send_ahead: SendAhead::NONE,
        },
    );
    let mut params = PipelineParams::new("test", 16_000);
    params.observers.push(Arc::new(Speaking(Arc::clone(&log))));
    let (handle, running) = run_alone(output, params);
    (handle, running, log)
}

/// `output` as the only processor of a running pipeline.
fn run_alone<S: AudioSink>(
    output: OutputTransport<S>,
    params: PipelineParams,
) -> (PipelineHandle, tokio::task::JoinHandle<()>) {
    let task = PipelineTask::new(vec![NamedProcessor::new("out", output)], params);
    let handle = task.handle();
    let running = tokio::spawn(async move {
        task.run().await;
    });
    (handle, running)
}

/// Pipeline parameters on `clock`.
fn on_clock(clock: voxpipe::pipeline::SessionClock) -> PipelineParams {
    let mut params = PipelineParams::new("test", 16_000);
    params.clock = clock;
    params
}

/// `frames` of 20 ms of bot audio.
async fn audio_frames(handle: &PipelineHandle, frames: usize) {
    for _ in 0..frames {
        let audio = AudioFrame::from_samples(&[1_000; 320], 16_000, 1, Duration::ZERO);
        handle.queue_frame(FrameBody::OutputAudio(audio)).await;
    }
}

/// `frames` of bot audio, then the TTS's end of the utterance.
async fn utterance(handle: &PipelineHandle, frames: usize) {
    audio_frames(handle, frames).await;
    handle.queue_frame(FrameBody::TtsStopped).await;
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

#[tokio::test(start_paused = true)]
async fn the_bot_stops_speaking_when_the_far_end_confirms() {
    let (handle, running, log) = start(3);
    utterance(&handle, 5).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        entries(&log),
        [
            "BotStartedSpeaking",
            "utterance_sent",
            "still_playing true",
            "still_playing true",
            "still_playing true",
            "still_playing false",
            "BotStoppedSpeaking",
        ]
    );
    handle.end("done").await;
    running.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_interruption_while_the_far_end_plays_stops_the_bot_at_once() {
    let (handle, running, log) = start(usize::MAX);
    utterance(&handle, 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    handle.queue_frame(FrameBody::Interruption).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let log = entries(&log);
    let tail: Vec<&str> = log
        .iter()
        .map(String::as_str)
        .filter(|e| !e.starts_with("still_playing"))
        .collect();
    assert_eq!(
        tail,
        [
            "BotStartedSpeaking",
            "utterance_sent",
            "clear",
            "BotInterrupted",
            "BotStoppedSpeaking"
        ]
    );
    handle.end("done").await;
    running.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_utterance_that_starts_while_the_last_one_is_heard_continues_the_turn() {
    let (handle, running, log) = start(10);
    utterance(&handle, 2).await;
    tokio::time::sleep(Duration::from_millis(80)).await;
    utterance(&handle, 2).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let speaking: Vec<String> = entries(&log)
        .into_iter()
        .filter(|e| e.starts_with("Bot"))
        .collect();
    assert_eq!(speaking, ["BotStartedSpeaking", "BotStoppedSpeaking"]);
    assert_eq!(
        entries(&log)
            .iter()
            .filter(|e| *e == "utterance_sent")
            .count(),
        2
    );
    handle.end("done").await;
    running.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_end_of_a_session_waits_for_the_last_confirmation() {
    let (handle, running, log) = start(4);
    utterance(&handle, 3).await;
    handle.end("done").await;
    running.await.unwrap();
    let log = entries(&log);
    assert_eq!(log.last().map(String::as_str), Some("BotStoppedSpeaking"));
    assert!(log.contains(&"still_playing false".to_owned()), "{log:?}");
}

/// Records the session time of each write and the audio's own time.
struct Stamps {
    clock: voxpipe::pipeline::SessionClock,
    at: Arc<Mutex<Vec<(Duration, Duration)>>>,
}

impl AudioSink for Stamps {
    fn write(&mut self, audio: &AudioFrame) -> Result<(), ProcessorError> {
        self.at.lock().unwrap().push((self.clock.now(), audio.pts));
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn live_audio_leaves_the_moment_it_is_due_not_on_a_grid() {
    let clock = voxpipe::pipeline::SessionClock::wall();
    let at = Arc::new(Mutex::new(Vec::new()));
    let output = OutputTransport::new(
        Stamps {
            clock: clock.clone(),
            at: Arc::clone(&at),
        },
        Pacing::Timer {
            period: Duration::from_millis(20),
            send_ahead: SendAhead::NONE,
        },
    );
    let (handle, running) = run_alone(output, on_clock(clock));
    // Silence for a while (the output sleeps), then a reply at 1007 ms.
    tokio::time::sleep(Duration::from_millis(1_007)).await;
    utterance(&handle, 3).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ms = Duration::from_millis;
    let written: Vec<Duration> = at.lock().unwrap().iter().map(|(at, _)| *at).collect();
    assert_eq!(written, [ms(1_007), ms(1_027), ms(1_047)]);
    handle.end("done").await;
    running.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn sent_ahead_audio_tops_up_when_caller_audio_passes_and_is_never_late() {
    let ms = Duration::from_millis;
    let clock = voxpipe::pipeline::SessionClock::wall();
    let log = Arc::new(Mutex::new(Vec::new()));
    let output = OutputTransport::new(
        Stamps {
            clock: clock.clone(),
            at: Arc::clone(&log),
        },
        Pacing::Timer {
            period: ms(20),
            send_ahead: SendAhead {
                most: ms(100),
                refill_below: ms(60),
            },
        },
    );
    let (handle, running) = run_alone(output, on_clock(clock.clone()));
    // A reply of 25 frames (500 ms) at 0; the caller's audio passes every
    // 40 ms from 35 ms (as a socket read every 40 ms brings it) until 275.
    utterance(&handle, 25).await;
    let mut passed = vec![ms(0)];
    tokio::time::sleep(ms(35)).await;
    for _ in 0..7 {
        passed.push(clock.now());
        let audio = AudioFrame::from_samples(&[0; 320], 16_000, 1, clock.now());
        handle.queue_frame(FrameBody::InputAudio(audio)).await;
        tokio::time::sleep(ms(40)).await;
    }
    tokio::time::sleep(ms(400)).await;
    let sent = log.lock().unwrap().clone();
    assert_eq!(sent.len(), 25, "{sent:?}");
    for (at, pts) in &sent {
        assert!(at <= pts, "a frame of {pts:?} left late, at {at:?}");
    }
    // While caller audio passed, top-ups went with it: no wake-up of the
    // output's own (without riding along, they fall at 40, 80, ... ms).
    let while_passing: Vec<Duration> = sent
        .iter()
        .map(|(at, _)| *at)
        .filter(|at| *at <= ms(275))
        .collect();
    assert!(
        while_passing.iter().all(|at| passed.contains(at)),
        "{while_passing:?} not all in {passed:?}"
    );
    assert!(while_passing.len() > 5, "{while_passing:?}");
    handle.end("done").await;
    running.await.unwrap();
}

/// Records the session time of each write and of each utterance's end.
#[derive(Default)]
struct Ends {
    writes: Mutex<Vec<Duration>>,
    sent: Mutex<Vec<(Duration, Duration)>>,
}

/// Writes into an [`Ends`] at the session's time.
struct EndsSink {
    clock: voxpipe::pipeline::SessionClock,
    ends: Arc<Ends>,
}

impl AudioSink for EndsSink {
    fn write(&mut self, _audio: &AudioFrame) -> Result<(), ProcessorError> {
        self.ends.writes.lock().unwrap().push(self.clock.now());
        Ok(())
    }

    fn utterance_sent(&mut self, end: Duration) {
        self.ends.sent.lock().unwrap().push((self.clock.now(), end));
    }
}

/// An output sending up to 0.5 s ahead (Twilio's default) into [`Ends`].
fn start_sending_ahead() -> (PipelineHandle, tokio::task::JoinHandle<()>, Arc<Ends>) {
    let clock = voxpipe::pipeline::SessionClock::wall();
    let ends = Arc::new(Ends::default());
    let output = OutputTransport::new(
        EndsSink {
            clock: clock.clone(),
            ends: Arc::clone(&ends),
        },
        Pacing::Timer {
            period: Duration::from_millis(20),
            send_ahead: SendAhead {
                most: Duration::from_millis(500),
                refill_below: Duration::from_millis(460),
            },
        },
    );
    let (handle, running) = run_alone(output, on_clock(clock));
    (handle, running, ends)
}

/// A sink's held-back tail (Twilio's part of a message and resampler delay)
/// must leave with the last audio when audio is sent ahead: sent when the
/// audio has played, it arrived after the audio before it had played (the
/// late message of every late call at 1,000 Twilio calls).
#[tokio::test(start_paused = true)]
async fn the_end_of_an_utterance_sent_ahead_leaves_with_its_last_audio() {
    let ms = Duration::from_millis;
    let (handle, running, ends) = start_sending_ahead();
    // A reply of 5 frames, complete: all of it leaves at once, its end too.
    utterance(&handle, 5).await;
    tokio::time::sleep(ms(300)).await;
    assert_eq!(*ends.writes.lock().unwrap(), [ms(0); 5]);
    assert_eq!(*ends.sent.lock().unwrap(), [(ms(0), ms(100))]);
    // A reply whose producer says it is complete only after its audio has
    // left: its end leaves then, not once the audio has played.
    audio_frames(&handle, 3).await;
    tokio::time::sleep(ms(10)).await;
    handle.queue_frame(FrameBody::TtsStopped).await;
    tokio::time::sleep(ms(300)).await;
    assert_eq!(
        *ends.sent.lock().unwrap(),
        [(ms(0), ms(100)), (ms(310), ms(360))]
    );
    handle.end("done").await;
    running.await.unwrap();
}

/// The same at the session's end, where the ticker is already stopped.
#[tokio::test(start_paused = true)]
async fn the_end_of_a_session_sends_what_has_left_at_once() {
    let ms = Duration::from_millis;
    let (handle, running, ends) = start_sending_ahead();
    // A reply that never says it is complete, all of it sent ahead; then
    // the session ends (a goodbye before hanging up).
    audio_frames(&handle, 5).await;
    tokio::time::sleep(ms(10)).await;
    handle.end("done").await;
    running.await.unwrap();
    assert_eq!(*ends.sent.lock().unwrap(), [(ms(10), ms(100))]);
}
