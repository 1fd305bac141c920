//! Whisper's log-mel features, as Pipecat computes them for Smart Turn v3
//! (`pipecat/audio/turn/smart_turn/_whisper_features.py`, itself a copy of
//! `transformers.WhisperFeatureExtractor` with `chunk_length=8`):
//!
//! 1. the last 8 s of the turn, zero-padded at the start to 128,000 samples;
//! 2. normalised to zero mean and unit variance (`(x - mean) / sqrt(var +
//!    1e-7)`);
//! 3. a centred power spectrogram: reflect-padded by 200 samples each side,
//!    400-sample frames every 160 samples under a periodic Hann window,
//!    `|rfft|²` (801 frames of 201 bins, in f64 as numpy computes it);
//! 4. 80 Slaney-scale mel bands (0 to 8 kHz, area-normalised), floored at
//!    1e-10, `log10`; the last frame dropped (800 remain);
//! 5. floored at the maximum minus 8, then `(x + 4) / 4`.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

/// Samples per second the features are computed at.
pub(crate) const SAMPLE_RATE: usize = 16_000;
/// The window: 8 s.
pub(crate) const WINDOW_SAMPLES: usize = 8 * SAMPLE_RATE;
/// Mel bands.
pub(crate) const BANDS: usize = 80;
/// Feature frames in the window.
pub(crate) const FRAMES: usize = 800;

const FFT_SIZE: usize = 400;
const HOP: usize = 160;
const BINS: usize = FFT_SIZE / 2 + 1;

/// One mel band's triangle: its first FFT bin and the weights from there.
#[derive(Debug, Clone)]
struct Band {
    first_bin: usize,
    weights: Vec<f64>,
}

/// Computes the features; holds the window, the filters and scratch.
#[derive(Clone)]
pub(crate) struct LogMel {
    fft: Arc<dyn RealToComplex<f64>>,
    window: Vec<f64>,
    bands: Vec<Band>,
    padded: Vec<f64>,
    frame: Vec<f64>,
    spectrum: Vec<Complex<f64>>,
    scratch: Vec<Complex<f64>>,
    power: Vec<f64>,
    /// `[BANDS][FRAMES]` log-mel values, before the final clamp and scale.
    log: Vec<f64>,
}

impl std::fmt::Debug for LogMel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogMel").finish_non_exhaustive()
    }
}

impl LogMel {
    pub(crate) fn new() -> LogMel {
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(FFT_SIZE);
        // Periodic Hann: numpy's hanning(401)[:-1].
        let window = (0..FFT_SIZE)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / FFT_SIZE as f64).cos())
            .collect();
        LogMel {
            spectrum: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            frame: fft.make_input_vec(),
            fft,
            window,
            bands: mel_bands(),
            padded: vec![0.0; WINDOW_SAMPLES + FFT_SIZE],
            power: vec![0.0; BINS],
            log: vec![0.0; BANDS * FRAMES],
        }
    }

    /// The features of `turn` (16 kHz, oldest first) into `out`
    /// (`[BANDS][FRAMES]`, row-major, as the model's input); returns how
    /// many frames from the first are equal to it (see [`padding_frames`]).
    pub(crate) fn compute(&mut self, turn: &[i16], out: &mut [f32]) -> usize {
        let repeated = padding_frames(turn.len());
        self.compute_repeating(turn, out, repeated);
        repeated
    }

    /// [`compute`](LogMel::compute), copying frame 0's bands to the
    /// frames after it up to `repeated` (which must be equal to it).
    fn compute_repeating(&mut self, turn: &[i16], out: &mut [f32], repeated: usize) {
        debug_assert_eq!(out.len(), BANDS * FRAMES);
        self.normalised_window(turn);
        for t in 0..FRAMES {
            if (1..repeated).contains(&t) {
                for band in self.log.chunks_exact_mut(FRAMES) {
                    band[t] = band[0];
                }
                continue;
            }
            self.power_spectrum(t);
            for (b, band) in self.bands.iter().enumerate() {
                let energy: f64 = band
                    .weights
                    .iter()
                    .zip(&self.power[band.first_bin..])
                    .map(|(w, p)| w * p)
                    .sum();
                self.log[b * FRAMES + t] = energy.max(1e-10).log10();
            }
        }
        let max = self.log.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        for (out, log) in out.iter_mut().zip(&self.log) {
            *out = ((log.max(max - 8.0) + 4.0) / 4.0) as f32;
        }
    }

    /// The last 8 s of `turn` as floats, zero-padded at the start,
    /// normalised, then reflect-padded by half a frame each side.
    fn normalised_window(&mut self, turn: &[i16]) {
        let turn = &turn[turn.len().saturating_sub(WINDOW_SAMPLES)..];
        let pad = FFT_SIZE / 2;
        let start = pad + WINDOW_SAMPLES - turn.len();
        let signal = &mut self.padded[pad..pad + WINDOW_SAMPLES];
        signal.fill(0.0);
        for (x, s) in signal[start - pad..].iter_mut().zip(turn) {
            // Pipecat's int16 to float32 conversion.
            *x = f64::from(f32::from(*s) / 32768.0);
        }
        let n = WINDOW_SAMPLES as f64;
        let mean = signal.iter().sum::<f64>() / n;
        let var = signal.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        // numpy normalises in float32 before the spectrogram promotes to f64.
        let (mean, std) = (mean as f32, ((var as f32) + 1e-7).sqrt());
        for x in signal.iter_mut() {
            *x = f64::from((*x as f32 - mean) / std);
        }
        for i in 1..=pad {
            self.padded[pad - i] = self.padded[pad + i];
            self.padded[pad + WINDOW_SAMPLES - 1 + i] = self.padded[pad + WINDOW_SAMPLES - 1 - i];
        }
    }

    fn power_spectrum(&mut self, t: usize) {
        let samples = &self.padded[t * HOP..t * HOP + FFT_SIZE];
        for ((f, x), w) in self.frame.iter_mut().zip(samples).zip(&self.window) {
            *f = x * w;
        }
        // The buffers have the planner's sizes, so this cannot fail.
        if self
            .fft
            .process_with_scratch(&mut self.frame, &mut self.spectrum, &mut self.scratch)
            .is_ok()
        {
            for (p, c) in self.power.iter_mut().zip(&self.spectrum) {
                *p = c.norm_sqr();
            }
        }
    }
}

