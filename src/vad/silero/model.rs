//! The Silero VAD v6 forward pass, written out by hand.
//!
//! Per chunk (numbers for 16 kHz; 8 kHz halves the first three):
//!
//! 1. input: 64 samples of context (the end of the previous chunk) and the
//!    512 new samples, as `sample / 32768`; 64 samples reflected past the
//!    end (640 in all);
//! 2. STFT: 4 frames of 256 samples, hop 128, Hann window, magnitude of the
//!    129 bins;
//! 3. encoder: four `Conv1d` (kernel 3, padding 1, strides 1, 2, 2, 1;
//!    129 → 128 → 64 → 64 → 128 channels), each followed by a ReLU, leaving
//!    one 128-wide time step;
//! 4. decoder: an LSTM cell (128 → 128) carrying `(h, c)` from chunk to
//!    chunk, then ReLU, a 1×1 convolution to one value, and a sigmoid.
//!
//! The `[2, 1, 128]` state of the ONNX graph is `(h, c)`. Everything is
//! `f32`, as in the reference runtime; on the sample speech the
//! probabilities agree with onnxruntime's to 9e-7 at 16 kHz and 4e-6 at
//! 8 kHz (the test against the committed reference numbers allows 1e-4).
//!
//! # Speed
//!
//! The convolutions and the LSTM are register-blocked outer products over
//! blocks of output channels (`kernels.rs`; weights laid out at load time
//! in the order they are read, `layers.rs`), in safe Rust that vectorises
//! with the baseline instructions of the target (SSE2, NEON); where the CPU
//! has AVX2 and FMA (detected at run time) the same code runs eight lanes
//! wide with fused multiply-adds, the activations too. Under callgrind
//! (`benches/vad.rs`, `silero_chunk`) a chunk takes 71k instructions at
//! 8 kHz and 98k at 16 kHz, of which 34k and 44k are the vector
//! multiply-adds the arithmetic needs (dot products over im2col columns
//! took 309k and 384k); 14.9 and 19.3 µs on the project's machine.
//!
//! # Allocation
//!
//! Every buffer is allocated in [`SileroVad::new`]; a chunk allocates
//! nothing.

use std::sync::Arc;

use realfft::num_complex::Complex;

use super::kernels::{conv_relu, lstm_step, sigmoid};
use super::layers::HIDDEN;
use super::weights::{RateWeights, STFT_FRAMES, SileroModel};
use crate::vad::{VadError, VoiceModel};

/// Silero VAD for one audio stream: the model's weights (shared) and the
/// stream's state.
pub struct SileroVad {
    weights: Arc<RateWeights>,
    /// The network for each rate the model has, to switch to.
    rates: Vec<Arc<RateWeights>>,
    /// Context, new samples, then the reflected end.
    input: Vec<f32>,
    frame: Vec<f32>,
    spectrum: Vec<Complex<f32>>,
    fft_scratch: Vec<Complex<f32>>,
    /// The spectrum's magnitudes, `[STFT_FRAMES][bins]`, then the first
    /// three layers' outputs, `[step][channel]`.
    activations: [Vec<f32>; 4],
    /// The encoder's output, then `h`: the LSTM cell's input.
    lstm_input: Vec<f32>,
    /// The LSTM's next `h`.
    h: Vec<f32>,
    /// The LSTM cell state `c`.
    cell: Vec<f32>,
}

impl std::fmt::Debug for SileroVad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SileroVad")
            .field("sample_rate", &self.weights.rate)
            .finish_non_exhaustive()
    }
}

impl SileroVad {
    /// A detector at `sample_rate` (8000 or 16000) on the model shipped with
    /// voxpipe.
    pub fn new(sample_rate: u32) -> Result<Self, VadError> {
        Self::with_model(&*SileroModel::embedded()?, sample_rate)
    }

    /// A detector at `sample_rate` on `model`.
    pub fn with_model(model: &SileroModel, sample_rate: u32) -> Result<Self, VadError> {
        if !SileroModel::SAMPLE_RATES.contains(&sample_rate) {
            return Err(VadError::UnsupportedRate {
                engine: "silero",
                rate: sample_rate,
                supported: SileroModel::SAMPLE_RATES,
            });
        }
        let weights = model.rate(sample_rate)?;
        Ok(Self::for_rate(weights, model.rates()))
    }

