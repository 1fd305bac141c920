//! Smart Turn v3.2's weights and quantisation parameters, read from the
//! shipped ONNX file.
//!
//! The file is a static "QDQ" int8 model: every activation passes through
//! a `QuantizeLinear`/`DequantizeLinear` pair with a fixed scale and zero
//! point (`{name}_scale`, `{name}_zero_point`), every weight is int8 with a
//! per-output-channel scale and a zero point of 0 (`{name}_quantized`,
//! `{name}_scale`). The exporter named the encoder's tensors by number
//! (`val_25`), so [`LAYERS`] lists, per layer, the names this file uses;
//! a file with other names is refused with the name that is missing.

use std::collections::HashMap;

use super::lut::{self, ColumnLut};
use super::qgemm::QLinear;
use crate::vad::VadError;
use crate::vad::onnx::{Tensor, TensorData, tensors};

/// Channels of the encoder (Whisper tiny).
pub(crate) const WIDTH: usize = 384;
/// Attention heads.
pub(crate) const HEADS: usize = 6;
/// Channels per head.
pub(crate) const HEAD_WIDTH: usize = WIDTH / HEADS;
/// Hidden width of the feed-forward blocks.
pub(crate) const FF_WIDTH: usize = 4 * WIDTH;
/// Time steps after the strided convolution.
pub(crate) const STEPS: usize = 400;
/// Width of the classifier's first layer.
const HIDDEN: usize = 256;
/// Width of the classifier's second layer.
const HIDDEN_2: usize = 64;

/// A quantised activation: `value = scale * (q - zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Quant {
    pub(crate) scale: f32,
    pub(crate) zero_point: u8,
}

impl Quant {
    /// ONNX `QuantizeLinear` as MLAS computes it: divide, round half to
    /// even, add the zero point, saturate.
    #[inline(always)]
    pub(crate) fn quantize(self, x: f32) -> u8 {
        ((x / self.scale).round_ties_even() + f32::from(self.zero_point)).clamp(0.0, 255.0) as u8
    }

    /// [`quantize`](Quant::quantize) of each of `values` into `out`.
    pub(crate) fn quantize_all(self, values: &[f32], out: &mut [u8]) {
        let mut whole = 0;
        #[cfg(target_arch = "x86_64")]
        if super::qgemm::avx2::available() {
            whole = values.len() / 8 * 8;
            let (values, out) = (&values[..whole], &mut out[..whole]);
            super::qgemm::avx2::quantize(self.scale, self.zero_point, values, out);
        }
        for (out, x) in out[whole..].iter_mut().zip(&values[whole..]) {
            *out = self.quantize(*x);
        }
    }

    /// ONNX `DequantizeLinear`.
    #[inline(always)]
    pub(crate) fn dequantize(self, q: u8) -> f32 {
        (i32::from(q) - i32::from(self.zero_point)) as f32 * self.scale
    }
}

/// The names one encoder layer's tensors have in the file.
struct LayerNames {
    /// The quantised output of the attention block's layer norm.
    norm_1: &'static str,
    /// Weight and output names of the key, query and value projections.
    key: (&'static str, &'static str),
    query: (&'static str, &'static str),
    value: (&'static str, &'static str),
    /// Queries and keys after the `1/sqrt(sqrt(64))` scale each.
    query_scaled: &'static str,
    key_scaled: &'static str,
    /// The scores `q·k` and their softmax.
    scores: &'static str,
    probabilities: &'static str,
    /// The values after their bias.
    value_biased: &'static str,
    /// The heads' output (scale, zero point).
    context: (&'static str, &'static str),
    out: (&'static str, &'static str),
    norm_2: &'static str,
    fc1: (&'static str, &'static str),
    gelu: &'static str,
    fc2: (&'static str, &'static str),
}

