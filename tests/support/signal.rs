//! Signals the tests feed in (the one tone generator, the sample speech)
//! and measures of what came out, at any sample rate.

use std::f64::consts::PI;
use std::path::Path;

/// The sample speech, `assets/samples/hello.wav` (espeak, 16 kHz mono):
/// 1.5 s of silence, "Hello, can you hear me?" (to about 2.8 s), 1.5 s of
/// silence, and two more utterances.
pub fn sample_speech() -> Vec<i16> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples/hello.wav");
    let wav = voxpipe::audio::read_wav(&path).expect("the sample speech is there");
    assert_eq!(wav.sample_rate, 16_000);
    wav.to_mono()
}

/// The first `secs` of [`sample_speech`].
pub fn hello(secs: f64) -> Vec<i16> {
    let mut samples = sample_speech();
    samples.truncate((secs * 16_000.0) as usize);
    samples
}

/// A sine of `freq` Hz at `rate` Hz, `len` samples, peak `amp`, starting at phase 0.
pub fn sine(freq: f64, rate: u32, len: usize, amp: f64) -> Vec<i16> {
    (0..len)
        .map(|i| (amp * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()).round() as i16)
        .collect()
}

/// Amplitude of the `freq` component of `x` (Goertzel), in sample units:
/// a pure sine of peak `a` at `freq` reads about `a`.
pub fn tone_amplitude(x: &[i16], freq: f64, rate: u32) -> f64 {
    let w = 2.0 * PI * freq / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = f64::from(v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / x.len() as f64
}

/// Frequency estimated from rising zero crossings, interpolated.
pub fn zero_crossing_freq(x: &[i16], rate: u32) -> f64 {
    let mut crossings = Vec::new();
    for i in 1..x.len() {
        let (a, b) = (f64::from(x[i - 1]), f64::from(x[i]));
        if a < 0.0 && b >= 0.0 {
            crossings.push(i as f64 - 1.0 + (-a / (b - a)));
        }
    }
    assert!(crossings.len() >= 3, "too few zero crossings");
    let periods = (crossings.len() - 1) as f64;
    let span = crossings[crossings.len() - 1] - crossings[0];
    f64::from(rate) * periods / span
}

/// Largest absolute difference between neighbouring samples.
pub fn max_step(x: &[i16]) -> i32 {
    x.windows(2)
        .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
        .max()
        .unwrap_or(0)
}

/// Signal-to-noise ratio in dB of `actual` against `reference`.
pub fn snr_db(reference: &[i16], actual: &[i16]) -> f64 {
    assert_eq!(reference.len(), actual.len());
    let (mut sig, mut noise) = (0.0f64, 0.0f64);
    for (&r, &a) in reference.iter().zip(actual) {
        sig += f64::from(r).powi(2);
        noise += (f64::from(r) - f64::from(a)).powi(2);
    }
    10.0 * (sig / noise.max(1e-9)).log10()
}

/// RMS of a slice in sample units.
pub fn rms(x: &[i16]) -> f64 {
    (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

/// Samples as 16-bit little-endian bytes, as providers stream raw PCM.
pub fn le_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// `secs` of a 440 Hz tone of peak 8000 at `rate`, as 16-bit little-endian
/// PCM: the audio the fake TTS providers answer with.
pub fn tone_pcm(rate: u32, secs: f64) -> Vec<u8> {
    let len = (f64::from(rate) * secs).round() as usize;
    le_bytes(&sine(440.0, rate, len, 8_000.0))
}

/// Writes `secs` of a 440 Hz tone of peak 8000 at `rate` to `path`, as a
/// mono 16-bit WAV (an input file for `voxpipe run`).
pub fn tone_wav(path: &Path, rate: u32, secs: f64) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).expect("a writable WAV path");
    let len = (f64::from(rate) * secs).round() as usize;
    for sample in sine(440.0, rate, len, 8_000.0) {
        writer.write_sample(sample).expect("a writable WAV file");
    }
    writer.finalize().expect("a writable WAV file");
}
