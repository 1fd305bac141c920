//! [`PipelineTask`]: builds the chain, runs its processors (all in the one
//! task that runs the pipeline), and reports how the session ended.

use std::sync::{Arc, Mutex, OnceLock};

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt as _;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::sync::oneshot;

use super::processor::Processor;
use crate::frame::{Direction, ErrorFrame, Frame, FrameBody, MetricsData, StartFrame};
use crate::metrics::LatencyHistogram;

use super::clock::SessionClock;
use super::edges::{BranchOutlets, Ends, Outlet, Sink, Source};
use super::link::{InFlight, Mailbox, inbox};
use super::local_tasks::{LocalTaskRunner, local_tasks, panic_message};
use super::observer::Observer;
use super::outcome::PipelineOutcome;
use super::processor_context::{Outcome, ProcessorContext, Shared};
use super::resources::SessionResources;
use super::runner::{RunOptions, run_processor};

/// Default room in each processor's bounded lane: 64 frames, about 1.3 s of
/// 20 ms audio.
pub const DEFAULT_QUEUE_CAPACITY: usize = 64;

/// How to run a pipeline.
#[derive(Clone)]
pub struct PipelineParams {
    /// The session's id.
    pub session_id: Arc<str>,
    /// The pipeline's internal sample rate.
    pub sample_rate: u32,
    /// Whether the user may interrupt the bot.
    pub allow_interruptions: bool,
    /// The session clock.
    pub clock: SessionClock,
    /// Observers of every push.
    pub observers: Vec<Arc<dyn Observer>>,
    /// Room in each processor's bounded lane.
    pub queue_capacity: usize,
    /// Whether to time `process` calls (one in eight) for processing-time
    /// metrics.
    pub measure: bool,
    /// Objects the session's processors share, reachable from their
    /// context ([`ProcessorContext::resources`](super::ProcessorContext::resources)).
    pub resources: SessionResources,
}

impl PipelineParams {
    /// Parameters with defaults: a wall clock, no observers, measuring on.
    pub fn new(session_id: impl Into<Arc<str>>, sample_rate: u32) -> Self {
        PipelineParams {
            session_id: session_id.into(),
            sample_rate,
            allow_interruptions: true,
            clock: SessionClock::wall(),
            observers: Vec::new(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            measure: true,
            resources: SessionResources::new(),
        }
    }
}

/// A named processor, as the pipeline runs it.
pub struct NamedProcessor {
    /// Its name in logs and metrics, unique in the pipeline.
    pub name: String,
    /// The processor.
    pub processor: Box<dyn Processor>,
}

impl NamedProcessor {
    /// Pairs a name with a processor.
    pub fn new(name: impl Into<String>, processor: impl Processor + 'static) -> Self {
        NamedProcessor {
            name: name.into(),
            processor: Box::new(processor),
        }
    }
}

/// A handle to a running pipeline: inject frames, end or cancel it.
#[derive(Clone)]
pub struct PipelineHandle {
    /// Every inbox, source first, sink last.
    mailboxes: Vec<Mailbox>,
    shared: Arc<Shared>,
}

impl PipelineHandle {
    /// Waits until no frame is queued or being processed anywhere in the
    /// pipeline, as [`ProcessorContext::wait_idle`] does: on an audio clock
    /// only (on a wall clock nothing is tracked and it returns at once).
    /// A test asserting what a processor did not push waits on this, since
    /// frames it holds leave no trace to wait for.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn wait_idle(&self) {
        if let Some(in_flight) = &self.shared.in_flight {
            in_flight.wait_idle().await;
        }
    }

    /// Queues a frame at the head of the chain, going downstream.
    pub async fn queue_frame(&self, frame: impl Into<Frame>) {
        self.queue(frame.into(), Direction::Downstream).await;
    }

    /// Queues a frame at the head (downstream) or the tail (upstream).
    pub(crate) async fn queue(&self, frame: Frame, direction: Direction) {
        self.shared.notify_observers("pipeline", &frame, direction);
        let end = match direction {
            Direction::Downstream => self.mailboxes.first(),
            Direction::Upstream => self.mailboxes.last(),
        };
        if let Some(mailbox) = end
            && mailbox.send(frame, direction).await.is_err()
        {
            tracing::debug!("frame queued after the pipeline stopped");
        }
    }

    /// Ends the session gracefully: queued work drains first.
    pub async fn end(&self, reason: impl Into<String>) {
        self.queue_frame(FrameBody::End {
            reason: reason.into(),
        })
        .await;
    }

    /// Cancels the session: every processor stops at once.
    pub fn cancel(&self, reason: &str) {
        self.shared.cancel_all(reason);
    }
}

