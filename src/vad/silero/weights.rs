//! The Silero VAD v6 weights, taken from the ONNX model and laid out for the
//! forward pass.
//!
//! The model file holds one complete network per sample rate, each in a
//! branch of the `If` on `sr`. A branch's rate is recognised by the length of
//! its STFT filters (256 taps at 16 kHz, 128 at 8 kHz), not by the
//! exporter's names, and every tensor is checked against the shape the
//! forward pass is written for.
//!
//! The STFT "convolution" of the graph is a fixed buffer, not a learned
//! weight: a periodic Hann window times the real and imaginary DFT rows. The
//! loader checks that this is so (to 1e-5) and keeps only the window, so the
//! forward pass can compute the spectrum with a real FFT: the same numbers
//! for a tenth of the work.

use std::f64::consts::PI;
use std::sync::{Arc, OnceLock};

use realfft::{RealFftPlanner, RealToComplex};

use super::layers::{Conv, HIDDEN, Lstm};
use crate::vad::VadError;
use crate::vad::onnx::{Tensor, float_tensors};

/// The Silero VAD v6 model shipped with voxpipe (`assets/silero/`, MIT).
const EMBEDDED_ONNX: &[u8] = include_bytes!("../../../assets/silero/silero_vad.onnx");

/// Frames of the STFT per chunk.
pub(crate) const STFT_FRAMES: usize = 4;
/// How far a basis row may stray from a windowed DFT row.
const DFT_TOLERANCE: f64 = 1e-5;

/// The encoder: four `Conv1d` (kernel 3, padding 1) of strides 1, 2, 2
/// and 1 on the STFT's frames, leaving one time step.
pub(crate) type Encoder = (
    Conv<STFT_FRAMES, 1>,
    Conv<STFT_FRAMES, 2>,
    Conv<2, 2>,
    Conv<1, 1>,
);

// Each layer's input is the previous one's output.
const _: () = assert!(
    Conv::<STFT_FRAMES, 1>::STEPS_OUT == STFT_FRAMES
        && Conv::<STFT_FRAMES, 2>::STEPS_OUT == 2
        && Conv::<2, 2>::STEPS_OUT == 1
);

/// The network for one sample rate.
pub(crate) struct RateWeights {
    pub(crate) rate: u32,
    /// New samples per chunk: 512 at 16 kHz, 256 at 8 kHz.
    pub(crate) chunk: usize,
    /// Samples of the previous chunk prepended to each input: 64 or 32.
    pub(crate) context: usize,
    /// Samples reflected past the end of the input before the STFT.
    pub(crate) reflect: usize,
    /// STFT frame length and hop.
    pub(crate) fft_len: usize,
    pub(crate) hop: usize,
    /// The STFT window (the basis's first row).
    pub(crate) window: Vec<f32>,
    pub(crate) fft: Arc<dyn RealToComplex<f32>>,
    pub(crate) encoder: Encoder,
    pub(crate) lstm: Lstm,
    pub(crate) head_weight: Vec<f32>,
    pub(crate) head_bias: f32,
}

/// The whole model: a network per supported rate.
pub struct SileroModel {
    rates: Vec<Arc<RateWeights>>,
}

impl std::fmt::Debug for SileroModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rates: Vec<u32> = self.rates.iter().map(|r| r.rate).collect();
        f.debug_struct("SileroModel")
            .field("rates", &rates)
            .finish()
    }
}

impl SileroModel {
    /// The rates a Silero model runs at.
    pub const SAMPLE_RATES: &'static [u32] = &[8_000, 16_000];

    /// The model shipped with voxpipe, loaded once per process and shared.
    pub fn embedded() -> Result<Arc<SileroModel>, VadError> {
        static MODEL: OnceLock<Result<Arc<SileroModel>, VadError>> = OnceLock::new();
        MODEL
            .get_or_init(|| SileroModel::from_onnx(EMBEDDED_ONNX).map(Arc::new))
            .clone()
    }