    /// A detector running `weights`, able to switch to any of `rates`.
    fn for_rate(weights: Arc<RateWeights>, rates: Vec<Arc<RateWeights>>) -> Self {
        let bins = weights.fft_len / 2 + 1;
        SileroVad {
            input: vec![0.0; weights.context + weights.chunk + weights.reflect],
            frame: vec![0.0; weights.fft_len],
            spectrum: weights.fft.make_output_vec(),
            fft_scratch: weights.fft.make_scratch_vec(),
            activations: [
                vec![0.0; bins * STFT_FRAMES],
                vec![0.0; weights.encoder.0.output_len()],
                vec![0.0; weights.encoder.1.output_len()],
                vec![0.0; weights.encoder.2.output_len()],
            ],
            lstm_input: vec![0.0; 2 * HIDDEN],
            h: vec![0.0; HIDDEN],
            cell: vec![0.0; HIDDEN],
            weights,
            rates,
        }
    }

    /// The speech probability of the next [`chunk_samples`](VoiceModel::chunk_samples) samples of the
    /// stream, given as floats in `[-1, 1]`. A shorter chunk is padded with
    /// silence; extra samples are ignored.
    pub fn predict(&mut self, chunk: &[f32]) -> f32 {
        self.run(|new| {
            for (x, s) in new.iter_mut().zip(chunk) {
                *x = *s;
            }
        })
    }

    /// Runs the network on the next chunk, which `fill` writes over zeros.
    fn run(&mut self, fill: impl FnOnce(&mut [f32])) -> f32 {
        let (context, len) = (self.weights.context, self.weights.chunk);
        // The last `context` samples of the previous chunk come first.
        self.input.copy_within(len..len + context, 0);
        let new = &mut self.input[context..context + len];
        new.fill(0.0);
        fill(new);
        self.reflect_end();
        self.spectrum_magnitudes();
        self.encode();
        self.decode()
    }

    /// Reflects the input past its end (`numpy.pad(mode="reflect")`: the
    /// last sample is the mirror and is not repeated).
    fn reflect_end(&mut self) {
        let end = self.weights.context + self.weights.chunk;
        for j in 0..self.weights.reflect {
            self.input[end + j] = self.input[end - 2 - j];
        }
    }

    fn spectrum_magnitudes(&mut self) {
        let w = &*self.weights;
        let bins = w.fft_len / 2 + 1;
        let magnitudes = &mut self.activations[0];
        for t in 0..STFT_FRAMES {
            let start = t * w.hop;
            for ((f, x), win) in self
                .frame
                .iter_mut()
                .zip(&self.input[start..start + w.fft_len])
                .zip(&w.window)
            {
                *f = x * win;
            }
            if w.fft
                .process_with_scratch(&mut self.frame, &mut self.spectrum, &mut self.fft_scratch)
                .is_err()
            {
                // Only wrong buffer lengths fail, and every buffer was made
                // by the plan itself: unreachable, but silence is the safe
                // answer.
                self.spectrum.fill(Complex::new(0.0, 0.0));
            }
            for (k, bin) in self.spectrum.iter().enumerate() {
                magnitudes[t * bins + k] = (bin.re * bin.re + bin.im * bin.im).sqrt();
            }
        }
    }

    fn encode(&mut self) {
        let [spectrum, first, second, third] = &mut self.activations;
        let layers = &self.weights.encoder;
        conv_relu(&layers.0, spectrum, first);
        conv_relu(&layers.1, first, second);
        conv_relu(&layers.2, second, third);
        // One time step of HIDDEN channels is left.
        conv_relu(&layers.3, third, &mut self.lstm_input[..HIDDEN]);
    }

    fn decode(&mut self) -> f32 {
        let w = &*self.weights;
        lstm_step(&w.lstm, &self.lstm_input, &mut self.cell, &mut self.h);
        self.lstm_input[HIDDEN..].copy_from_slice(&self.h);
        let relu_h = self.h.iter().map(|x| x.max(0.0));
        let logit = w.head_bias + relu_h.zip(&w.head_weight).map(|(x, w)| x * w).sum::<f32>();
        sigmoid([logit])[0]
    }
}

impl VoiceModel for SileroVad {
    fn sample_rate(&self) -> u32 {
        self.weights.rate
    }

    fn chunk_samples(&self) -> usize {
        self.weights.chunk
    }

    fn voice_confidence(&mut self, chunk: &[i16]) -> f32 {
        self.run(|new| {
            for (x, s) in new.iter_mut().zip(chunk) {
                *x = f32::from(*s) / 32768.0;
            }
        })
    }

    fn reset(&mut self) {
        self.input.fill(0.0);
        self.lstm_input.fill(0.0);
        self.h.fill(0.0);
        self.cell.fill(0.0);
    }

    fn set_sample_rate(&mut self, rate: u32) -> bool {
        if rate == self.weights.rate {
            return true;
        }
        let Some(weights) = self.rates.iter().find(|w| w.rate == rate).cloned() else {
            return false;
        };
        *self = Self::for_rate(weights, std::mem::take(&mut self.rates));
        true
    }

    fn resets_in_clear_silence(&self) -> bool {
        true
    }
}
