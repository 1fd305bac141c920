//! The runner's frame contract: lanes, interruptions, End, Cancel,
//! backpressure, errors and observers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use voxpipe::frame::{AudioFrame, Direction, Frame, FrameBody};
use voxpipe::pipeline::{NamedProcessor, PipelineParams, PipelineTask, SessionClock};
use voxpipe::pipeline::{Processor, ProcessorContext, ProcessorError};
use voxpipe::processors::Passthrough;
use voxpipe::testing::{RecordingObserver, run_test};

/// Blocks in `process` on a frame `Text("block")` until released, and
/// records every frame it processes.
struct Gate {
    release: Arc<Notify>,
    blocked: Arc<Notify>,
    seen: Arc<Mutex<Vec<String>>>,
}

fn label(frame: &Frame) -> String {
    match &frame.body {
        FrameBody::Text(t) => format!("Text({t})"),
        other => other.name().to_owned(),
    }
}

#[async_trait]
impl Processor for Gate {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        self.seen.lock().unwrap().push(label(&frame));
        if matches!(&frame.body, FrameBody::Text(t) if t == "block") {
            self.blocked.notify_one();
            self.release.notified().await;
        }
        ctx.push(frame, direction).await;
        Ok(())
    }

    async fn on_interruption(&mut self, _ctx: &ProcessorContext) {
        self.seen.lock().unwrap().push("on_interruption".into());
    }

    async fn on_end(&mut self, _ctx: &ProcessorContext) -> Result<(), ProcessorError> {
        self.seen.lock().unwrap().push("on_end".into());
        Ok(())
    }
}

fn audio() -> FrameBody {
    FrameBody::InputAudio(AudioFrame::from_samples(
        &[0; 320],
        16_000,
        1,
        Duration::ZERO,
    ))
}

#[tokio::test]
async fn interruption_drops_queued_data_and_control_but_not_system_frames_or_end() {
    let release = Arc::new(Notify::new());
    let blocked = Arc::new(Notify::new());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let gate = Gate {
        release: release.clone(),
        blocked: blocked.clone(),
        seen: seen.clone(),
    };
    let recorder = RecordingObserver::new();
    let mut params = PipelineParams::new("s", 16_000);
    params.observers.push(recorder.clone());
    let task = PipelineTask::new(
        vec![
            NamedProcessor::new("gate", gate),
            NamedProcessor::new("after", Passthrough),
        ],
        params,
    );
    let handle = task.handle();
    let running = tokio::spawn(task.run());

    handle.queue_frame(FrameBody::Text("block".into())).await;
    blocked.notified().await;
    // Queued behind the blocked frame: data, control, system, End.
    handle.queue_frame(FrameBody::Text("stale-1".into())).await;
    handle.queue_frame(FrameBody::TtsStarted).await;
    handle.queue_frame(FrameBody::Text("stale-2".into())).await;
    handle.queue_frame(audio()).await;
    handle.queue_frame(FrameBody::BotStartedSpeaking).await;
    handle.end("done").await;
    handle.queue_frame(FrameBody::Interruption).await;
    // Give the source time to forward everything into the gate's inbox.
    handle.queue_frame(FrameBody::BotStoppedSpeaking).await;
    while !recorder
        .pushes()
        .iter()
        .any(|(from, _, f)| from == "source" && f.name() == "BotStoppedSpeaking")
    {
        tokio::task::yield_now().await;
    }
    release.notify_one();
    let outcome = running.await.unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "Text(block)",
            "InputAudio",
            "BotStartedSpeaking",
            "on_interruption",
            "BotStoppedSpeaking",
            "on_end",
        ]
    );
    let after: Vec<String> = recorder
        .frames_from("after", Direction::Downstream)
        .iter()
        .map(label)
        .collect();
    assert_eq!(
        after,
        // The gate pushed "block" on only after the interruption had reached
        // the next inbox: it was queued before it there, so it is dropped too.
        [
            "Start",
            "InputAudio",
            "BotStartedSpeaking",
            "Interruption",
            "BotStoppedSpeaking",
            "End"
        ]
    );
    assert_eq!(outcome.end_reason, "done");
    assert!(!outcome.cancelled);
}

#[tokio::test]
async fn frames_pushed_after_an_interruption_are_kept() {
    let out = run_test(
        vec![
            NamedProcessor::new("a", Passthrough),
            NamedProcessor::new("b", Passthrough),
        ],
        vec![
            FrameBody::Text("before".into()),
            FrameBody::Interruption,
            FrameBody::Text("after".into()),
        ],
    )
    .await;
    let texts: Vec<String> = out.downstream.iter().map(label).collect();
    // Nothing was queued when the interruption came: nothing is lost.
    assert!(texts.contains(&"Text(after)".to_owned()), "{texts:?}");
    assert_eq!(texts.last().map(String::as_str), Some("End"));
}

