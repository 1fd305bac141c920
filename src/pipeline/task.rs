//! [`PipelineTask`]: builds the chain, runs a task per processor, and reports
//! how the session ended.

use std::sync::{Arc, Mutex, OnceLock};

use tokio::task::JoinSet;

use crate::frame::{Direction, ErrorFrame, Frame, FrameBody, MetricsData, StartFrame};
use crate::metrics::LatencyHistogram;
use crate::processor::Processor;

use super::clock::SessionClock;
use super::context::{Outcome, ProcessorContext, Shared};
use super::edges::{Sink, Source};
use super::link::{InFlight, Mailbox, inbox};
use super::observer::Observer;
use super::runner::run_processor;

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
    /// Whether to time every `process` call for processing-time metrics.
    pub measure: bool,
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

/// How a pipeline ended.
#[derive(Debug, Clone)]
pub struct PipelineOutcome {
    /// Why it ended: the reason of the first `End` or `Cancel`.
    pub end_reason: String,
    /// True when it was cancelled rather than drained.
    pub cancelled: bool,
    /// The fatal error that ended it, if one did.
    pub fatal_error: Option<ErrorFrame>,
    /// Per-processor processing time, then transit time.
    pub metrics: Vec<MetricsData>,
}

/// A handle to a running pipeline: inject frames, end or cancel it.
#[derive(Clone)]
pub struct PipelineHandle {
    head: Mailbox,
    shared: Arc<Shared>,
}

impl PipelineHandle {
    /// Queues a frame at the head of the chain, going downstream.
    pub async fn queue_frame(&self, frame: impl Into<Frame>) {
        let frame = frame.into();
        self.shared
            .notify_observers("pipeline", &frame, Direction::Downstream);
        if self.head.send(frame, Direction::Downstream).await.is_err() {
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
    params: PipelineParams,
    shared: Arc<Shared>,
    inboxes: Vec<super::link::Inbox>,
    mailboxes: Vec<Mailbox>,
}

impl PipelineTask {
    /// Links `processors` in order between the pipeline's source and sink.
    pub fn new(processors: Vec<NamedProcessor>, params: PipelineParams) -> Self {
        let in_flight = Arc::new(InFlight::default());
        let shared = Arc::new(Shared {
            session_id: Arc::clone(&params.session_id),
            clock: params.clock.clone(),
            observers: params.observers.clone(),
            in_flight: Arc::clone(&in_flight),
            mailboxes: OnceLock::new(),
            outcome: Mutex::new(Outcome::default()),
        });
        // Source, processors, sink.
        let (mailboxes, inboxes): (Vec<_>, Vec<_>) = (0..processors.len() + 2)
            .map(|_| inbox(params.queue_capacity, &in_flight))
            .unzip();
        let _already_set = shared.mailboxes.set(mailboxes.clone());
        // Start is queued first, before anything a handle can queue, so that
        // every processor sees it before any other frame.
        let start = Frame::new(FrameBody::Start(StartFrame {
            sample_rate: params.sample_rate,
            allow_interruptions: params.allow_interruptions,
            session_id: Arc::clone(&params.session_id),
        }));
        shared.notify_observers("pipeline", &start, Direction::Downstream);
        if mailboxes[0]
            .send_system(start, Direction::Downstream)
            .is_err()
        {
            tracing::error!("pipeline source closed before start");
        }
        PipelineTask {
            processors,
            params,
            shared,
            inboxes,
            mailboxes,
        }
    }

    /// A handle to the pipeline, usable before and while it runs.
    pub fn handle(&self) -> PipelineHandle {
        PipelineHandle {
            head: self.mailboxes[0].clone(),
            shared: Arc::clone(&self.shared),
        }
    }

    /// Sends `Start`, runs every processor to its end, and reports the
    /// outcome. Returns when every processor has stopped.
    pub async fn run(self) -> PipelineOutcome {
        let PipelineTask {
            processors,
            params,
            shared,
            inboxes,
            mailboxes,
        } = self;
        let mut chain: Vec<(Arc<str>, Box<dyn Processor>, bool)> =
            Vec::with_capacity(processors.len() + 2);
        chain.push(("source".into(), Box::new(Source::default()), false));
        for p in processors {
            chain.push((p.name.into(), p.processor, params.measure));
        }
        chain.push(("sink".into(), Box::new(Sink), false));

        let mut tasks = JoinSet::new();
        let mut names = Vec::with_capacity(chain.len());
        for (index, ((name, processor, measure), inbox)) in
            chain.into_iter().zip(inboxes).enumerate()
        {
            let upstream = index.checked_sub(1).map(|i| mailboxes[i].clone());
            let downstream = mailboxes.get(index + 1).cloned();
            let ctx =
                ProcessorContext::new(Arc::clone(&name), upstream, downstream, Arc::clone(&shared));
            // Info level: a disabled span would also hide its parent (the
            // session's span, with the call id) from the processor's logs.
            // `processor`, not `name`: JSON logs already give each span a
            // `name` key (the span's own).
            let span = tracing::info_span!("processor", processor = %name);
            names.push(name);
            tasks.spawn(tracing::Instrument::instrument(
                run_processor(processor, inbox, ctx, measure),
                span,
            ));
        }

        drop(mailboxes);

        while let Some(joined) = tasks.join_next().await {
            if let Err(err) = joined {
                // A panicking processor must not leave the others running.
                tracing::error!(error = %err, "a processor task failed");
                let frame = ErrorFrame {
                    processor: "pipeline".into(),
                    message: format!("a processor task failed: {err}"),
                    fatal: true,
                    provider: None,
                    status: None,
                };
                shared.outcome().fatal_error.get_or_insert(frame);
                shared.cancel_all("processor task failed");
            }
        }

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
}

fn metrics_of(
    order: &[Arc<str>],
    mut processing: Vec<(Arc<str>, LatencyHistogram)>,
    transit: &LatencyHistogram,
) -> Vec<MetricsData> {
    let micros = |h: &LatencyHistogram, q| {
        h.quantile(q)
            .map(|d| d.as_nanos() as f64 / 1000.0)
            .unwrap_or(0.0)
    };
    processing.sort_by_key(|(name, _)| order.iter().position(|n| n == name));
    let mut metrics: Vec<MetricsData> = processing
        .iter()
        .map(|(name, h)| MetricsData::ProcessingTime {
            processor: name.to_string(),
            frames: h.count(),
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
