//! Silero VAD and Pipecat's volume against the reference runtimes, on the
//! numbers committed in `tests/fixtures/vad_reference.json` (generated once
//! by `tools/gen_vad_reference.py` with onnxruntime and the `loudness`
//! package Pipecat 1.14 measures volume with).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use voxpipe::audio::wav::read_wav;
use voxpipe::vad::{RollingVolume, SileroModel, SileroVad, VadError, VoiceModel};

struct Reference {
    samples: Vec<i16>,
    chunk: usize,
    probabilities: Vec<f64>,
    volumes: Vec<f64>,
}

fn reference(rate: u32) -> Reference {
    let json: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/vad_reference.json")).unwrap();
    let entry = &json["rates"][rate.to_string()];
    let numbers = |key: &str| -> Vec<f64> {
        entry[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(entry["input"].as_str().unwrap());
    let wav = read_wav(&path).unwrap();
    assert_eq!(wav.sample_rate, rate);
    Reference {
        samples: wav.to_mono(),
        chunk: entry["chunk_samples"].as_u64().unwrap() as usize,
        probabilities: numbers("probabilities"),
        volumes: numbers("volumes"),
    }
}

fn probabilities(vad: &mut SileroVad, samples: &[i16]) -> Vec<f32> {
    samples
        .chunks_exact(vad.chunk_samples())
        .map(|chunk| vad.voice_confidence(chunk))
        .collect()
}

fn assert_matches_onnxruntime(rate: u32) {
    let reference = reference(rate);
    let mut vad = SileroVad::new(rate).unwrap();
    assert_eq!(vad.chunk_samples(), reference.chunk);
    let ours = probabilities(&mut vad, &reference.samples);
    assert_eq!(ours.len(), reference.probabilities.len());
    let mut worst = (0.0f64, 0);
    for (i, (a, b)) in ours.iter().zip(&reference.probabilities).enumerate() {
        let diff = (f64::from(*a) - b).abs();
        if diff > worst.0 {
            worst = (diff, i);
        }
    }
    eprintln!(
        "{rate} Hz: largest difference {:e} (chunk {})",
        worst.0, worst.1
    );
    assert!(
        worst.0 <= 1e-4,
        "{rate} Hz: chunk {} differs by {}",
        worst.1,
        worst.0
    );
    // The file is speech: the reference says so for a good share of it.
    let speech = reference.probabilities.iter().filter(|p| **p > 0.7).count();
    assert!(speech > reference.probabilities.len() / 4);
}

#[test]
fn probabilities_match_onnxruntime_at_16k() {
    assert_matches_onnxruntime(16_000);
}

#[test]
fn probabilities_match_onnxruntime_at_8k() {
    assert_matches_onnxruntime(8_000);
}

#[test]
fn state_carries_across_chunks_and_resets_per_stream() {
    // The first utterance of the sample and the silence after it.
    let speech = &reference(16_000).samples[..512 * 100];
    let mut vad = SileroVad::new(16_000).unwrap();
    let first = probabilities(&mut vad, speech);
    // Without a reset the state of the first pass carries into the second.
    let carried = probabilities(&mut vad, &speech[..512 * 4]);
    assert_ne!(carried, first[..4]);
    vad.reset();
    assert_eq!(probabilities(&mut vad, speech), first);
    let mut fresh = SileroVad::new(16_000).unwrap();
    assert_eq!(probabilities(&mut fresh, speech), first);
}

#[test]
fn volume_matches_pipecat() {
    for rate in [16_000, 8_000] {
        let reference = reference(rate);
        let mut tracker = RollingVolume::new(rate, reference.chunk);
        for (i, (chunk, expected)) in reference
            .samples
            .chunks_exact(reference.chunk)
            .zip(&reference.volumes)
            .enumerate()
        {
            let (_, ours) = tracker.next(chunk);
            assert!(
                (ours - expected).abs() < 1e-9,
                "{rate} Hz chunk {i}: {ours} vs {expected}"
            );
        }
    }
}

#[test]
fn only_8_and_16_khz_and_only_well_formed_models() {
    assert!(matches!(
        SileroVad::new(44_100),
        Err(VadError::UnsupportedRate { rate: 44_100, .. })
    ));
    let model = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/silero/silero_vad.onnx"
    ))
    .unwrap();
    assert!(SileroModel::from_onnx(&model[..model.len() / 2]).is_err());
    assert!(SileroModel::from_onnx(b"not a model").is_err());
    let nothing = SileroModel::from_onnx(&[]).unwrap();
    assert!(SileroVad::with_model(&nothing, 16_000).is_err());
}
