//! Per-frame cost of the audio toolkit: one call handles 20 ms of one stream.
//!
//! Run with: `cargo bench --bench audio`

#![allow(clippy::expect_used)] // benchmark set-up may panic

use std::f64::consts::PI;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use voxpipe::audio::opus::FRAME_SAMPLES;
use voxpipe::audio::{OpusDecoder, OpusEncoder, StreamResampler, mulaw};

/// One second of a speech-band tone mix at `rate` Hz.
fn signal(rate: u32) -> Vec<i16> {
    (0..rate as usize)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let x = 0.4 * (2.0 * PI * 220.0 * t).sin() + 0.2 * (2.0 * PI * 1_730.0 * t).sin();
            (x * 32_767.0) as i16
        })
        .collect()
}

/// 20 ms frames of `signal(rate)`, cycled forever.
fn frames(rate: u32) -> impl Iterator<Item = Vec<i16>> {
    let frame = (rate / 50) as usize;
    let all: Vec<Vec<i16>> = signal(rate).chunks(frame).map(<[i16]>::to_vec).collect();
    all.into_iter().cycle()
}

fn mulaw_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("mulaw_20ms_8k");
    let pcm: Vec<i16> = signal(8_000)[..160].to_vec();
    let mut codes = Vec::with_capacity(160);
    mulaw::encode(&pcm, &mut codes);
    let mut out_codes = Vec::with_capacity(160);
    group.bench_function("encode", |b| {
        b.iter(|| {
            out_codes.clear();
            mulaw::encode(black_box(&pcm), &mut out_codes);
        })
    });
    let mut out_pcm = Vec::with_capacity(160);
    group.bench_function("decode", |b| {
        b.iter(|| {
            out_pcm.clear();
            mulaw::decode(black_box(&codes), &mut out_pcm);
        })
    });
    group.finish();
}

fn resample_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("resample_20ms");
    for (from, to) in [(8_000, 16_000), (48_000, 16_000), (16_000, 48_000)] {
        let mut resampler = StreamResampler::new(from, to).expect("supported rates");
        let mut input = frames(from);
        let mut out = Vec::with_capacity((to / 50) as usize);
        group.bench_function(format!("{}k_to_{}k", from / 1_000, to / 1_000), |b| {
            b.iter(|| {
                out.clear();
                let frame = input.next().unwrap_or_default();
                resampler.process(black_box(&frame), &mut out);
            })
        });
    }
    group.finish();
}

fn opus_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("opus_20ms_48k");
    let mut encoder = OpusEncoder::new().expect("encoder");
    let mut input = frames(48_000);
    group.bench_function("encode", |b| {
        b.iter(|| {
            let frame = input.next().unwrap_or_default();
            black_box(encoder.encode(black_box(&frame)).expect("encode"))
        })
    });
    // A second of real packets, decoded in order and cycled.
    let mut enc = OpusEncoder::new().expect("encoder");
    let packets: Vec<_> = signal(48_000)
        .chunks_exact(FRAME_SAMPLES)
        .map(|f| enc.encode(f).expect("encode"))
        .collect();
    let mut packets = packets.into_iter().cycle();
    let mut decoder = OpusDecoder::new().expect("decoder");
    let mut out = Vec::with_capacity(FRAME_SAMPLES);
    group.bench_function("decode", |b| {
        b.iter(|| {
            out.clear();
            let packet = packets.next().unwrap_or_default();
            decoder
                .decode(black_box(&packet), &mut out)
                .expect("decode")
        })
    });
    group.finish();
}

criterion_group!(benches, mulaw_benches, resample_benches, opus_benches);
criterion_main!(benches);
