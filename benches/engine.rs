//! The engine's own cost: frames through a chain of 10 passthrough
//! processors.
//!
//! - `burst/10_hops`: 10,000 audio frames pushed as fast as the chain takes
//!   them; criterion's time per iteration / 10,000 is the time per frame
//!   through the chain, and per hop divided by 10 again.
//! - `one_at_a_time/10_hops`: one frame in, wait until it comes out, repeat;
//!   the median is the latency through 10 hops. The p50 and p99 of single
//!   frames are printed after the criterion groups.
//!
//! Run with: `cargo bench --bench engine`

#![allow(clippy::expect_used, clippy::print_stderr)]

use std::time::{Duration, Instant};

use async_trait::async_trait;
use criterion::{Criterion, Throughput};
use tokio::sync::mpsc;
use voxpipe::frame::{AudioFrame, Direction, Frame, FrameBody};
use voxpipe::metrics::LatencyHistogram;
use voxpipe::pipeline::{NamedProcessor, PipelineHandle, PipelineParams, PipelineTask};
use voxpipe::pipeline::{Processor, ProcessorContext, ProcessorError};
use voxpipe::processors::Passthrough;

const HOPS: usize = 10;
const BURST: usize = 10_000;

/// The last processor: reports each audio frame's arrival.
struct Arrivals(mpsc::UnboundedSender<Instant>);

#[async_trait]
impl Processor for Arrivals {
    async fn process(
        &mut self,
        frame: Frame,
        _direction: Direction,
        _ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        if let FrameBody::OutputAudio(_) = frame.body {
            // The bench stops listening only when it is done.
            let _done = self.0.send(Instant::now());
        }
        Ok(())
    }
}

fn chain() -> (
    PipelineTask,
    PipelineHandle,
    mpsc::UnboundedReceiver<Instant>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut processors: Vec<NamedProcessor> = (0..HOPS)
        .map(|i| NamedProcessor::new(format!("p{i}"), Passthrough))
        .collect();
    processors.push(NamedProcessor::new("arrivals", Arrivals(tx)));
    let mut params = PipelineParams::new("bench", 16_000);
    params.measure = false;
    let task = PipelineTask::new(processors, params);
    let handle = task.handle();
    (task, handle, rx)
}

fn audio() -> FrameBody {
    FrameBody::OutputAudio(AudioFrame::from_samples(
        &[0; 320],
        16_000,
        1,
        Duration::ZERO,
    ))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn burst(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("burst");
    group.throughput(Throughput::Elements(BURST as u64));
    group.sample_size(20);
    group.bench_function("10_hops", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (task, handle, mut rx) = chain();
                    let running = tokio::spawn(task.run());
                    let body = audio();
                    let started = Instant::now();
                    let feeder = tokio::spawn({
                        let handle = handle.clone();
                        async move {
                            for _ in 0..BURST {
                                handle.queue_frame(body.clone()).await;
                            }
                        }
                    });
                    let mut last = started;
                    for _ in 0..BURST {
                        last = rx.recv().await.expect("frame arrives");
                    }
                    total += last - started;
                    feeder.await.expect("feeder");
                    handle.end("bench").await;
                    running.await.expect("pipeline");
                }
                total
            })
        });
    });
    group.finish();
}

fn one_at_a_time(c: &mut Criterion) {
    let rt = runtime();
    c.bench_function("one_at_a_time/10_hops", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let (task, handle, mut rx) = chain();
                let running = tokio::spawn(task.run());
                let body = audio();
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let sent = Instant::now();
                    handle.queue_frame(body.clone()).await;
                    total += rx.recv().await.expect("frame arrives") - sent;
                }
                handle.end("bench").await;
                running.await.expect("pipeline");
                total
            })
        });
    });
}

/// p50 and p99 of single frames through the chain, printed.
fn latency_percentiles() {
    let rt = runtime();
    let histogram = rt.block_on(async {
        let (task, handle, mut rx) = chain();
        let running = tokio::spawn(task.run());
        let body = audio();
        let mut histogram = LatencyHistogram::new();
        for i in 0..22_000 {
            let sent = Instant::now();
            handle.queue_frame(body.clone()).await;
            let arrived = rx.recv().await.expect("frame arrives");
            if i >= 2_000 {
                histogram.record(arrived - sent);
            }
        }
        handle.end("bench").await;
        running.await.expect("pipeline");
        histogram
    });
    let q = |q| {
        histogram
            .quantile(q)
            .map_or(0.0, |d| d.as_nanos() as f64 / 1000.0)
    };
    eprintln!(
        "one frame at a time through {HOPS} hops, {} frames: p50 {:.1} µs, p99 {:.1} µs",
        histogram.count(),
        q(0.5),
        q(0.99)
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    burst(&mut c);
    one_at_a_time(&mut c);
    latency_percentiles();
    c.final_summary();
}
