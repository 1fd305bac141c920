//! Cost of one Smart Turn v3.2 decision (`SmartTurnModel`): the log-mel
//! features of the last 8 s and the int8 forward pass, on a reference clip
//! (`tests/fixtures/smart_turn/complete0_m_16k.wav`).
//!
//! - `smart_turn/decision`: `end_of_turn_probability`, all of it.
//! - `smart_turn/features`: the features alone.
//!
//! Compare with `python3 benches/smart_turn_onnxruntime.py` (onnxruntime as
//! Pipecat runs it, one thread, timed the same way).
//!
//! Run with: `cargo bench --bench smart_turn`

#![allow(clippy::expect_used)] // benchmark set-up may panic

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use voxpipe::audio::wav::read_wav;
use voxpipe::vad::{EndOfTurnModel, SmartTurnModel};

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
}

criterion_group!(smart_turn, benches);
criterion_main!(smart_turn);