/// How many frames from the first see only the zero padding before a
/// turn of `samples` (at least 1 if any): every sample of theirs, the
/// reflected ones included, is the same normalised zero, so their bands
/// are frame 0's. A turn shorter than the window (most are) thus costs the
/// spectra of its own frames only.
pub(crate) fn padding_frames(samples: usize) -> usize {
    // Where the turn starts in the reflect-padded window: before it, the
    // reflection of the first half frame, then zeros.
    let start = FFT_SIZE / 2 + WINDOW_SAMPLES.saturating_sub(samples);
    if start > FFT_SIZE {
        ((start - FFT_SIZE) / HOP + 1).min(FRAMES)
    } else {
        0
    }
}

fn hertz_to_mel(hz: f64) -> f64 {
    if hz >= 1000.0 {
        15.0 + (hz / 1000.0).ln() * (27.0 / 6.4f64.ln())
    } else {
        3.0 * hz / 200.0
    }
}

fn mel_to_hertz(mel: f64) -> f64 {
    if mel >= 15.0 {
        1000.0 * ((6.4f64.ln() / 27.0) * (mel - 15.0)).exp()
    } else {
        200.0 * mel / 3.0
    }
}

/// The Slaney mel filterbank of `transformers.audio_utils`, kept sparse.
fn mel_bands() -> Vec<Band> {
    let (low, high) = (hertz_to_mel(0.0), hertz_to_mel(SAMPLE_RATE as f64 / 2.0));
    let edges: Vec<f64> = (0..BANDS + 2)
        .map(|i| mel_to_hertz(low + (high - low) * i as f64 / (BANDS + 1) as f64))
        .collect();
    let bin_hz = |bin: usize| (SAMPLE_RATE / 2) as f64 * bin as f64 / (BINS - 1) as f64;
    (0..BANDS)
        .map(|b| {
            let (left, centre, right) = (edges[b], edges[b + 1], edges[b + 2]);
            let norm = 2.0 / (right - left);
            let weights: Vec<(usize, f64)> = (0..BINS)
                .map(|bin| {
                    let hz = bin_hz(bin);
                    let down = (hz - left) / (centre - left);
                    let up = (right - hz) / (right - centre);
                    (bin, down.min(up).max(0.0) * norm)
                })
                .filter(|(_, w)| *w > 0.0)
                .collect();
            let first_bin = weights.first().map_or(0, |(bin, _)| *bin);
            Band {
                first_bin,
                weights: weights.into_iter().map(|(_, w)| w).collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_cover_the_spectrum_with_unit_area_triangles() {
        let bands = mel_bands();
        assert_eq!(bands.len(), BANDS);
        // Contiguous bins, increasing starts, within the spectrum.
        for pair in bands.windows(2) {
            assert!(pair[0].first_bin <= pair[1].first_bin);
        }
        let last = bands.last().unwrap();
        assert!(last.first_bin + last.weights.len() <= BINS);
        // Slaney normalisation: each triangle's area in Hz is 1, up to the
        // error of sampling a triangle a few bins wide at the bins (the
        // exact values are checked against Pipecat's features in
        // tests/speech/smart_turn.rs).
        let bin_hz = 8000.0 / (BINS - 1) as f64;
        for band in &bands[20..] {
            let area: f64 = band.weights.iter().sum::<f64>() * bin_hz;
            assert!((area - 1.0).abs() < 0.1, "{area}");
        }
    }

    #[test]
    fn frames_of_padding_alone_are_copied_exactly() {
        // A turn of 1.3 s: 6.7 s of padding before it, then speech-like
        // noise; the copied frames must equal the computed ones bit for bit.
        let turn: Vec<i16> = (0..20_800u32)
            .map(|i| ((i.wrapping_mul(2_654_435_761) >> 16) as i16) / 4)
            .collect();
        let repeated = padding_frames(turn.len());
        assert!((400..FRAMES).contains(&repeated), "{repeated}");
        let mut mel = LogMel::new();
        let mut copied = vec![0.0; BANDS * FRAMES];
        let mut computed = vec![0.0; BANDS * FRAMES];
        assert_eq!(mel.compute(&turn, &mut copied), repeated);
        mel.compute_repeating(&turn, &mut computed, 0);
        assert_eq!(copied, computed);
        // The first frame that sees the turn differs from frame 0.
        assert_ne!(computed[repeated], computed[0]);
        assert_eq!(padding_frames(WINDOW_SAMPLES), 0);
        assert_eq!(padding_frames(WINDOW_SAMPLES - 200), 0);
        // No turn: all but the last frame, which reaches the reflection
        // at the end (counted as the turn's).
        assert_eq!(padding_frames(0), FRAMES - 1);
    }

    #[test]
    fn silence_gives_the_floor_everywhere() {
        let mut mel = LogMel::new();
        let mut out = vec![0.0; BANDS * FRAMES];
        mel.compute(&[], &mut out);
        // All-zero audio: every band at log10(1e-10) = -10, so (−10 + 4) / 4.
        assert!(
            out.iter().all(|v| (*v - -1.5).abs() < 1e-6),
            "{:?}",
            &out[..4]
        );
    }
}
