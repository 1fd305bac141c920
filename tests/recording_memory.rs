//! A recording's memory does not grow with the call's length: after 20
//! seconds a recorded call's heap grows by at most one mixer window (a
//! high-water mark, reached when a burst lands between the writer's
//! wake-ups), whatever the call's length.
//!
//! This binary counts every allocation of the process through a global
//! allocator, so it runs without the test harness (`harness = false`), as
//! `audio_alloc` does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::alloc::System;
use std::sync::Arc;
use std::time::Duration;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use voxpipe::config::RecordingSection;
use voxpipe::frame::{AudioFrame, Direction, Frame, FrameBody};
use voxpipe::pipeline::PushEvent;
use voxpipe::recording::Recorder;
use voxpipe::store::RecordingStatus;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const FRAME: Duration = Duration::from_millis(20);
const RATE: u32 = 16_000;
/// Fed at once, then the writer is given time to take it: well within the
/// recorder's backlog, so nothing is dropped.
const BURST_SECS: u64 = 4;
/// Samples of the live heap, 50 ms apart, after each burst.
const SETTLE_SAMPLES: u32 = 26;

/// The most the mixer's window can hold beyond its steady size: audio
/// stamped up to 10 s ahead of the clock plus the 1 s held back, stereo,
/// 16-bit (`recording::mixer`'s `MAX_AHEAD` and `HOLD_BACK`). Whether a
/// burst reaches it depends on when the writer wakes, so the test allows
/// it once; what it must never do is keep growing with the call.
const WINDOW_BYTES: i64 = 11 * RATE as i64 * 4;

fn main() {
    let settled = settled_live_heap(120);
    let at = |secs: u64| settled[(secs / BURST_SECS) as usize - 1];
    let early = at(20);
    let first_half = settled[..settled.len() / 2]
        .iter()
        .copied()
        .max()
        .unwrap_or(0);
    let late = settled.iter().copied().max().unwrap_or(0);
    eprintln!(
        "live heap of one recorded call: {early} bytes at 20 s, at most {first_half} up to 60 s, at most {late} up to 120 s"
    );
    assert!(
        late < early + WINDOW_BYTES,
        "memory grew past the mixer's window: {early} bytes at 20 s, {late} later"
    );
    assert!(late < 2 * 1024 * 1024, "{late} bytes for one call");
}

/// The heap one call of `secs` holds (allocated, not yet freed) once the
/// writer has taken each burst, burst by burst.
fn settled_live_heap(secs: u64) -> Vec<i64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let section = RecordingSection {
        enabled: true,
        dir: dir.path().to_path_buf().try_into().unwrap(),
    };
    let samples: Vec<i16> = (0..RATE as usize / 50)
        .map(|i| ((i as f64 * 0.17).sin() * 8_000.0) as i16)
        .collect();
    let region = Region::new(GLOBAL);
    let live = |region: &Region<'_, System>| {
        let change = region.change();
        change.bytes_allocated as i64 - change.bytes_deallocated as i64
    };
    let recorder = Recorder::start(&section, "long-call", RATE);
    let (observer, listener) = (recorder.observer(), recorder.listener());
    let mut settled_heap = Vec::new();
    for n in 0..secs * 50 {
        let pts = FRAME * n as u32;
        let caller = Arc::new(Frame::new(FrameBody::InputAudio(AudioFrame::from_samples(
            &samples, RATE, 1, pts,
        ))));
        observer.on_push(&PushEvent {
            from: "transport.input",
            frame: &caller,
            direction: Direction::Downstream,
            at: pts + FRAME,
        });
        listener.played(&AudioFrame::from_samples(&samples, RATE, 1, pts), pts);
        if (n + 1) % (BURST_SECS * 50) == 0 {
            // What the call holds once the writer has taken the burst: the
            // least live heap over more than two of its 500 ms wake-ups.
            // (A single sample would also count whatever of the burst still
            // waits in the bounded channel, which depends on the machine's
            // load, not on the call's length.)
            let mut settled = live(&region);
            for _ in 0..SETTLE_SAMPLES {
                std::thread::sleep(Duration::from_millis(50));
                settled = settled.min(live(&region));
            }
            settled_heap.push(settled);
        }
    }
    let outcome = runtime.block_on(recorder.finish(FRAME * (secs * 50) as u32));
    assert_eq!(outcome.status, RecordingStatus::Recorded, "{outcome:?}");
    assert!(!outcome.degraded, "nothing dropped: {outcome:?}");
    assert_eq!(outcome.duration_ms, secs * 1000);
    settled_heap
}
