//! Cost of one Smart Turn v3.2 decision (`SmartTurnModel`): the log-mel
//! features of the last 8 s and the int8 forward pass, on a reference clip
//! (`tests/fixtures/smart_turn/complete0_m_16k.wav`).
//!
//! - `smart_turn/decision`: `end_of_turn_probability`, all of it.
//! - `smart_turn/features`: the features alone.
//! - then CPU time a decision (the process's user and system time over 3
//!   batches of 20 decisions, their median): on a loaded machine the wall
//!   clock also counts the waits for a core.
//!
//! Compare with `python3 benches/smart_turn_onnxruntime.py` (onnxruntime as
//! Pipecat runs it, one thread, timed both ways).
//!
//! Run with: `cargo bench --bench smart_turn`

#![allow(clippy::expect_used, clippy::print_stdout)] // a benchmark's set-up and report

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use voxpipe::audio::wav::read_wav;
use voxpipe::vad::{EndOfTurnModel, SmartTurnModel};

#[allow(dead_code)] // shared by the benchmarks; this one reads CPU time only
mod proc_stats;
use proc_stats::{clock_ticks_per_sec, cpu_ticks};

fn turn() -> Vec<i16> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smart_turn/complete0_m_16k.wav");
    read_wav(&path).expect("reference clip").to_mono()
}

fn benches(c: &mut Criterion) {
    let turn = turn();
    let mut model = SmartTurnModel::bundled().expect("smart turn");
    let mut group = c.benchmark_group("smart_turn");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("decision", |b| {
        b.iter(|| black_box(model.end_of_turn_probability(black_box(&turn))))
    });
    group.bench_function("features", |b| {
        b.iter(|| black_box(model.features(black_box(&turn))))
    });
    group.finish();
    let ticks_per_ms = clock_ticks_per_sec() / 1000.0;
    let mut batches: Vec<f64> = (0..3)
        .map(|_| {
            let before = cpu_ticks(std::process::id());
            for _ in 0..20 {
                black_box(model.end_of_turn_probability(black_box(&turn)));
            }
            (cpu_ticks(std::process::id()) - before) as f64 / ticks_per_ms / 20.0
        })
        .collect();
    batches.sort_by(f64::total_cmp);
    println!(
        "smart_turn/decision CPU time: {:.1} ms (batches of 20: {:.1}, {:.1}, {:.1} ms)",
        batches[1], batches[0], batches[1], batches[2]
    );
}

criterion_group!(smart_turn, benches);
criterion_main!(smart_turn);
