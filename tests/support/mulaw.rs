//! Signals for fake phone callers, and measures of what they heard: mu-law
//! at 8 kHz, as Twilio carries it.

use voxpipe::audio::mulaw;

use super::signal;

/// Samples of 20 ms at 8 kHz.
pub const FRAME: usize = 160;

/// `ms` milliseconds of a `freq` Hz tone at `amp`, as mu-law at 8 kHz.
pub fn tone(freq: f64, ms: usize, amp: f64) -> Vec<u8> {
    let mut out = Vec::new();
    mulaw::encode(&signal::sine(freq, 8_000, ms * 8, amp), &mut out);
    out
}

/// The sample speech (`assets/samples/hello.wav`, espeak) from `from_ms` to
/// `to_ms`, as mu-law at 8 kHz. Its first utterance is 1400..3400.
pub fn speech(from_ms: usize, to_ms: usize) -> Vec<u8> {
    let pcm = voxpipe::audio::resample_all(&signal::sample_speech(), 16_000, 8_000)
        .expect("16 kHz resamples to 8 kHz");
    let mut out = Vec::new();
    mulaw::encode(&pcm[from_ms * 8..(to_ms * 8).min(pcm.len())], &mut out);
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

/// Amplitude of the `freq` component of `x` at 8 kHz: a pure sine of peak
/// `a` reads about `a`.
pub fn tone_amplitude(x: &[i16], freq: f64) -> f64 {
    signal::tone_amplitude(x, freq, 8_000)
}

/// How many 20 ms frames of `pcm` are louder than `rms` (sample units).
pub fn loud_frames(pcm: &[i16], rms: f64) -> usize {
    pcm.chunks(FRAME).filter(|f| signal::rms(f) > rms).count()
}
