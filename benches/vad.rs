//! Cost of voice activity detection on real speech
//! (`assets/samples/hello.wav` and its 8 kHz copy), state carried from call
//! to call as in a live stream:
//!
//! - `silero_chunk`: one Silero VAD v6 chunk (32 ms: 512 samples at 16 kHz,
//!   256 at 8 kHz), input conversion included. Compare with
//!   `python3 benches/silero_onnxruntime.py` (onnxruntime, timed the same
//!   way).
//! - `earshot_chunk`: one Earshot chunk (16 ms at 16 kHz).
//! - `vad_20ms`: what the `vad` processor does per 20 ms inbound frame
//!   (`FrameVad`): convert to the model's rate (resampling where needed),
//!   the model, the volume over its 400 ms window and the state machine.
//!   `silero_8k_upsampled_to_16k` is a phone call in a 16 kHz pipeline: the
//!   VAD recognises the 8 kHz source and scores it at 8 kHz. Divide by
//!   20 ms for the share of one core a real-time stream takes.
//!
//! For instruction counts (repeatable on a loaded machine), run one case
//! under callgrind, counting only the per-frame work:
//!
//! ```sh
//! valgrind --tool=callgrind --toggle-collect='*FrameVad*push*' \
//!   target/release/deps/vad-* --bench vad_20ms/silero_16k --profile-time 1
//! ```
//!
//! Run with: `cargo bench --bench vad`

#![allow(clippy::expect_used)] // benchmark set-up may panic

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use voxpipe::audio::StreamResampler;
use voxpipe::audio::wav::read_wav;
use voxpipe::frame::AudioFrame;
use voxpipe::vad::{EarshotVad, FrameVad, SileroVad, VadParams, VoiceModel};

fn speech(file: &str) -> Vec<i16> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/samples")
        .join(file);
    read_wav(&path).expect("sample speech").to_mono()
}

fn model_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("silero_chunk");
    for (rate, file) in [(16_000, "hello.wav"), (8_000, "hello_8k.wav")] {
        let mut vad = SileroVad::new(rate).expect("silero");
        let samples = speech(file);
        let mut chunks = samples.chunks_exact(vad.chunk_samples()).cycle();
        group.bench_function(format!("{}k", rate / 1000), |b| {
            b.iter(|| {
                let chunk = chunks.next().unwrap_or_default();
                black_box(vad.voice_confidence(black_box(chunk)))
            })
        });
    }
    group.finish();

    let mut earshot = EarshotVad::new();
    let samples = speech("hello.wav");
    let mut chunks = samples.chunks_exact(earshot.chunk_samples()).cycle();
    c.bench_function("earshot_chunk/16k", |b| {
        b.iter(|| {
            let chunk = chunks.next().unwrap_or_default();
            black_box(earshot.voice_confidence(black_box(chunk)))
        })
    });
}

/// A `vad_20ms` case: its name, the frames' rate, their audio, the model.
type Case = (&'static str, u32, Vec<i16>, Box<dyn VoiceModel>);

fn processor_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("vad_20ms");
    let upsampled = {
        let mut resampler = StreamResampler::new(8_000, 16_000).expect("resampler");
        let mut out = Vec::new();
        resampler.process(&speech("hello_8k.wav"), &mut out);
        out
    };
    let cases: [Case; 4] = [
        (
            "silero_16k",
            16_000,
            speech("hello.wav"),
            Box::new(SileroVad::new(16_000).expect("silero")),
        ),
        (
            "silero_8k",
            8_000,
            speech("hello_8k.wav"),
            Box::new(SileroVad::new(8_000).expect("silero")),
        ),
        (
            "silero_8k_upsampled_to_16k",
            16_000,
            upsampled,
            Box::new(SileroVad::new(16_000).expect("silero")),
        ),
        (
            "earshot_8k_resampled_to_16k",
            8_000,
            speech("hello_8k.wav"),
            Box::new(EarshotVad::new()),
        ),
    ];
    for (name, rate, samples, model) in cases {
        let mut vad = FrameVad::new(model, VadParams::default());
        // Frames as the transport delivers them, built before timing.
        let frames: Vec<AudioFrame> = samples
            .chunks_exact(rate as usize / 50)
            .enumerate()
            .map(|(i, samples)| {
                AudioFrame::from_samples(samples, rate, 1, Duration::from_millis(20 * i as u64))
            })
            .collect();
        let mut frames = frames.iter().cycle();
        group.bench_function(name, |b| {
            b.iter(|| {
                let frame = frames.next().expect("frames cycle");
                vad.push(black_box(frame)).expect("push");
                while let Some(event) = vad.poll_event() {
                    black_box(event);
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, model_benches, processor_benches);
criterion_main!(benches);
