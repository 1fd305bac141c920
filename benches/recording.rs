//! What recording costs: CPU per call-second, with many calls recorded at
//! once in real time, and the process's memory as the calls go on.
//!
//! Run with: `cargo bench --bench recording -- [--calls 100] [--secs 20]`
//!
//! Each call is fed as a session feeds its [`Recorder`]: every 20 ms a
//! caller frame (as the transport input pushes it, through the recorder's
//! observer) and a bot frame (as the output releases it, through its
//! playback listener), 16 kHz mono; the writers write real WAV files to a
//! temporary directory. The same feeding without recorders is the baseline;
//! the difference in the process's CPU time (from `/proc/self/stat`), per
//! call-second, is recording's cost, reported as the share of one core 100
//! calls would take. RSS is sampled once the calls are under way and at
//! their end: memory per call must not grow with the call's length.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::sync::Arc;
use std::time::Duration;

use voxpipe::config::RecordingSection;
use voxpipe::frame::{AudioFrame, Direction, Frame, FrameBody};
use voxpipe::pipeline::{Observer, PushEvent};
use voxpipe::recording::Recorder;
use voxpipe::store::RecordingStatus;
use voxpipe::transport::PlaybackListener;

mod proc_stats;
use proc_stats::{clock_ticks_per_sec, cpu_ticks, rss_kib};

const FRAME: Duration = Duration::from_millis(20);
const RATE: u32 = 16_000;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Step {
    /// CPU while every call was under way, from 5 s in to the end.
    steady_cpu_secs: f64,
    steady_secs: f64,
    /// CPU to finish every recording (the rest written, synced, renamed).
    finish_cpu_secs: f64,
    rss_early_kib: u64,
    rss_end_kib: u64,
}

/// When the steady part of a run starts.
const WARM_UP_FRAMES: u64 = 250;

/// Feeds `calls` calls for `secs` in real time, recorded or not.
async fn feed(calls: usize, secs: u64, record: bool, dir: &std::path::Path) -> Step {
    let section = RecordingSection {
        enabled: true,
        dir: dir.to_path_buf().try_into().unwrap(),
    };
    let samples: Vec<i16> = (0..RATE as usize / 50)
        .map(|i| ((i as f64 * 0.17).sin() * 8_000.0) as i16)
        .collect();
    let recorders: Vec<Recorder> = if record {
        (0..calls)
            .map(|i| Recorder::start(&section, &format!("bench-{i}"), RATE))
            .collect()
    } else {
        Vec::new()
    };
    let taps: Vec<(Arc<dyn Observer>, Arc<dyn PlaybackListener>)> = recorders
        .iter()
        .map(|r| (r.observer(), r.listener()))
        .collect();
    let (mut t0, mut c0) = (std::time::Instant::now(), cpu_ticks(std::process::id()));
    let mut tick = tokio::time::interval(FRAME);
    let mut rss_early_kib = 0;
    let frames = secs * 50;
    for n in 0..frames {
        tick.tick().await;
        let pts = FRAME * n as u32;
        let caller = Frame::new(FrameBody::InputAudio(AudioFrame::from_samples(
            &samples, RATE, 1, pts,
        )));
        let bot = AudioFrame::from_samples(&samples, RATE, 1, pts);
        let event = PushEvent {
            from: "transport.input",
            frame: &caller,
            direction: Direction::Downstream,
            at: pts + FRAME,
        };
        for (observer, listener) in &taps {
            observer.on_push(&event);
            listener.played(&bot, pts);
        }
        if n == WARM_UP_FRAMES {
            rss_early_kib = rss_kib(std::process::id());
            (t0, c0) = (std::time::Instant::now(), cpu_ticks(std::process::id()));
        }
    }
    let rss_end_kib = rss_kib(std::process::id());
    let (t1, c1) = (std::time::Instant::now(), cpu_ticks(std::process::id()));
    let outcomes = futures_util::future::join_all(
        recorders
            .into_iter()
            .map(|r| r.finish(FRAME * frames as u32)),
    )
    .await;
    for outcome in &outcomes {
        assert_eq!(outcome.status, RecordingStatus::Recorded, "{outcome:?}");
        assert!(!outcome.degraded, "{outcome:?}");
    }
    let c2 = cpu_ticks(std::process::id());
    let per_tick = 1.0 / clock_ticks_per_sec();
    Step {
        steady_cpu_secs: (c1 - c0) as f64 * per_tick,
        steady_secs: (t1 - t0).as_secs_f64(),
        finish_cpu_secs: (c2 - c1) as f64 * per_tick,
        rss_early_kib,
        rss_end_kib,
    }
}

fn main() {
    let calls = arg("--calls", 100) as usize;
    let secs = arg("--secs", 20);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let off = runtime.block_on(feed(calls, secs, false, dir.path()));
    let on = runtime.block_on(feed(calls, secs, true, dir.path()));
    let call_secs = calls as f64 * on.steady_secs;
    let per_call_sec_us = (on.steady_cpu_secs - off.steady_cpu_secs).max(0.0) / call_secs * 1e6;
    // CPU seconds per second for 100 calls, as a share of one core.
    let core_pct_100 = per_call_sec_us * 100.0 / 1e6 * 100.0;
    println!("calls={calls} secs={secs}");
    println!(
        "steady {:.1} s: baseline cpu {:.2} s, recorded cpu {:.2} s",
        on.steady_secs, off.steady_cpu_secs, on.steady_cpu_secs
    );
    println!(
        "recording: {per_call_sec_us:.1} us CPU per call-second = {core_pct_100:.3}% of a core per 100 calls"
    );
    println!(
        "finishing: {:.2} ms CPU per call (rest written, fsync, rename)",
        on.finish_cpu_secs * 1e3 / calls as f64
    );
    println!(
        "rss: {} KiB after 5 s, {} KiB after {secs} s (baseline run {} / {} KiB)",
        on.rss_early_kib, on.rss_end_kib, off.rss_early_kib, off.rss_end_kib
    );
}