const LAYERS: [LayerNames; 4] = [
    LayerNames {
        norm_1: "layer_norm",
        key: ("val_25", "linear_1"),
        query: ("val_17", "val_18"),
        value: ("val_32", "val_33"),
        query_scaled: "val_64",
        key_scaled: "val_67",
        scores: "val_68",
        probabilities: "val_69",
        value_biased: "transpose_2",
        context: ("_unsafe_view", "scaled_dot_product_attention"),
        out: ("val_75", "val_76"),
        norm_2: "layer_norm_1",
        fc1: ("val_79", "val_80"),
        gelu: "gelu_2",
        fc2: ("val_88", "val_89"),
    },
    LayerNames {
        norm_1: "layer_norm_2",
        key: ("val_100", "linear_7"),
        query: ("val_92", "val_93"),
        value: ("val_107", "val_108"),
        query_scaled: "val_137",
        key_scaled: "val_140",
        scores: "val_141",
        probabilities: "val_142",
        value_biased: "transpose_6",
        context: ("_unsafe_view_1", "scaled_dot_product_attention_1"),
        out: ("val_148", "val_149"),
        norm_2: "layer_norm_3",
        fc1: ("val_152", "val_153"),
        gelu: "gelu_3",
        fc2: ("val_161", "val_162"),
    },
    LayerNames {
        norm_1: "layer_norm_4",
        key: ("val_173", "linear_13"),
        query: ("val_165", "val_166"),
        value: ("val_180", "val_181"),
        query_scaled: "val_210",
        key_scaled: "val_213",
        scores: "val_214",
        probabilities: "val_215",
        value_biased: "transpose_10",
        context: ("_unsafe_view_2", "scaled_dot_product_attention_2"),
        out: ("val_221", "val_222"),
        norm_2: "layer_norm_5",
        fc1: ("val_225", "val_226"),
        gelu: "gelu_4",
        fc2: ("val_234", "val_235"),
    },
    LayerNames {
        norm_1: "layer_norm_6",
        key: ("val_246", "linear_19"),
        query: ("val_238", "val_239"),
        value: ("val_253", "val_254"),
        query_scaled: "val_283",
        key_scaled: "val_286",
        scores: "val_287",
        probabilities: "val_288",
        value_biased: "transpose_14",
        context: ("_unsafe_view_3", "scaled_dot_product_attention_3"),
        out: ("val_294", "val_295"),
        norm_2: "layer_norm_7",
        fc1: ("val_298", "val_299"),
        gelu: "gelu_5",
        fc2: ("val_307", "val_308"),
    },
];

/// A layer norm's gain and bias.
#[derive(Debug, Clone)]
pub(crate) struct Norm {
    pub(crate) gain: Vec<f32>,
    pub(crate) bias: Vec<f32>,
}

/// One encoder layer.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub(crate) norm_1: Norm,
    pub(crate) norm_1_out: Quant,
    pub(crate) key: QLinear,
    /// Keys to `key_scaled`: times the attention scale.
    pub(crate) key_lut: ColumnLut,
    pub(crate) key_scaled: Quant,
    pub(crate) query: QLinear,
    /// Queries to `query_scaled`: plus the bias, times the attention scale.
    pub(crate) query_lut: ColumnLut,
    pub(crate) query_scaled: Quant,
    pub(crate) value: QLinear,
    /// Values to `value_biased`: plus the bias.
    pub(crate) value_lut: ColumnLut,
    pub(crate) value_biased: Quant,
    pub(crate) scores: Quant,
    pub(crate) probabilities: Quant,
    pub(crate) context: Quant,
    pub(crate) out: QLinear,
    pub(crate) out_out: Quant,
    pub(crate) out_bias: Vec<f32>,
    pub(crate) norm_2: Norm,
    pub(crate) norm_2_out: Quant,
    pub(crate) fc1: QLinear,
    /// The first feed-forward layer's outputs to the second's inputs: plus
    /// the bias, GELU.
    pub(crate) fc1_lut: ColumnLut,
    pub(crate) fc2: QLinear,
    pub(crate) fc2_out: Quant,
    pub(crate) fc2_bias: Vec<f32>,
}

/// The whole network.
#[derive(Debug, Clone)]
pub(crate) struct Weights {
    pub(crate) input: Quant,
    /// Both convolutions as linear maps over `[tap][channel]` windows.
    pub(crate) conv1: QLinear,
    /// The first convolution's outputs to the second's inputs: GELU.
    pub(crate) conv1_lut: ColumnLut,
    pub(crate) conv1_gelu: Quant,
    pub(crate) conv2: QLinear,
    /// The second convolution's outputs, after GELU, in float.
    pub(crate) conv2_gelu: Vec<f32>,
    /// `[STEPS][WIDTH]`.
    pub(crate) positions: Vec<f32>,
    pub(crate) layers: Vec<Layer>,
    pub(crate) final_norm: Norm,
    pub(crate) final_norm_out: Quant,
    pub(crate) pool_1: QLinear,
    /// The attention pool's hidden layer to its second: plus the bias, tanh.
    pub(crate) pool_lut: ColumnLut,
    pub(crate) pool_2: QLinear,
    pub(crate) pool_2_out: Quant,
    pub(crate) pool_2_bias: f32,
    pub(crate) pooled: Quant,
    pub(crate) classifier_1: QLinear,
    pub(crate) classifier_1_out: Quant,
    pub(crate) classifier_norm: Norm,
    pub(crate) classifier_gelu_1: Quant,
    pub(crate) classifier_2: QLinear,
    pub(crate) classifier_2_out: Quant,
    pub(crate) classifier_gelu_2: Quant,
    pub(crate) classifier_3: QLinear,
    pub(crate) classifier_3_out: Quant,
}

