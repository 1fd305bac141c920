//! Signals for fake callers, and measures of what they heard (8 kHz).

use std::f64::consts::PI;

use voxpipe::audio::mulaw;

/// Samples of 20 ms at 8 kHz.
pub const FRAME: usize = 160;

/// `ms` milliseconds of a `freq` Hz tone at `amp`, as mu-law at 8 kHz.
pub fn tone(freq: f64, ms: usize, amp: f64) -> Vec<u8> {
    let pcm: Vec<i16> = (0..ms * 8)
        .map(|i| (amp * (2.0 * PI * freq * i as f64 / 8000.0).sin()).round() as i16)
        .collect();
    let mut out = Vec::new();
    mulaw::encode(&pcm, &mut out);
    out
}

/// `ms` milliseconds of mu-law silence.
pub fn silence(ms: usize) -> Vec<u8> {
    vec![0xFF; ms * 8]
}

/// mu-law to PCM.
pub fn decode(mulaw_bytes: &[u8]) -> Vec<i16> {
    let mut out = Vec::new();
    mulaw::decode(mulaw_bytes, &mut out);
    out
}

/// Amplitude of the `freq` component of `x` at 8 kHz (Goertzel): a pure
/// sine of peak `a` reads about `a`.
pub fn tone_amplitude(x: &[i16], freq: f64) -> f64 {
    let w = 2.0 * PI * freq / 8000.0;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = f64::from(v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / x.len().max(1) as f64
}

/// How many 20 ms frames of `pcm` are louder than `rms`.
pub fn loud_frames(pcm: &[i16], rms: f64) -> usize {
    pcm.chunks(FRAME)
        .filter(|f| {
            let power = f.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / f.len() as f64;
            power.sqrt() > rms
        })
        .count()
}