    /// Reads a Silero VAD v6 ONNX model (`silero_vad.onnx`).
    pub fn from_onnx(bytes: &[u8]) -> Result<SileroModel, VadError> {
        let tensors = float_tensors(bytes)?;
        // Group by the top-level subgraph each tensor lives in.
        let mut scopes: Vec<Option<&String>> = Vec::new();
        for tensor in &tensors {
            if !scopes.contains(&tensor.scope.first()) {
                scopes.push(tensor.scope.first());
            }
        }
        let mut rates = Vec::new();
        for scope in scopes {
            let branch: Vec<&Tensor> = tensors
                .iter()
                .filter(|t| t.scope.first() == scope)
                .collect();
            if let Some(weights) = RateWeights::from_branch(&branch)? {
                rates.push(Arc::new(weights));
            }
        }
        Ok(SileroModel { rates })
    }

    /// The network for every rate.
    pub(crate) fn rates(&self) -> Vec<Arc<RateWeights>> {
        self.rates.clone()
    }

    /// The network for `rate`.
    pub(crate) fn rate(&self, rate: u32) -> Result<Arc<RateWeights>, VadError> {
        self.rates
            .iter()
            .find(|r| r.rate == rate)
            .cloned()
            .ok_or(VadError::MissingRate { rate })
    }
}

/// Finds a tensor by its name in the PyTorch module, whatever prefix the
/// exporter gave it.
fn find<'a>(branch: &[&'a Tensor], name: &str) -> Option<&'a Tensor> {
    branch.iter().copied().find(|t| {
        t.name == name
            || t.name
                .strip_suffix(name)
                .is_some_and(|prefix| prefix.ends_with("__") || prefix.ends_with('.'))
    })
}

struct Branch<'a> {
    tensors: &'a [&'a Tensor],
    rate: u32,
}

impl Branch<'_> {
    fn get(&self, name: &'static str, shape: &[usize]) -> Result<&[f32], VadError> {
        let tensor = find(self.tensors, name).ok_or(VadError::MissingTensor {
            rate: self.rate,
            name,
        })?;
        if tensor.dims != shape {
            return Err(VadError::TensorShape {
                name,
                expected: shape.to_vec(),
                found: tensor.dims.clone(),
            });
        }
        Ok(&tensor.data)
    }

    /// The convolution `layer` of the encoder.
    fn conv<const STEPS_IN: usize, const STRIDE: usize>(
        &self,
        layer: usize,
        (in_channels, out_channels): (usize, usize),
    ) -> Result<Conv<STEPS_IN, STRIDE>, VadError> {
        const WEIGHTS: [&str; 4] = [
            "encoder.0.reparam_conv.weight",
            "encoder.1.reparam_conv.weight",
            "encoder.2.reparam_conv.weight",
            "encoder.3.reparam_conv.weight",
        ];
        const BIASES: [&str; 4] = [
            "encoder.0.reparam_conv.bias",
            "encoder.1.reparam_conv.bias",
            "encoder.2.reparam_conv.bias",
            "encoder.3.reparam_conv.bias",
        ];
        let weight = self.get(WEIGHTS[layer], &[out_channels, in_channels, 3])?;
        let bias = self.get(BIASES[layer], &[out_channels])?;
        Ok(Conv::new(in_channels, out_channels, weight, bias))
    }
}