/// The tensors of the file, by name.
struct Named(HashMap<String, Tensor<TensorData>>);

fn problem(name: &str, problem: &'static str) -> VadError {
    VadError::SmartTurnTensor {
        name: name.to_owned(),
        problem,
    }
}

impl Named {
    fn get(&self, name: &str) -> Result<&Tensor<TensorData>, VadError> {
        self.0.get(name).ok_or_else(|| problem(name, "missing"))
    }

    fn floats(&self, name: &str, len: usize) -> Result<Vec<f32>, VadError> {
        match &self.get(name)?.data {
            TensorData::F32(v) if v.len() == len => Ok(v.clone()),
            _ => Err(problem(name, "not the float tensor of the expected size")),
        }
    }

    fn float(&self, name: &str) -> Result<f32, VadError> {
        Ok(self.floats(name, 1)?[0])
    }

    fn quant(&self, name: &str) -> Result<Quant, VadError> {
        let zp_name = format!("{name}_zero_point");
        let zero_point = match &self.get(&zp_name)?.data {
            TensorData::U8(v) if v.len() == 1 => v[0],
            _ => return Err(problem(&zp_name, "not a uint8 scalar")),
        };
        Ok(Quant {
            scale: self.float(&format!("{name}_scale"))?,
            zero_point,
        })
    }

    /// An int8 weight with per-channel scales and zero points of 0, as
    /// `[out][in]` (transposing a `[in][out]` MatMul weight).
    fn weight(
        &self,
        name: &str,
        shape: &[usize],
        transpose: bool,
    ) -> Result<(Vec<i8>, Vec<f32>), VadError> {
        let q_name = format!("{name}_quantized");
        let tensor = self.get(&q_name)?;
        let values = match &tensor.data {
            TensorData::I8(v) if tensor.dims == shape => v,
            _ => return Err(problem(&q_name, "not an int8 tensor of the expected shape")),
        };
        let outputs = if transpose { shape[1] } else { shape[0] };
        let zp_name = format!("{name}_zero_point");
        match &self.get(&zp_name)?.data {
            TensorData::I8(v) if v.iter().all(|z| *z == 0) => {}
            _ => return Err(problem(&zp_name, "not int8 zeros")),
        }
        let scale = self.floats(&format!("{name}_scale"), outputs)?;
        let weights = if transpose {
            let (k, n) = (shape[0], shape[1]);
            (0..n * k).map(|i| values[(i % k) * n + i / k]).collect()
        } else {
            values.clone()
        };
        Ok((weights, scale))
    }

    /// A `MatMul` weight `name` (`[k][n]`) from input `input` to output
    /// `output`.
    fn matmul(
        &self,
        name: &str,
        k: usize,
        n: usize,
        input: Quant,
        output: Quant,
    ) -> Result<QLinear, VadError> {
        let (weights, scale) = self.weight(name, &[k, n], true)?;
        Ok(QLinear::new(
            k,
            n,
            weights,
            &scale,
            None,
            (input.scale, input.zero_point),
            (output.scale, output.zero_point),
        ))
    }

    fn bias(&self, name: &str, n: usize) -> Result<Vec<i32>, VadError> {
        let q_name = format!("{name}_quantized");
        match &self.get(&q_name)?.data {
            TensorData::I32(v) if v.len() == n => Ok(v.clone()),
            _ => Err(problem(&q_name, "not an int32 vector of the expected size")),
        }
    }

    /// A `Gemm` (`transB`) layer `inner.classifier.{index}`.
    fn gemm(
        &self,
        index: usize,
        k: usize,
        n: usize,
        input: Quant,
        output: Quant,
    ) -> Result<QLinear, VadError> {
        let prefix = format!("inner.classifier.{index}");
        let (weights, scale) = self.weight(&format!("{prefix}.weight"), &[n, k], false)?;
        let bias = self.bias(&format!("{prefix}.bias"), n)?;
        Ok(QLinear::new(
            k,
            n,
            weights,
            &scale,
            Some(&bias),
            (input.scale, input.zero_point),
            (output.scale, output.zero_point),
        ))
    }