/// A pipeline ready to run.
pub struct PipelineTask {
    processors: Vec<NamedProcessor>,
    measure: bool,
    shared: Arc<Shared>,
    inboxes: Vec<super::link::Inbox>,
    mailboxes: Vec<Mailbox>,
    ends: Ends,
    local_tasks: LocalTaskRunner,
}

impl PipelineTask {
    /// Links `processors` in order between the pipeline's source and sink.
    pub fn new(processors: Vec<NamedProcessor>, params: PipelineParams) -> Self {
        let (local_tasks, runner) = local_tasks();
        let shared = Arc::new(Shared {
            session_id: Arc::clone(&params.session_id),
            clock: params.clock.clone(),
            observers: params.observers.clone(),
            in_flight: params
                .clock
                .is_audio()
                .then(|| Arc::new(InFlight::default())),
            mailboxes: OnceLock::new(),
            outcome: Arc::new(Mutex::new(Outcome::default())),
            resources: params.resources.clone(),
            local_tasks,
        });
        let start = StartFrame {
            sample_rate: params.sample_rate,
            allow_interruptions: params.allow_interruptions,
            session_id: Arc::clone(&params.session_id),
        };
        Self::link(processors, &params, shared, Ends::Root, start, runner)
    }

    /// A branch of the pipeline `parent` belongs to: same session, clock,
    /// observers, in-flight count, outcome and resources; its ends lead to `outlets`.
    pub(crate) fn branch(
        processors: Vec<NamedProcessor>,
        parent: &ProcessorContext,
        start: &StartFrame,
        outlets: BranchOutlets,
    ) -> Self {
        let parent = parent.shared();
        let (local_tasks, runner) = local_tasks();
        let shared = Arc::new(Shared {
            session_id: Arc::clone(&parent.session_id),
            clock: parent.clock.clone(),
            observers: parent.observers.clone(),
            in_flight: parent.in_flight.clone(),
            mailboxes: OnceLock::new(),
            outcome: Arc::clone(&parent.outcome),
            resources: parent.resources.clone(),
            local_tasks,
        });
        let params = PipelineParams::new(Arc::clone(&start.session_id), start.sample_rate);
        Self::link(
            processors,
            &params,
            shared,
            Ends::Branch(outlets),
            start.clone(),
            runner,
        )
    }

    fn link(
        processors: Vec<NamedProcessor>,
        params: &PipelineParams,
        shared: Arc<Shared>,
        ends: Ends,
        start: StartFrame,
        local_tasks: LocalTaskRunner,
    ) -> Self {
        // Source, processors, sink.
        let (mailboxes, inboxes): (Vec<_>, Vec<_>) = (0..processors.len() + 2)
            .map(|_| inbox(params.queue_capacity, shared.in_flight.as_ref()))
            .unzip();
        let _already_set = shared.mailboxes.set(mailboxes.clone());
        // Start is queued first, before anything a handle can queue, so that
        // every processor sees it before any other frame.
        let start = Frame::new(FrameBody::Start(start));
        shared.notify_observers("pipeline", &start, Direction::Downstream);
        if mailboxes[0]
            .send_system(start, Direction::Downstream)
            .is_err()
        {
            tracing::error!("pipeline source closed before start");
        }
        PipelineTask {
            processors,
            measure: params.measure,
            shared,
            inboxes,
            mailboxes,
            ends,
            local_tasks,
        }
    }

    /// A handle to the pipeline, usable before and while it runs.
    pub fn handle(&self) -> PipelineHandle {
        PipelineHandle {
            mailboxes: self.mailboxes.clone(),
            shared: Arc::clone(&self.shared),
        }
    }

    /// Runs every processor to its end and reports the outcome. Returns when
    /// every processor has stopped.
    pub async fn run(self) -> PipelineOutcome {
        let shared = Arc::clone(&self.shared);
        let names = self.run_processors().await;
        let outcome = std::mem::take(&mut *shared.outcome());
        let outcome = PipelineOutcome {
            end_reason: outcome.end_reason.unwrap_or_else(|| "stopped".to_owned()),
            cancelled: outcome.cancelled,
            fatal_error: outcome.fatal_error,
            metrics: metrics_of(&names, outcome.processing, &outcome.transit),
        };
        let at = shared.clock.now();
        for observer in &shared.observers {
            observer.on_pipeline_end(&outcome, at);
        }
        outcome
    }

    /// Runs a branch to its end; what it learns goes into the parent's
    /// outcome.
    pub(crate) async fn run_branch(self) {
        self.run_processors().await;
    }

