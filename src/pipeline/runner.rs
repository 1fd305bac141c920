//! The task that runs one processor: takes frames from its inbox in lane
//! order, drops what an interruption made stale, calls the processor, and
//! turns its errors into error frames.

use std::time::Instant;

use super::processor::{Processor, ProcessorError, Severity};
use crate::frame::{Direction, Frame, FrameBody};
use crate::metrics::LatencyHistogram;

use super::link::{Inbox, Queued};
use super::processor_context::ProcessorContext;

/// About one `process` call in this many is timed: percentiles need a
/// sample, not every call, and two clock reads per frame per processor were
/// about 2% of a loaded Twilio server (`perf`, 500 parrot calls).
const TIMED_ONE_IN: u64 = 8;

/// Which calls are timed: drawn at random (xorshift), because every n-th
/// call would keep landing on the same step of work that repeats with the
/// frames (a VAD chunk of 256 samples in frames of 320 repeats every 4).
struct TimingSample(u64);

impl TimingSample {
    fn new() -> Self {
        // Xorshift's state must not be zero.
        TimingSample(crate::random::random_u64() | 1)
    }

    fn next(&mut self) -> bool {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.is_multiple_of(TIMED_ONE_IN)
    }
}

/// Whether the task goes on after a frame.
enum Next {
    Continue,
    Stop,
}

/// How the runner treats one processor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunOptions {
    /// Time `process` calls (a sample of them) for processing-time metrics.
    pub(crate) measure: bool,
    /// Keep running after `End` (the pipeline's source, which must still
    /// hear errors while the rest drains) until the inbox retires.
    pub(crate) outlive_end: bool,
}

/// Runs `processor` until it has handled `End` (unless it outlives it) or
/// `Cancel`, or its inbox is closed or retired.
pub(crate) async fn run_processor(
    mut processor: Box<dyn Processor>,
    mut inbox: Inbox,
    ctx: ProcessorContext,
    options: RunOptions,
) {
    let RunOptions {
        measure,
        outlive_end,
    } = options;
    let mut processing = LatencyHistogram::new();
    let mut frames: u64 = 0;
    let mut sample = TimingSample::new();
    // Data and control frames pushed before the last interruption are stale.
    let mut stale_below: u64 = 0;
    while let Some(Queued {
        seq,
        frame,
        direction,
        token,
    }) = inbox.recv().await
    {
        if seq < stale_below && frame.body.dropped_by_interruption() {
            tracing::trace!(
                processor = ctx.name(),
                frame = frame.name(),
                "dropped by interruption"
            );
            continue;
        }
        if matches!(frame.body, FrameBody::Interruption) {
            stale_below = seq;
        }
        // The first call is always timed, so a processor that saw a few
        // frames still reports a time rather than none.
        let started = (measure && (frames == 0 || sample.next())).then(Instant::now);
        frames += 1;
        let next = handle(&mut *processor, frame, direction, &ctx, outlive_end).await;
        if let Some(started) = started {
            processing.record(started.elapsed());
        }
        // Released only now, after every frame this one caused was queued.
        drop(token);
        if let Next::Stop = next {
            break;
        }
    }
    inbox.close();
    if measure && frames > 0 {
        ctx.shared()
            .outcome()
            .processing
            .push((ctx.name().into(), frames, processing));
    }
}

async fn handle(
    processor: &mut dyn Processor,
    frame: Frame,
    direction: Direction,
    ctx: &ProcessorContext,
    outlive_end: bool,
) -> Next {
    match &frame.body {
        FrameBody::Start(start) => {
            if let Err(err) = processor.on_start(start, ctx).await {
                // A processor that cannot start cannot run the session.
                report(ProcessorError::fatal(err), ctx).await;
            }
            ctx.push(frame, direction).await;
            Next::Continue
        }
        FrameBody::Interruption => {
            processor.on_interruption(ctx).await;
            ctx.push(frame, direction).await;
            Next::Continue
        }
        FrameBody::End { reason } if direction == Direction::Downstream => {
            note_end(ctx, reason);
            if let Err(err) = processor.on_end(ctx).await {
                report(err, ctx).await;
            }
            ctx.push(frame, direction).await;
            if outlive_end {
                Next::Continue
            } else {
                Next::Stop
            }
        }
        FrameBody::Cancel { reason } => {
            note_end(ctx, reason);
            processor.on_cancel(ctx).await;
            ctx.push(frame, direction).await;
            Next::Stop
        }
        _ => {
            if let Err(err) = processor.process(frame, direction, ctx).await {
                report(err, ctx).await;
            }
            Next::Continue
        }
    }
}

fn note_end(ctx: &ProcessorContext, reason: &str) {
    ctx.shared()
        .outcome()
        .end_reason
        .get_or_insert_with(|| reason.to_owned());
}

async fn report(err: ProcessorError, ctx: &ProcessorContext) {
    match err.severity() {
        Severity::Fatal => {
            tracing::error!(processor = ctx.name(), error = %err, "fatal processor error")
        }
        Severity::Recoverable => {
            tracing::warn!(processor = ctx.name(), error = %err, "processor error")
        }
    }
    ctx.push_upstream(FrameBody::Error(err.to_frame(ctx.name())))
        .await;
}
