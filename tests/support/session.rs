//! Running pipelines in tests: a pipeline file over audio, the way
//! `voxpipe run` does ([`run_pipeline`]); one processor built from its TOML
//! ([`build`]); a live pipeline fed frame by frame whose pushes a test can
//! wait for ([`Live`]); and reading what came out.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;
use voxpipe::frame::{AudioFrame, Direction, Frame, FrameBody};
use voxpipe::pipeline::ProcessorError;
use voxpipe::pipeline::ProcessorFactory;
use voxpipe::pipeline::{EnvSource, SessionResources, SessionSetup};
use voxpipe::pipeline::{NamedProcessor, Observer, PushEvent, SessionClock};
use voxpipe::pipeline_file::parse_pipeline;
use voxpipe::session::{SessionOptions, SessionReport, run_session};
use voxpipe::testing::RecordingObserver;
use voxpipe::transport::TransportEnds;
use voxpipe::transport::file::FileInput;
use voxpipe::transport::{AudioSink, OutputTransport, Pacing};

use super::processors::registry;
use super::wait::until_notified;

/// Keeps the bot audio that left the output transport.
#[derive(Clone, Default)]
pub struct RecordingSink(pub Arc<Mutex<Vec<AudioFrame>>>);

impl AudioSink for RecordingSink {
    fn write(&mut self, audio: &AudioFrame) -> Result<(), ProcessorError> {
        self.0.lock().unwrap().push(audio.clone());
        Ok(())
    }
}

/// What a session produced.
pub struct Run {
    pub report: SessionReport,
    /// (pusher, direction, frame) in push order.
    pub pushes: Vec<(String, Direction, Frame)>,
    /// The bot audio that left.
    pub audio: Vec<AudioFrame>,
    pub resources: SessionResources,
}

impl Run {
    /// Events as `voxpipe run --events` prints them: (name, fields), one per
    /// frame id, in order.
    pub fn events(&self) -> Vec<(&'static str, Value)> {
        let mut seen = HashSet::new();
        self.pushes
            .iter()
            .filter(|(_, _, frame)| seen.insert(frame.id))
            .filter_map(|(_, _, frame)| voxpipe::events::event_of(&frame.body))
            .collect()
    }

