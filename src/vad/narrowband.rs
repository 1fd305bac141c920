//! [`NarrowbandDetector`]: whether audio at a wideband rate came from an
//! 8 kHz source, such as a phone call the transport upsampled for a 16 kHz
//! pipeline.
//!
//! Silero runs at 8 kHz too, and on telephone audio that is the better
//! model, as Pipecat 1.14 uses it for 8 kHz input (upsampled 8 kHz speech
//! scored at 16 kHz was measured starting late in noise, issue 16). Audio upsampled from 8 kHz has
//! nothing above 4 kHz but the resampler's stop band, while any microphone
//! (its noise floor, speech's fricatives) puts energy there. So the
//! detector takes the spectrum of 32 ms blocks (Hann window; its side lobes
//! are far below the threshold a dozen bins away) and sums the energy above
//! [`EDGE_HZ`] and in all, over blocks louder than a floor. After
//! [`BLOCKS_NEEDED`] such blocks the source is narrowband when the share
//! above the edge is under [`MAX_HIGH_SHARE`] (-60 dB), wideband otherwise.
//! Digital silence decides nothing.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

/// The lowest frequency counted as above an 8 kHz source's band, with a
/// guard above its 4 kHz Nyquist for the resampler's transition.
const EDGE_HZ: f64 = 4250.0;
/// The largest share of the energy above [`EDGE_HZ`] for a narrowband
/// source (-60 dB).
const MAX_HIGH_SHARE: f64 = 1e-6;
/// Blocks louder than the floor needed for a decision.
const BLOCKS_NEEDED: u32 = 8;
/// Samples per block (32 ms at 16 kHz).
const BLOCK: usize = 512;
/// A block counts when its mean square is above this (-60 dBFS).
const FLOOR_MEAN_SQUARE: f64 = 32768.0 * 32768.0 * 1e-6;

/// What the detector found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Band {
    /// Nothing above 4 kHz: an 8 kHz source.
    Narrow,
    /// Energy above 4 kHz.
    Wide,
}

/// Decides whether a stream is narrowband. See the module docs.
pub struct NarrowbandDetector {
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    block: Vec<f32>,
    spectrum: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
    pending: Vec<i16>,
    /// The first bin above [`EDGE_HZ`].
    edge_bin: usize,
    high: f64,
    total: f64,
    blocks: u32,
    decision: Option<Band>,
}

impl std::fmt::Debug for NarrowbandDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NarrowbandDetector")
            .field("blocks", &self.blocks)
            .field("decision", &self.decision)
            .finish_non_exhaustive()
    }
}

impl NarrowbandDetector {
    /// A detector for audio at `sample_rate`.
    pub fn new(sample_rate: u32) -> Self {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(BLOCK);
        let window = (0..BLOCK)
            .map(|i| {
                let phase = 2.0 * std::f64::consts::PI * i as f64 / BLOCK as f64;
                (0.5 - 0.5 * phase.cos()) as f32
            })
            .collect();
        let bin_hz = f64::from(sample_rate.max(1)) / BLOCK as f64;
        NarrowbandDetector {
            spectrum: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            block: vec![0.0; BLOCK],
            window,
            fft,
            pending: Vec::with_capacity(BLOCK),
            edge_bin: (EDGE_HZ / bin_hz).ceil() as usize,
            high: 0.0,
            total: 0.0,
            blocks: 0,
            decision: None,
        }
    }

    /// Looks at the next samples of the stream; the decision once there is
    /// one (it never changes after).
    pub fn push(&mut self, samples: &[i16]) -> Option<Band> {
        for &sample in samples {
            if self.decision.is_some() {
                break;
            }
            self.pending.push(sample);
            if self.pending.len() == BLOCK {
                self.measure_block();
                self.pending.clear();
            }
        }
        self.decision
    }

    fn measure_block(&mut self) {
        let mean_square = self
            .pending
            .iter()
            .map(|&s| f64::from(s) * f64::from(s))
            .sum::<f64>()
            / BLOCK as f64;
        if mean_square < FLOOR_MEAN_SQUARE {
            return;
        }
        for ((x, s), w) in self.block.iter_mut().zip(&self.pending).zip(&self.window) {
            *x = f32::from(*s) * w;
        }
        if self
            .fft
            .process_with_scratch(&mut self.block, &mut self.spectrum, &mut self.scratch)
            .is_err()
        {
            // Only wrong buffer lengths fail, and the plan made every
            // buffer: unreachable, and a block left out decides nothing.
            return;
        }
        for (k, bin) in self.spectrum.iter().enumerate() {
            let power = f64::from(bin.norm_sqr());
            self.total += power;
            if k >= self.edge_bin {
                self.high += power;
            }
        }
        self.blocks += 1;
        if self.blocks >= BLOCKS_NEEDED {
            self.decision = Some(if self.high <= MAX_HIGH_SHARE * self.total {
                Band::Narrow
            } else {
                Band::Wide
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::StreamResampler;

    /// Deterministic white noise.
    fn noise(len: usize, amplitude: f64) -> Vec<i16> {
        let mut state = 0x2545_f491_u32;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                ((f64::from(state) / f64::from(u32::MAX) - 0.5) * 2.0 * amplitude) as i16
            })
            .collect()
    }

    #[test]
    fn upsampled_8k_is_narrow_and_16k_noise_is_wide() {
        let mut upsampler = StreamResampler::new(8_000, 16_000).unwrap();
        let mut upsampled = Vec::new();
        upsampler.process(&noise(8_000, 3000.0), &mut upsampled);
        let mut detector = NarrowbandDetector::new(16_000);
        assert_eq!(detector.push(&upsampled), Some(Band::Narrow));

        let mut detector = NarrowbandDetector::new(16_000);
        assert_eq!(detector.push(&noise(16_000, 3000.0)), Some(Band::Wide));
    }

    #[test]
    fn silence_decides_nothing() {
        let mut detector = NarrowbandDetector::new(16_000);
        assert_eq!(detector.push(&[0; 16_000]), None);
        assert_eq!(detector.push(&noise(BLOCK * 7, 30_000.0)), None);
        assert_eq!(detector.push(&noise(BLOCK, 30_000.0)), Some(Band::Wide));
    }
}
