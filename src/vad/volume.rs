//! Pipecat's volume of a chunk, so that `min_volume` means what it means in
//! Pipecat.
//!
//! Pipecat (`pipecat.audio.utils.calculate_audio_volume`) measures each VAD
//! chunk with pyloudnorm's ITU-R BS.1770 integrated loudness, the gating
//! block as long as the chunk, on the raw 16-bit sample values (not scaled
//! to ±1), and maps -20..80 LUFS onto 0..1. Reproduced here step by step:
//!
//! 1. K-weighting: pyloudnorm's high shelf (+4 dB, Q 1/√2, 1500 Hz) then its
//!    high pass (Q 0.5, 38 Hz), biquads designed for the chunk's rate and run
//!    like `scipy.signal.lfilter` from a zero state, afresh for every chunk
//!    (both in one pass over the chunk, with no buffer);
//! 2. mean square over the block (its end computed as pyloudnorm does, in
//!    floating point), loudness `-0.691 + 10 log10(z)`;
//! 3. gating: with one block, the absolute gate (-70 LUFS) either keeps it or
//!    leaves nothing (-∞); the relative gate (-10 LU) always keeps it;
//! 4. `(loudness + 20) / 100`, clamped to `[0, 1]`.
//!
//! [`SmoothedVolume`] adds the VAD analyzer's exponential smoothing (factor
//! 0.2, from 0). Everything is `f64`, as in numpy.

use std::f64::consts::PI;

/// Loudness mapped to volume 0.
const QUIETEST_LUFS: f64 = -20.0;
/// Loudness mapped to volume 1.
const LOUDEST_LUFS: f64 = 80.0;
/// BS.1770 absolute gate.
const ABSOLUTE_GATE_LUFS: f64 = -70.0;
/// Pipecat's smoothing factor for the volume.
const SMOOTHING: f64 = 0.2;

/// A biquad with `a0` normalised to 1, run in direct form II transposed
/// (scipy's `lfilter`).
#[derive(Debug, Clone, Copy)]
struct Biquad {
    b: [f64; 3],
    a: [f64; 3],
}

impl Biquad {
    /// pyloudnorm's `IIRfilter.generate_coefficients` for a high shelf.
    fn high_shelf(gain_db: f64, q: f64, fc: f64, rate: f64) -> Self {
        let a = 10f64.powf(gain_db / 40.0);
        let w0 = 2.0 * PI * (fc / rate);
        let alpha = w0.sin() / (2.0 * q);
        let cos = w0.cos();
        let b0 = a * ((a + 1.0) + (a - 1.0) * cos + 2.0 * a.sqrt() * alpha);
        let b1 = -2.0 * a * ((a - 1.0) + (a + 1.0) * cos);
        let b2 = a * ((a + 1.0) + (a - 1.0) * cos - 2.0 * a.sqrt() * alpha);
        let a0 = (a + 1.0) - (a - 1.0) * cos + 2.0 * a.sqrt() * alpha;
        let a1 = 2.0 * ((a - 1.0) - (a + 1.0) * cos);
        let a2 = (a + 1.0) - (a - 1.0) * cos - 2.0 * a.sqrt() * alpha;
        Self::normalised([b0, b1, b2], [a0, a1, a2])
    }

    /// pyloudnorm's `IIRfilter.generate_coefficients` for a high pass.
    fn high_pass(q: f64, fc: f64, rate: f64) -> Self {
        let w0 = 2.0 * PI * (fc / rate);
        let alpha = w0.sin() / (2.0 * q);
        let cos = w0.cos();
        let b0 = (1.0 + cos) / 2.0;
        let b1 = -(1.0 + cos);
        let b2 = (1.0 + cos) / 2.0;
        Self::normalised([b0, b1, b2], [1.0 + alpha, -2.0 * cos, 1.0 - alpha])
    }

    fn normalised(b: [f64; 3], a: [f64; 3]) -> Self {
        Biquad {
            b: b.map(|x| x / a[0]),
            a: a.map(|x| x / a[0]),
        }
    }

    /// Filters the next input sample; `state` starts at zero for a new
    /// signal.
    #[inline(always)]
    fn step(&self, state: &mut [f64; 2], input: f64) -> f64 {
        let output = state[0] + self.b[0] * input;
        state[0] = state[1] + input * self.b[1] - output * self.a[1];
        state[1] = input * self.b[2] - output * self.a[2];
        output
    }
}

/// Pipecat's volume of a chunk at one sample rate.
#[derive(Debug, Clone)]
pub struct ChunkVolume {
    rate: f64,
    high_shelf: Biquad,
    high_pass: Biquad,
}