/// Records the order in which it processes frames, under a shared log.
struct Recorder {
    name: &'static str,
    log: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl Processor for Recorder {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("{}:{}", self.name, label(&frame)));
        // Let other tasks run between frames so that the stages interleave.
        tokio::task::yield_now().await;
        ctx.push(frame, direction).await;
        Ok(())
    }

    async fn on_end(&mut self, _ctx: &ProcessorContext) -> Result<(), ProcessorError> {
        self.log.lock().unwrap().push(format!("{}:End", self.name));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_drains_in_order_through_every_processor() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let stages = ["one", "two", "three"];
    let processors = stages
        .iter()
        .map(|name| {
            NamedProcessor::new(
                *name,
                Recorder {
                    name,
                    log: log.clone(),
                },
            )
        })
        .collect();
    let inputs = (0..200).map(|i| FrameBody::Text(i.to_string())).collect();
    let out = run_test(processors, inputs).await;

    let log = log.lock().unwrap().clone();
    for stage in stages {
        let mine: Vec<&String> = log
            .iter()
            .filter(|l| l.starts_with(&format!("{stage}:")))
            .collect();
        assert_eq!(mine.len(), 201, "{stage} saw every frame and End");
        for (i, entry) in mine.iter().take(200).enumerate() {
            assert_eq!(**entry, format!("{stage}:Text({i})"));
        }
        assert_eq!(*mine[200], format!("{stage}:End"));
    }
    // Each stage ends only after the one before it has ended.
    let end_at = |s: &str| log.iter().position(|l| *l == format!("{s}:End")).unwrap();
    assert!(end_at("one") < end_at("two") && end_at("two") < end_at("three"));
    assert_eq!(out.downstream.len(), 202, "Start, 200 texts, End");
    assert_eq!(out.downstream_names().last(), Some(&"End"));
}

/// Pushes `count` text frames from a child task, counting completed pushes.
struct Producer {
    count: usize,
    pushed: Arc<AtomicUsize>,
}

#[async_trait]
impl Processor for Producer {
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
        _start: &voxpipe::frame::StartFrame,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        let ctx = ctx.clone();
        let count = self.count;
        let pushed = self.pushed.clone();
        tokio::spawn(async move {
            for i in 0..count {
                ctx.push_downstream(FrameBody::Text(i.to_string())).await;
                pushed.fetch_add(1, Ordering::SeqCst);
            }
        });
        Ok(())
    }
}

#[tokio::test]
async fn a_slow_processor_applies_backpressure() {
    let pushed = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    let blocked = Arc::new(Notify::new());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let capacity = 16;
    let mut params = PipelineParams::new("s", 16_000);
    params.queue_capacity = capacity;
    let task = PipelineTask::new(
        vec![
            NamedProcessor::new(
                "producer",
                Producer {
                    count: 10_000,
                    pushed: pushed.clone(),
                },
            ),
            NamedProcessor::new(
                "gate",
                Gate {
                    release: release.clone(),
                    blocked: blocked.clone(),
                    seen: seen.clone(),
                },
            ),
        ],
        params,
    );
    let handle = task.handle();
    let running = tokio::spawn(task.run());
    // The gate blocks on this frame; everything the producer pushes queues.
    handle.queue_frame(FrameBody::Text("block".into())).await;
    blocked.notified().await;
    let mut last = usize::MAX;
    while pushed.load(Ordering::SeqCst) != last {
        last = pushed.load(Ordering::SeqCst);
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
    }
    assert!(
        last <= capacity + 1,
        "the producer got {last} frames out past a full lane of {capacity}"
    );
    release.notify_one();
    while pushed.load(Ordering::SeqCst) < 10_000 {
        tokio::task::yield_now().await;
    }
    handle.end("done").await;
    running.await.unwrap();
    // The blocking frame, every produced frame, and the end hook.
    assert_eq!(seen.lock().unwrap().len(), 1 + 10_000 + 1);
}

struct Failing {
    fatal_on: &'static str,
}

#[async_trait]
impl Processor for Failing {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        if let FrameBody::Text(t) = &frame.body {
            if t == self.fatal_on {
                return Err(ProcessorError::fatal("the service is gone").with_status(401));
            }
            if t == "oops" {
                return Err(ProcessorError::recoverable("this one frame failed"));
            }
        }
        ctx.push(frame, direction).await;
        Ok(())
    }
}

#[tokio::test]
async fn a_recoverable_error_goes_upstream_and_the_session_goes_on() {
    let out = run_test(
        vec![NamedProcessor::new("f", Failing { fatal_on: "never" })],
        vec![
            FrameBody::Text("oops".into()),
            FrameBody::Text("fine".into()),
        ],
    )
    .await;
    let FrameBody::Error(error) = &out.upstream[0].body else {
        panic!("expected an error upstream, got {:?}", out.upstream_names());
    };
    assert_eq!(&*error.processor, "f");
    assert!(!error.fatal);
    assert!(error.message.contains("this one frame failed"));
    assert_eq!(out.downstream_names(), ["Start", "Text", "End"]);
    assert!(out.outcome.fatal_error.is_none());
}