impl RateWeights {
    /// The network in one branch of the model, or `None` if the branch holds
    /// no STFT basis (it is not a network).
    fn from_branch(tensors: &[&Tensor]) -> Result<Option<RateWeights>, VadError> {
        let Some(basis) = find(tensors, "stft.forward_basis_buffer") else {
            return Ok(None);
        };
        let (rate, fft_len) = match basis.dims.as_slice() {
            [_, 1, 256] => (16_000, 256),
            [_, 1, 128] => (8_000, 128),
            found => {
                return Err(VadError::TensorShape {
                    name: "stft.forward_basis_buffer",
                    expected: vec![258, 1, 256],
                    found: found.to_vec(),
                });
            }
        };
        let branch = Branch { tensors, rate };
        let bins = fft_len / 2 + 1;
        let basis = branch.get("stft.forward_basis_buffer", &[2 * bins, 1, fft_len])?;
        let window =
            windowed_dft_window(basis, fft_len).ok_or(VadError::NotWindowedDft { rate })?;
        // Channels in and out of each layer (the strides are in the type).
        let encoder = (
            branch.conv(0, (bins, HIDDEN))?,
            branch.conv(1, (HIDDEN, 64))?,
            branch.conv(2, (64, 64))?,
            branch.conv(3, (64, HIDDEN))?,
        );
        let gates = 4 * HIDDEN;
        let weight_ih = branch.get("decoder.rnn.weight_ih", &[gates, HIDDEN])?;
        let weight_hh = branch.get("decoder.rnn.weight_hh", &[gates, HIDDEN])?;
        let bias_ih = branch.get("decoder.rnn.bias_ih", &[gates])?;
        let bias_hh = branch.get("decoder.rnn.bias_hh", &[gates])?;
        let bias: Vec<f32> = bias_ih.iter().zip(bias_hh).map(|(a, b)| a + b).collect();
        let lstm = Lstm::new(weight_ih, weight_hh, &bias);
        let head_weight = branch
            .get("decoder.decoder.2.weight", &[1, HIDDEN, 1])?
            .to_vec();
        let head_bias = branch.get("decoder.decoder.2.bias", &[1])?[0];
        let chunk = 2 * fft_len;
        Ok(Some(RateWeights {
            rate,
            chunk,
            context: chunk / 8,
            reflect: fft_len / 4,
            fft_len,
            hop: fft_len / 2,
            window,
            fft: RealFftPlanner::<f32>::new().plan_fft_forward(fft_len),
            encoder,
            lstm,
            head_weight,
            head_bias,
        }))
    }
}

/// The window `w` if `basis` (`[2 * bins][len]`) is `w[n] cos(2πkn/len)`
/// for its first `bins` rows and `∓w[n] sin(2πkn/len)` for the rest.
fn windowed_dft_window(basis: &[f32], len: usize) -> Option<Vec<f32>> {
    let bins = len / 2 + 1;
    let window = &basis[..len];
    let (mut cos_err, mut minus_sin_err, mut plus_sin_err) = (0f64, 0f64, 0f64);
    for k in 0..bins {
        for (n, w) in window.iter().enumerate() {
            let phase = 2.0 * PI * (k * n % len) as f64 / len as f64;
            let w = f64::from(*w);
            let re = f64::from(basis[k * len + n]);
            let im = f64::from(basis[(bins + k) * len + n]);
            cos_err = cos_err.max((re - w * phase.cos()).abs());
            minus_sin_err = minus_sin_err.max((im + w * phase.sin()).abs());
            plus_sin_err = plus_sin_err.max((im - w * phase.sin()).abs());
        }
    }
    (cos_err < DFT_TOLERANCE && minus_sin_err.min(plus_sin_err) < DFT_TOLERANCE)
        .then(|| window.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_model_has_both_rates_with_the_expected_layout() {
        let model = SileroModel::embedded().unwrap();
        let r16 = model.rate(16_000).unwrap();
        assert_eq!((r16.chunk, r16.context, r16.fft_len), (512, 64, 256));
        let r8 = model.rate(8_000).unwrap();
        assert_eq!((r8.chunk, r8.context, r8.fft_len), (256, 32, 128));
        assert_eq!(r8.encoder.0.in_channels, 65);
        assert!(matches!(
            model.rate(22_050),
            Err(VadError::MissingRate { rate: 22_050 })
        ));
    }

    #[test]
    fn a_basis_that_is_not_a_windowed_dft_is_refused() {
        let len = 8;
        let bins = len / 2 + 1;
        let mut basis = vec![0f32; 2 * bins * len];
        for k in 0..bins {
            for n in 0..len {
                let phase = 2.0 * PI * (k * n) as f64 / len as f64;
                basis[k * len + n] = phase.cos() as f32;
                basis[(bins + k) * len + n] = -phase.sin() as f32;
            }
        }
        assert!(windowed_dft_window(&basis, len).is_some());
        basis[3 * len + 2] += 0.01;
        assert!(windowed_dft_window(&basis, len).is_none());
    }
}