    /// A `Conv` with kernel 3 as a linear map over `[tap][channel]`.
    fn conv(
        &self,
        name: &str,
        channels: usize,
        input: Quant,
        output: Quant,
    ) -> Result<QLinear, VadError> {
        let (weights, scale) =
            self.weight(&format!("{name}.weight"), &[WIDTH, channels, 3], false)?;
        // [out][channel][tap] -> [out][tap][channel]
        let k = 3 * channels;
        let weights = (0..WIDTH * k)
            .map(|i| {
                let (o, rest) = (i / k, i % k);
                let (tap, c) = (rest / channels, rest % channels);
                weights[o * k + c * 3 + tap]
            })
            .collect();
        let bias = self.bias(&format!("{name}.bias"), WIDTH)?;
        Ok(QLinear::new(
            k,
            WIDTH,
            weights,
            &scale,
            Some(&bias),
            (input.scale, input.zero_point),
            (output.scale, output.zero_point),
        ))
    }

    fn norm(&self, prefix: &str, n: usize) -> Result<Norm, VadError> {
        Ok(Norm {
            gain: self.floats(&format!("{prefix}.weight"), n)?,
            bias: self.floats(&format!("{prefix}.bias"), n)?,
        })
    }

    fn layer(
        &self,
        index: usize,
        names: &LayerNames,
        attention_scale: f32,
    ) -> Result<Layer, VadError> {
        let prefix = format!("inner.encoder.layers.{index}");
        let norm_1_out = self.quant(names.norm_1)?;
        let key_out = self.quant(names.key.1)?;
        let key_scaled = self.quant(names.key_scaled)?;
        let query_out = self.quant(names.query.1)?;
        let query_bias = self.floats(&format!("{prefix}.self_attn.q_proj.bias"), WIDTH)?;
        let query_scaled = self.quant(names.query_scaled)?;
        let value_out = self.quant(names.value.1)?;
        let value_bias = self.floats(&format!("{prefix}.self_attn.v_proj.bias"), WIDTH)?;
        let value_biased = self.quant(names.value_biased)?;
        let context = Quant {
            scale: self.quant(names.context.0)?.scale,
            zero_point: self.quant(names.context.1)?.zero_point,
        };
        let out_out = self.quant(names.out.1)?;
        let norm_2_out = self.quant(names.norm_2)?;
        let fc1_out = self.quant(names.fc1.1)?;
        let fc1_bias = self.floats(&format!("{prefix}.fc1.bias"), FF_WIDTH)?;
        let gelu = self.quant(names.gelu)?;
        let fc2_out = self.quant(names.fc2.1)?;
        Ok(Layer {
            norm_1: self.norm(&format!("{prefix}.self_attn_layer_norm"), WIDTH)?,
            key: self.matmul(names.key.0, WIDTH, WIDTH, norm_1_out, key_out)?,
            key_lut: ColumnLut::new(1, |_, q| {
                key_scaled.quantize(key_out.dequantize(q) * attention_scale)
            }),
            query: self.matmul(names.query.0, WIDTH, WIDTH, norm_1_out, query_out)?,
            query_lut: ColumnLut::new(WIDTH, |c, q| {
                query_scaled.quantize((query_out.dequantize(q) + query_bias[c]) * attention_scale)
            }),
            value: self.matmul(names.value.0, WIDTH, WIDTH, norm_1_out, value_out)?,
            value_lut: ColumnLut::new(WIDTH, |c, q| {
                value_biased.quantize(value_out.dequantize(q) + value_bias[c])
            }),
            scores: self.quant(names.scores)?,
            probabilities: self.quant(names.probabilities)?,
            out: self.matmul(names.out.0, WIDTH, WIDTH, context, out_out)?,
            out_bias: self.floats(&format!("{prefix}.self_attn.out_proj.bias"), WIDTH)?,
            norm_2: self.norm(&format!("{prefix}.final_layer_norm"), WIDTH)?,
            fc1: self.matmul(names.fc1.0, WIDTH, FF_WIDTH, norm_2_out, fc1_out)?,
            fc1_lut: ColumnLut::new(FF_WIDTH, |c, q| {
                gelu.quantize(lut::gelu(fc1_out.dequantize(q) + fc1_bias[c]))
            }),
            fc2: self.matmul(names.fc2.0, FF_WIDTH, WIDTH, gelu, fc2_out)?,
            fc2_bias: self.floats(&format!("{prefix}.fc2.bias"), WIDTH)?,
            norm_1_out,
            key_scaled,
            query_scaled,
            value_biased,
            context,
            out_out,
            norm_2_out,
            fc2_out,
        })
    }
}