    /// The event names, in order.
    pub fn event_names(&self) -> Vec<&'static str> {
        self.events().into_iter().map(|(name, _)| name).collect()
    }

    /// Position of the first event named `name`.
    pub fn first(&self, name: &str) -> usize {
        self.event_names()
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| panic!("no `{name}` in {:?}", self.event_names()))
    }

    /// Frames pushed by `from`, in order.
    pub fn from(&self, from: &str) -> Vec<&Frame> {
        self.pushes
            .iter()
            .filter(|(f, _, _)| f == from)
            .map(|(_, _, frame)| frame)
            .collect()
    }

    /// The bot audio that left, in seconds.
    pub fn audio_secs(&self) -> f64 {
        self.audio.iter().map(|a| a.duration().as_secs_f64()).sum()
    }

    /// Error frames, by message.
    pub fn errors(&self) -> Vec<voxpipe::frame::ErrorFrame> {
        let mut seen = HashSet::new();
        self.pushes
            .iter()
            .filter(|(_, _, f)| seen.insert(f.id))
            .filter_map(|(_, _, f)| match &f.body {
                FrameBody::Error(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }
}

/// Runs the pipeline `toml` over `samples` (16 kHz mono), on the audio
/// clock as `voxpipe run` does, with `env` as the environment.
pub async fn run_pipeline(toml: &str, samples: Vec<i16>, env: &[(&str, &str)]) -> Run {
    run_observed(toml, samples, env, Vec::new()).await
}

/// [`run_pipeline`] with more observers.
pub async fn run_observed(
    toml: &str,
    samples: Vec<i16>,
    env: &[(&str, &str)],
    observers: Vec<Arc<dyn Observer>>,
) -> Run {
    run_kept(toml, samples, env, observers, "test-session", None, false).await
}

/// [`run_observed`] as session `session_id`, the call kept in `context`'s
/// store (through the session's call writer, waited for) when given. With
/// `realtime_input` the file is read in real time: a reply played from a
/// child task (the parrot's) then reaches the output before the input that
/// follows it, however loaded the machine, where a fast read can outrun it.
pub async fn run_kept(
    toml: &str,
    samples: Vec<i16>,
    env: &[(&str, &str)],
    mut observers: Vec<Arc<dyn Observer>>,
    session_id: &str,
    context: Option<&voxpipe::agent::AgentRuntime>,
    realtime_input: bool,
) -> Run {
    let config =
        parse_pipeline(Path::new("test.toml"), toml, &registry()).unwrap_or_else(|e| panic!("{e}"));
    let rate = config.pipeline.sample_rate.hz();
    let mut setup = config.session_setup(session_id);
    setup.env = EnvSource::Fixed(Arc::new(
        env.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<HashMap<_, _>>(),
    ));
    let resources = setup.resources.clone();
    let sink = RecordingSink::default();
    let ends = TransportEnds {
        input: NamedProcessor::new(
            "transport.input",
            FileInput::new(samples, rate, realtime_input),
        ),
        output: NamedProcessor::new(
            "transport.output",
            OutputTransport::new(sink.clone(), Pacing::InboundAudio { realtime: false }),
        ),
    };
    let recorder = RecordingObserver::new();
    let memory = match context {
        Some(context) => Some(context.open_session(&setup, "file").await),
        None => None,
    };
    let report = run_session(
        &config.processors,
        ends,
        SessionOptions {
            setup,
            clock: SessionClock::audio(),
            observers: {
                // The recorder first: a frame is recorded before another
                // observer can react to it.
                observers.insert(0, recorder.clone());
                observers
            },
            memory: memory.clone(),
        },
    )
    .await
    .unwrap();
    if let Some(memory) = memory {
        let written = memory.finished(Duration::from_secs(30)).await.unwrap();
        assert!(written.unwritten.is_empty(), "{:?}", written.unwritten);
    }
    let audio = sink.0.lock().unwrap().clone();
    Run {
        report,
        pushes: recorder.pushes(),
        audio,
        resources,
    }
}

/// Calls `notify_one` on a signal the first time `from` pushes a frame
/// `matching`.
pub struct FirstPush {
    from: &'static str,
    matching: fn(&FrameBody) -> bool,
    signal: Arc<tokio::sync::Notify>,
    fired: std::sync::atomic::AtomicBool,
}

impl FirstPush {
    pub fn new(
        from: &'static str,
        matching: fn(&FrameBody) -> bool,
        signal: Arc<tokio::sync::Notify>,
    ) -> Arc<Self> {
        Arc::new(FirstPush {
            from,
            matching,
            signal,
            fired: std::sync::atomic::AtomicBool::new(false),
        })
    }
}

impl Observer for FirstPush {
    fn on_push(&self, event: &PushEvent<'_>) {
        if event.from == self.from
            && (self.matching)(&event.frame.body)
            && !self.fired.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            self.signal.notify_one();
        }
    }
}

/// A processor of type `C` built from TOML `table` for a session whose
/// environment is `env`.
pub fn build<C>(name: &str, table: &str, env: &[(&str, &str)]) -> NamedProcessor
where
    C: serde::de::DeserializeOwned + ProcessorFactory,
{
    let config: C = toml::from_str(table).unwrap_or_else(|e| panic!("{e}"));
    let mut setup = SessionSetup::new("test-session", 16_000);
    setup.env = EnvSource::Fixed(Arc::new(
        env.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<HashMap<_, _>>(),
    ));
    NamedProcessor {
        name: name.to_owned(),
        processor: config.build(&setup).unwrap_or_else(|e| panic!("{e}")),
    }
}

/// The bodies of `frames` of one kind, e.g. every `LlmText`.
pub fn texts(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .filter_map(|f| match &f.body {
            FrameBody::LlmText(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

/// The error frames among `frames`.
pub fn error_frames(frames: &[Frame]) -> Vec<voxpipe::frame::ErrorFrame> {
    frames
        .iter()
        .filter_map(|f| match &f.body {
            FrameBody::Error(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// A pipeline running on the wall clock, fed frame by frame by the test.
pub struct Live {
    pub handle: voxpipe::pipeline::PipelineHandle,
    pub recorder: Arc<RecordingObserver>,
    /// Fired after each push is recorded.
    pushed: Arc<Notify>,
    task: tokio::task::JoinHandle<voxpipe::pipeline::PipelineOutcome>,
}

/// Records each push with the recorder, then tells the waiting test.
struct Announcing {
    recorder: Arc<RecordingObserver>,
    pushed: Arc<Notify>,
}

impl Observer for Announcing {
    fn on_push(&self, event: &PushEvent<'_>) {
        self.recorder.on_push(event);
        self.pushed.notify_waiters();
    }
}

/// What a recorder saw: (pusher, direction, frame) in push order.
pub type Pushes = [(String, Direction, Frame)];

impl Live {
    pub fn start(processors: Vec<NamedProcessor>) -> Live {
        Self::start_with(processors, |_| {})
    }

    /// [`Live::start`] with the pipeline's parameters changed by `adjust`.
    pub fn start_with(
        processors: Vec<NamedProcessor>,
        adjust: impl FnOnce(&mut voxpipe::pipeline::PipelineParams),
    ) -> Live {
        let recorder = RecordingObserver::new();
        let pushed = Arc::new(Notify::new());
        let mut params = voxpipe::pipeline::PipelineParams::new("live-test", 16_000);
        adjust(&mut params);
        params.observers.push(Arc::new(Announcing {
            recorder: Arc::clone(&recorder),
            pushed: Arc::clone(&pushed),
        }));
        let task = voxpipe::pipeline::PipelineTask::new(processors, params);
        let handle = task.handle();
        Live {
            handle,
            recorder,
            pushed,
            task: tokio::spawn(task.run()),
        }
    }

    /// Waits, woken by each push, until the pushes so far satisfy `done`;
    /// panics, naming `what`, after 10 s.
    pub async fn wait_until(&self, what: &str, done: impl Fn(&Pushes) -> bool) {
        let limit = Duration::from_secs(10);
        until_notified(&self.pushed, limit, || {
            done(&self.recorder.pushes()).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("timed out waiting for {what}"));
    }

    /// Waits until some processor has pushed a frame `matching`.
    pub async fn wait_for(&self, what: &str, matching: impl Fn(&FrameBody) -> bool) {
        self.wait_until(what, |pushes| {
            pushes.iter().any(|(_, _, f)| matching(&f.body))
        })
        .await;
    }

    /// Waits until the processor `from` has pushed a frame `matching`.
    pub async fn wait_for_from(
        &self,
        from: &str,
        what: &str,
        matching: impl Fn(&FrameBody) -> bool,
    ) {
        self.wait_until(what, |pushes| {
            pushes
                .iter()
                .any(|(f, _, frame)| f == from && matching(&frame.body))
        })
        .await;
    }

    /// Ends the pipeline and returns every push.
    pub async fn finish(self) -> Vec<(String, Direction, Frame)> {
        self.handle.end("test over").await;
        self.task.await.unwrap();
        self.recorder.pushes()
    }
}

/// One of each frame id, in order.
pub fn unique(pushes: &[(String, Direction, Frame)]) -> Vec<Frame> {
    let mut seen = HashSet::new();
    pushes
        .iter()
        .filter(|(_, _, f)| seen.insert(f.id))
        .map(|(_, _, f)| f.clone())
        .collect()
}