impl ChunkVolume {
    /// A meter for chunks at `sample_rate`.
    pub fn new(sample_rate: u32) -> Self {
        let rate = f64::from(sample_rate.max(1));
        ChunkVolume {
            rate,
            high_shelf: Biquad::high_shelf(4.0, 1.0 / 2f64.sqrt(), 1500.0, rate),
            high_pass: Biquad::high_pass(0.5, 38.0, rate),
        }
    }

    /// The chunk's volume in `[0, 1]`.
    pub fn volume(&self, chunk: &[i16]) -> f64 {
        if chunk.is_empty() {
            return 0.0;
        }
        // pyloudnorm: T_g = block_size; one block from 0 to
        // int(T_g * (0 * step + 1) * rate), normalised by T_g * rate.
        let block_secs = chunk.len() as f64 / self.rate;
        let block_len = ((block_secs * self.rate) as usize).min(chunk.len());
        // Both filters and the sum in one pass, sample by sample: the same
        // operations in the same order as filtering the whole chunk twice
        // and then summing (so the same bits), without a buffer, and the
        // two filters' dependency chains overlap. Samples past the block
        // would not reach the sum, so they are not filtered.
        let (mut shelf, mut pass) = ([0.0; 2], [0.0; 2]);
        let mean_square = chunk[..block_len]
            .iter()
            .map(|&s| {
                let shelved = self.high_shelf.step(&mut shelf, f64::from(s));
                let y = self.high_pass.step(&mut pass, shelved);
                y * y
            })
            .sum::<f64>()
            / (block_secs * self.rate);
        // Digital silence is -inf, below the gate like any quiet block.
        let loudness = -0.691 + 10.0 * mean_square.log10();
        if loudness < ABSOLUTE_GATE_LUFS {
            return 0.0;
        }
        ((loudness - QUIETEST_LUFS) / (LOUDEST_LUFS - QUIETEST_LUFS)).clamp(0.0, 1.0)
    }
}

/// Pipecat's smoothed volume: `prev + 0.2 (volume - prev)`, from 0.
#[derive(Debug, Clone)]
pub struct SmoothedVolume {
    meter: ChunkVolume,
    smoothed: f64,
}

impl SmoothedVolume {
    /// Smoothed volume of chunks at `sample_rate`, starting from 0.
    pub fn new(sample_rate: u32) -> Self {
        SmoothedVolume {
            meter: ChunkVolume::new(sample_rate),
            smoothed: 0.0,
        }
    }

    /// Measures the next chunk; returns `(raw, smoothed)` volume.
    pub fn next(&mut self, chunk: &[i16]) -> (f64, f64) {
        let raw = self.meter.volume(chunk);
        self.smoothed += SMOOTHING * (raw - self.smoothed);
        (raw, self.smoothed)
    }

    /// Back to 0, as for a new stream.
    pub fn reset(&mut self) {
        self.smoothed = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, amp: f64, len: usize, rate: u32) -> Vec<i16> {
        (0..len)
            .map(|i| (amp * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()) as i16)
            .collect()
    }

    #[test]
    fn silence_reads_zero() {
        let meter = ChunkVolume::new(16_000);
        assert_eq!(meter.volume(&[0; 512]), 0.0);
        assert_eq!(meter.volume(&[]), 0.0);
    }

    #[test]
    fn volume_is_loudness_in_hundredths_of_the_range() {
        let meter = ChunkVolume::new(16_000);
        // 20 log10(32000 / √2) - 0.691 + about 0.7 dB of K-weighting at
        // 1 kHz: about 87 LUFS, past the top of the range.
        assert_eq!(meter.volume(&sine(1000.0, 32_000.0, 512, 16_000)), 1.0);
        // 20 dB less is 0.2 less.
        let soft = meter.volume(&sine(1000.0, 1000.0, 512, 16_000));
        let softer = meter.volume(&sine(1000.0, 100.0, 512, 16_000));
        assert!((soft - softer - 0.2).abs() < 0.01, "{soft} {softer}");
        assert!((0.7..0.8).contains(&soft), "{soft}");
    }

    #[test]
    fn smoothing_follows_pipecat() {
        let mut volume = SmoothedVolume::new(16_000);
        let tone = sine(1000.0, 32_000.0, 512, 16_000);
        let (raw, smoothed) = volume.next(&tone);
        assert_eq!((raw, smoothed), (1.0, 0.2));
        let (_, smoothed) = volume.next(&tone);
        assert!((smoothed - 0.36).abs() < 1e-12);
        volume.reset();
        assert_eq!(volume.next(&[0; 512]), (0.0, 0.0));
    }
}