    /// Runs every processor, all in the calling task, and waits for all of
    /// them; gives back the processors' names in chain order.
    async fn run_processors(self) -> Vec<Arc<str>> {
        let PipelineTask {
            processors,
            measure,
            shared,
            inboxes,
            mailboxes,
            ends,
            local_tasks,
        } = self;
        let root = matches!(ends, Ends::Root);
        let (up_outlet, down_outlet) = match ends {
            Ends::Root => (None, None),
            Ends::Branch(outlets) => (Some(outlets.upstream), Some(outlets.downstream)),
        };
        let failure_outlet = up_outlet.clone();
        let edge = RunOptions {
            measure: false,
            outlive_end: false,
        };
        let mut chain: Vec<(Arc<str>, Box<dyn Processor>, RunOptions)> =
            Vec::with_capacity(processors.len() + 2);
        let source_options = RunOptions {
            outlive_end: true,
            ..edge
        };
        chain.push((
            "source".into(),
            Box::new(Source::new(up_outlet)),
            source_options,
        ));
        for p in processors {
            let options = RunOptions {
                measure,
                outlive_end: false,
            };
            chain.push((p.name.into(), p.processor, options));
        }
        chain.push(("sink".into(), Box::new(Sink::new(down_outlet)), edge));
        let chain_len = chain.len();

        // The source hears errors and requests until everything after it
        // has stopped, then drains what is queued and stops.
        let (retire_source, source_retired) = oneshot::channel();
        let mut source_retired = Some(source_retired);
        let mut source = None;
        let mut chain_rest = FuturesUnordered::new();
        let mut names = Vec::with_capacity(chain.len());
        for (index, ((name, processor, options), mut inbox)) in
            chain.into_iter().zip(inboxes).enumerate()
        {
            let upstream = index.checked_sub(1).map(|i| mailboxes[i].clone());
            let downstream = mailboxes.get(index + 1).cloned();
            let ctx =
                ProcessorContext::new(Arc::clone(&name), upstream, downstream, Arc::clone(&shared));
            // The last processor (the source, with none) of a session's
            // pipeline; a branch's sink hands frames to its parent instead.
            let ctx = if root && index + 2 == chain_len {
                ctx.before_sink()
            } else {
                ctx
            };
            // Info level: a disabled span would also hide its parent (the
            // session's span, with the call id) from the processor's logs.
            // `processor`, not `name`: JSON logs already give each span a
            // `name` key (the span's own).
            let span = tracing::info_span!("processor", processor = %name);
            names.push(name);
            if let Some(retired) = source_retired.take() {
                inbox.retire_on(retired);
            }
            let running = contained(tracing::Instrument::instrument(
                run_processor(processor, inbox, ctx, options),
                span,
            ));
            match source {
                None => source = Some(running),
                Some(_) => chain_rest.push(running),
            }
        }
        drop(mailboxes);

        // Every processor runs in this one task (see the module docs): a
        // frame crosses the chain in one wake-up of the session's task
        // instead of one per processor.
        let rest = async {
            while let Some(finished) = chain_rest.next().await {
                if let Err(panicked) = finished {
                    // A panicking processor must not leave the others running.
                    tracing::error!(error = %panicked, "a processor task failed");
                    let frame = ErrorFrame {
                        processor: "pipeline".into(),
                        message: format!("a processor task failed: {panicked}"),
                        fatal: true,
                        provider: None,
                        status: None,
                    };
                    shared.outcome().fatal_error.get_or_insert(frame.clone());
                    shared.cancel_all("processor task failed");
                    if let Some(parent) = &failure_outlet {
                        // The parent session must end too.
                        let error = Outlet {
                            frame: Frame::new(FrameBody::Error(frame)),
                            _token: None,
                        };
                        if parent.send(error).is_err() {
                            tracing::debug!("parent of a failed branch has stopped");
                        }
                    }
                }
            }
            // The rest has stopped: nothing more can reach the source but
            // what is already queued.
            let _source_gone = retire_source.send(());
        };
        let source = async {
            if let Some(source) = source
                && let Err(panicked) = source.await
            {
                tracing::error!(error = %panicked, "the pipeline source failed");
            }
        };
        // What the processors started beside themselves runs here too, and
        // is dropped once they have all stopped.
        tokio::select! {
            biased;
            ((), ()) = async { tokio::join!(rest, source) } => {}
            () = local_tasks.run() => {}
        }
        names
    }
}

/// A processor's run that panicked, with the panic's message.
#[derive(Debug)]
struct Panicked(String);

impl std::fmt::Display for Panicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "panicked: {}", self.0)
    }
}