impl Weights {
    /// Reads Smart Turn v3.2's int8 CPU model (`smart-turn-v3.2-cpu.onnx`).
    pub(crate) fn from_onnx(bytes: &[u8]) -> Result<Weights, VadError> {
        let named = Named(
            tensors(bytes)?
                .into_iter()
                .map(|t| (t.name.clone(), t))
                .collect(),
        );
        let n = &named;
        let input = n.quant("input_features")?;
        let conv1_out = n.quant("conv1d")?;
        let conv1_gelu = n.quant("gelu")?;
        let conv2_out = n.quant("conv1d_1")?;
        let attention_scale = n.float("val_63")?;
        let layers = LAYERS
            .iter()
            .enumerate()
            .map(|(i, names)| n.layer(i, names, attention_scale))
            .collect::<Result<_, _>>()?;
        let final_norm_out = n.quant("layer_norm_8")?;
        let pool_1_out = n.quant("val_312")?;
        let pool_1_bias = n.floats("inner.pool_attention.0.bias", HIDDEN)?;
        let pool_tanh = n.quant("tanh")?;
        let pool_2_out = n.quant("val_314")?;
        let pooled = n.quant("sum_1")?;
        let classifier_1_out = n.quant("linear_26")?;
        let classifier_gelu_1 = n.quant("gelu_6")?;
        let classifier_2_out = n.quant("linear_27")?;
        let classifier_gelu_2 = n.quant("gelu_7")?;
        let classifier_3_out = n.quant("linear_28")?;
        Ok(Weights {
            conv1: n.conv(
                "inner.encoder.conv1",
                super::features::BANDS,
                input,
                conv1_out,
            )?,
            conv2: n.conv("inner.encoder.conv2", WIDTH, conv1_gelu, conv2_out)?,
            positions: n.floats("inner.encoder.embed_positions.weight", STEPS * WIDTH)?,
            layers,
            final_norm: n.norm("inner.encoder.layer_norm", WIDTH)?,
            pool_1: n.matmul("val_311", WIDTH, HIDDEN, final_norm_out, pool_1_out)?,
            pool_lut: ColumnLut::new(HIDDEN, |c, q| {
                pool_tanh.quantize((pool_1_out.dequantize(q) + pool_1_bias[c]).tanh())
            }),
            pool_2: n.matmul("val_313", HIDDEN, 1, pool_tanh, pool_2_out)?,
            pool_2_bias: n.float("inner.pool_attention.2.bias")?,
            classifier_1: n.gemm(0, WIDTH, HIDDEN, pooled, classifier_1_out)?,
            classifier_norm: n.norm("inner.classifier.1", HIDDEN)?,
            classifier_2: n.gemm(4, HIDDEN, HIDDEN_2, classifier_gelu_1, classifier_2_out)?,
            classifier_3: n.gemm(6, HIDDEN_2, 1, classifier_gelu_2, classifier_3_out)?,
            input,
            conv1_lut: ColumnLut::new(1, |_, q| {
                conv1_gelu.quantize(lut::gelu(conv1_out.dequantize(q)))
            }),
            conv1_gelu,
            conv2_gelu: (0..=255u8)
                .map(|q| lut::gelu(conv2_out.dequantize(q)))
                .collect(),
            final_norm_out,
            pool_2_out,
            pooled,
            classifier_1_out,
            classifier_gelu_1,
            classifier_2_out,
            classifier_gelu_2,
            classifier_3_out,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Quant;

    #[test]
    fn quantizing_many_values_matches_one_at_a_time() {
        let quant = Quant {
            scale: 0.5,
            zero_point: 100,
        };
        // Ties (x / scale = n + 0.5) both ways, both clamps, a NaN, and a
        // tail past the last whole vector.
        let mut values: Vec<f32> = (-600..600).map(|i| i as f32 * 0.125).collect();
        values.extend([f32::NAN, 1e9, -1e9, 0.25, 0.75, -0.25, -0.75]);
        let mut all = vec![0; values.len()];
        quant.quantize_all(&values, &mut all);
        let one_by_one: Vec<u8> = values.iter().map(|x| quant.quantize(*x)).collect();
        assert_eq!(all, one_by_one);
        assert_eq!(quant.quantize(0.25), 100); // 0.5 -> 0
        assert_eq!(quant.quantize(0.75), 102); // 1.5 -> 2
    }
}
