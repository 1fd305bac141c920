//! The per-frame paths do not allocate once warmed up (the Opus codec
//! apart, held to its measured counts), when the caller
//! reuses its output buffers.
//!
//! This binary counts every allocation of the process through a global
//! allocator, so it runs without the test harness (`harness = false`): the
//! harness's own thread allocates while a test runs and would be counted.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code may panic

mod support;

use std::alloc::System;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use voxpipe::audio::opus::FRAME_SAMPLES;
use voxpipe::audio::{OpusDecoder, OpusEncoder, StreamResampler, mulaw};
use voxpipe::frame::AudioFrame;
use voxpipe::vad::{ModelInput, RollingVolume, SileroVad, VoiceModel};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const CALLS: usize = 200;

fn main() {
    steady_paths_do_not_allocate();
}

fn steady_paths_do_not_allocate() {
    // Resampling, 20 ms per call, and odd sizes too.
    for (from, to) in [
        (8_000, 16_000),
        (48_000, 16_000),
        (16_000, 48_000),
        (24_000, 16_000),
    ] {
        let input = support::signal::sine(440.0, from, from as usize, 8_000.0);
        for piece in [(from / 50) as usize, 77] {
            let mut r = StreamResampler::new(from, to).unwrap();
            let mut out = Vec::with_capacity(2 * to as usize / 50 + 2 * piece);
            let mut chunks = input.chunks(piece).cycle();
            let region = Region::new(GLOBAL);
            for _ in 0..CALLS {
                out.clear();
                r.process(chunks.next().unwrap(), &mut out);
            }
            let stats = region.change();
            assert_eq!(
                stats.allocations + stats.reallocations,
                0,
                "{from}->{to} piece {piece}: {stats:?}"
            );
        }
    }

    // mu-law, one 20 ms 8 kHz frame per call.
    let pcm = support::signal::sine(440.0, 8_000, 160, 8_000.0);
    let (mut codes, mut decoded) = (Vec::with_capacity(160), Vec::with_capacity(160));
    let region = Region::new(GLOBAL);
    for _ in 0..CALLS {
        codes.clear();
        decoded.clear();
        mulaw::encode(&pcm, &mut codes);
        mulaw::decode(&codes, &mut decoded);
    }
    let stats = region.change();
    assert_eq!(
        stats.allocations + stats.reallocations,
        0,
        "mu-law: {stats:?}"
    );

    // The VAD's input: stereo 8 kHz frames for a 16 kHz model, decoded,
    // mixed down and resampled into the converter's own buffers, then
    // measured for volume.
    let stereo = support::signal::sine(440.0, 8_000, 320, 8_000.0);
    let frame = AudioFrame::from_samples(&stereo, 8_000, 2, std::time::Duration::ZERO);
    let mut input = ModelInput::new(16_000);
    let mut meter = RollingVolume::new(16_000, 320);
    // Long enough to fill the volume's 400 ms window.
    for _ in 0..30 {
        meter.next(input.convert(&frame).unwrap());
    }
    let region = Region::new(GLOBAL);
    let mut total = 0.0;
    for _ in 0..CALLS {
        total += meter.next(input.convert(&frame).unwrap()).0;
    }
    let stats = region.change();
    assert!(total > 0.0);
    assert_eq!(
        stats.allocations + stats.reallocations,
        0,
        "VAD input: {stats:?}"
    );

    // Silero VAD, one chunk per call, at both of its rates.
    for rate in [8_000, 16_000] {
        let mut vad = SileroVad::new(rate).unwrap();
        let chunk = support::signal::sine(440.0, rate, vad.chunk_samples(), 8_000.0);
        vad.voice_confidence(&chunk);
        let region = Region::new(GLOBAL);
        let mut total = 0.0;
        for _ in 0..CALLS {
            total += vad.voice_confidence(&chunk);
        }
        let stats = region.change();
        assert!(total > 0.0);
        assert_eq!(
            stats.allocations + stats.reallocations,
            0,
            "Silero at {rate} Hz: {stats:?}"
        );
    }

    // Opus: ropus allocates its scratch per call where libopus, before it,
    // used the stack: 28 buffers (16 KB) per decode, 262 (117 KB) per
    // encode besides the packet. Both are held near those counts so that
    // growth shows (src/audio/opus/mod.rs says what is left to do).
    let pcm = support::signal::sine(440.0, 48_000, FRAME_SAMPLES, 8_000.0);
    let mut enc = OpusEncoder::new().unwrap();
    let mut dec = OpusDecoder::new().unwrap();
    let packet = enc.encode(&pcm).unwrap();
    let mut out = Vec::with_capacity(FRAME_SAMPLES);
    let region = Region::new(GLOBAL);
    for _ in 0..CALLS {
        out.clear();
        dec.decode(&packet, &mut out).unwrap();
    }
    let stats = region.change();
    assert!(
        stats.allocations <= 30 * CALLS && stats.reallocations == 0,
        "Opus decode: {stats:?}"
    );
    let region = Region::new(GLOBAL);
    for _ in 0..CALLS {
        drop(enc.encode(&pcm).unwrap());
    }
    let stats = region.change();
    assert!(
        stats.allocations <= 270 * CALLS && stats.reallocations == 0,
        "Opus encode: {stats:?}"
    );
}