/// Runs `run` to its end, turning a panic into an error so that it stops
/// this processor and not the session's task.
async fn contained(run: impl Future<Output = ()>) -> Result<(), Panicked> {
    AssertUnwindSafe(run)
        .catch_unwind()
        .await
        .map_err(|payload| Panicked(panic_message(payload.as_ref())))
}

fn metrics_of(
    order: &[Arc<str>],
    mut processing: Vec<(Arc<str>, u64, LatencyHistogram)>,
    transit: &LatencyHistogram,
) -> Vec<MetricsData> {
    let micros = |h: &LatencyHistogram, q| {
        h.quantile(q)
            .map(|d| d.as_nanos() as f64 / 1000.0)
            .unwrap_or(0.0)
    };
    // Processors of parallel branches are not in `order`: they go last.
    processing.sort_by_key(|(name, ..)| order.iter().position(|n| n == name).unwrap_or(usize::MAX));
    let mut metrics: Vec<MetricsData> = processing
        .iter()
        .map(|(name, frames, h)| MetricsData::ProcessingTime {
            processor: name.to_string(),
            frames: *frames,
            p50_us: micros(h, 0.5),
            p99_us: micros(h, 0.99),
        })
        .collect();
    if transit.count() > 0 {
        metrics.push(MetricsData::Transit {
            frames: transit.count(),
            p50_us: micros(transit, 0.5),
            p99_us: micros(transit, 0.99),
        });
    }
    metrics
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;

    use super::*;
    use crate::pipeline::ProcessorError;
    use crate::processors::Passthrough;
    use crate::testing::run_test;

    /// Panics on the first text frame it is given.
    struct Panicker;

    #[async_trait]
    impl Processor for Panicker {
        async fn process(
            &mut self,
            frame: Frame,
            direction: Direction,
            ctx: &ProcessorContext,
        ) -> Result<(), ProcessorError> {
            if let FrameBody::Text(text) = &frame.body {
                panic!("a processor that panics on {text}");
            }
            ctx.push(frame, direction).await;
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_panicking_processor_cancels_its_session_and_nothing_else() {
        let out = run_test(
            vec![
                NamedProcessor::new("before", Passthrough),
                NamedProcessor::new("panicker", Panicker),
                NamedProcessor::new("after", Passthrough),
            ],
            vec![FrameBody::Text("this".into())],
        )
        .await;
        assert!(out.outcome.cancelled);
        let error = out.outcome.fatal_error.expect("a fatal error");
        assert_eq!(&*error.processor, "pipeline");
        assert!(
            error.message.contains("a processor that panics on this"),
            "{}",
            error.message
        );
        // The processors after it were cancelled, not left waiting.
        assert_eq!(out.downstream.last().map(Frame::name), Some("Cancel"));
    }

    #[tokio::test]
    async fn inbound_audio_is_timed_at_the_tail_and_the_end_still_stops_the_sink() {
        let audio = |i: u64| {
            FrameBody::InputAudio(crate::frame::AudioFrame::from_samples(
                &[0; 320],
                16_000,
                1,
                std::time::Duration::from_millis(20 * i),
            ))
        };
        let out = run_test(
            vec![
                NamedProcessor::new("first", Passthrough),
                NamedProcessor::new("last", Passthrough),
            ],
            vec![audio(0), audio(1), FrameBody::Text("hi".into()), audio(2)],
        )
        .await;
        // Observers still see every push (inbound audio is a system frame,
        // served before the text), up to the End that stopped the sink
        // (`run_test` returned: the pipeline is over).
        assert_eq!(
            out.downstream_names(),
            [
                "Start",
                "InputAudio",
                "InputAudio",
                "InputAudio",
                "Text",
                "End"
            ]
        );
        assert!(!out.outcome.cancelled);
        // Every inbound audio frame that crossed the chain is timed.
        let transit = out.outcome.metrics.iter().find_map(|m| match m {
            MetricsData::Transit { frames, .. } => Some(*frames),
            _ => None,
        });
        assert_eq!(transit, Some(3));
    }

    #[tokio::test]
    async fn with_no_processors_the_source_swallows_for_the_sink() {
        let audio = FrameBody::InputAudio(crate::frame::AudioFrame::from_samples(
            &[0; 320],
            16_000,
            1,
            std::time::Duration::ZERO,
        ));
        let out = run_test(Vec::new(), vec![audio, FrameBody::Interruption]).await;
        assert!(!out.outcome.cancelled);
        let transit = out.outcome.metrics.iter().find_map(|m| match m {
            MetricsData::Transit { frames, .. } => Some(*frames),
            _ => None,
        });
        assert_eq!(transit, Some(1));
    }
}