#[tokio::test]
async fn a_fatal_error_cancels_the_session() {
    let recorder = RecordingObserver::new();
    let mut params = PipelineParams::new("s", 16_000);
    params.observers.push(recorder.clone());
    let task = PipelineTask::new(
        vec![
            NamedProcessor::new("f", Failing { fatal_on: "die" }),
            NamedProcessor::new("after", Passthrough),
        ],
        params,
    );
    let handle = task.handle();
    let running = tokio::spawn(task.run());
    handle.queue_frame(FrameBody::Text("die".into())).await;
    // No End is ever queued: the error alone must end the session.
    let outcome = running.await.unwrap();
    assert!(outcome.cancelled);
    let error = outcome.fatal_error.expect("fatal error recorded");
    assert_eq!(error.status, Some(401));
    assert!(outcome.end_reason.contains("fatal error in f"));
    let names: Vec<_> = recorder
        .frames_from("after", Direction::Downstream)
        .iter()
        .map(Frame::name)
        .collect();
    assert_eq!(names.last(), Some(&"Cancel"));
    assert!(!names.contains(&"Text"));
}

#[tokio::test]
async fn cancel_stops_every_processor_without_draining() {
    let release = Arc::new(Notify::new());
    let blocked = Arc::new(Notify::new());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let task = PipelineTask::new(
        vec![
            NamedProcessor::new(
                "gate",
                Gate {
                    release: release.clone(),
                    blocked: blocked.clone(),
                    seen: seen.clone(),
                },
            ),
            NamedProcessor::new("after", Passthrough),
        ],
        PipelineParams::new("s", 16_000),
    );
    let handle = task.handle();
    let running = tokio::spawn(task.run());
    handle.queue_frame(FrameBody::Text("block".into())).await;
    blocked.notified().await;
    for i in 0..10 {
        handle.queue_frame(FrameBody::Text(i.to_string())).await;
    }
    handle.cancel("hangup");
    release.notify_one();
    let outcome = running.await.unwrap();
    assert!(outcome.cancelled);
    assert_eq!(outcome.end_reason, "hangup");
    assert_eq!(*seen.lock().unwrap(), ["Text(block)"]);
}

#[tokio::test(start_paused = true)]
async fn observers_see_every_push_of_a_frame_along_the_chain() {
    let recorder = RecordingObserver::new();
    let mut params = PipelineParams::new("s", 16_000);
    params.clock = SessionClock::wall();
    params.observers.push(recorder.clone());
    let task = PipelineTask::new(
        vec![
            NamedProcessor::new("a", Passthrough),
            NamedProcessor::new("b", Passthrough),
        ],
        params,
    );
    let handle = task.handle();
    let running = tokio::spawn(task.run());
    tokio::time::advance(Duration::from_millis(100)).await;
    handle.queue_frame(FrameBody::Text("x".into())).await;
    handle.end("done").await;
    running.await.unwrap();
    let texts: Vec<String> = recorder
        .pushes()
        .into_iter()
        .filter(|(_, _, f)| matches!(f.body, FrameBody::Text(_)))
        .map(|(from, _, _)| from)
        .collect();
    assert_eq!(texts, ["pipeline", "source", "a", "b"]);
}

/// Asks for an interruption when it sees a text.
struct Interrupter;

#[async_trait]
impl Processor for Interrupter {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        if let FrameBody::Text(_) = frame.body {
            ctx.request_interruption().await;
        }
        ctx.push(frame, direction).await;
        Ok(())
    }
}

#[tokio::test]
async fn interruption_requests_run_through_the_chain_only_when_allowed() {
    for allowed in [true, false] {
        let recorder = RecordingObserver::new();
        let mut params = PipelineParams::new("s", 16_000);
        params.allow_interruptions = allowed;
        params.observers.push(recorder.clone());
        let task = PipelineTask::new(
            vec![
                NamedProcessor::new("interrupter", Interrupter),
                NamedProcessor::new("after", Passthrough),
            ],
            params,
        );
        let handle = task.handle();
        let running = tokio::spawn(task.run());
        handle
            .queue_frame(FrameBody::Text("stop talking".into()))
            .await;
        // Once the text has gone on, the request is in the source's upstream
        // lane, which the source serves before the End queued next.
        while !recorder
            .frames_from("interrupter", Direction::Downstream)
            .iter()
            .any(|f| matches!(f.body, FrameBody::Text(_)))
        {
            tokio::task::yield_now().await;
        }
        handle.end("done").await;
        running.await.unwrap();
        let reached_the_end = recorder
            .frames_from("after", Direction::Downstream)
            .iter()
            .any(|f| matches!(f.body, FrameBody::Interruption));
        assert_eq!(reached_the_end, allowed);
    }
}
