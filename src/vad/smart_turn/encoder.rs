//! The forward pass: features, the two convolutions, four transformer
//! layers, the attention pool and the classifier, step for step as
//! onnxruntime runs the shipped graph after its optimisations (int8
//! products fused as `QLinearConv`, `QLinearMatMul`, `QLinearSoftmax` and
//! `QGemm`; the float steps between them through [`ColumnLut`] tables).
//!
//! [`ColumnLut`]: super::lut::ColumnLut

use super::attention::{QSoftmax, Requant, pack, product, sparse_product};
use super::byte_product::{self, PackedColumns};
use super::features::{BANDS, FRAMES, LogMel};
use super::lut::gelu;
use super::qgemm::QLinear;
use super::weights::{FF_WIDTH, HEAD_WIDTH, HEADS, Norm, Quant, STEPS, WIDTH, Weights};

/// The zero points of one layer's attention operands.
#[derive(Debug, Clone, Copy)]
struct HeadZeroPoints {
    query: u8,
    key: u8,
    value: u8,
    probability: u8,
}

/// Scratch for one decision; allocated once per model.
#[derive(Debug, Clone)]
pub(crate) struct Encoder {
    mel: LogMel,
    features: Vec<f32>,
    /// The features quantised, by band then by frame.
    quantized: Vec<u8>,
    /// Windows of three time steps, the convolutions' inputs.
    windows: Vec<u8>,
    conv: Vec<u8>,
    /// The residual stream, `[STEPS][WIDTH]`.
    hidden: Vec<f32>,
    normed: Vec<u8>,
    keys: Vec<u8>,
    queries: Vec<u8>,
    values: Vec<u8>,
    /// One head's queries minus their zero point, `[STEPS][HEAD_WIDTH]`.
    head_queries: Vec<i16>,
    /// One head's keys and values minus their zero points, packed as the
    /// products read them.
    head_keys: Vec<i16>,
    head_values: Vec<i16>,
    scores: Vec<u8>,
    exps: Vec<f32>,
    /// The softmax of the scores minus its zero point, `[STEPS][STEPS]`.
    probabilities: Vec<i16>,
    /// Where the CPU has AVX-512 VNNI, the heads' products run on bytes
    /// ([`byte_product`]): one head's keys and values packed, and the
    /// softmax's output bytes, `[STEPS][STEPS]`.
    vnni: bool,
    packed_keys: PackedColumns,
    packed_values: PackedColumns,
    probability_bytes: Vec<u8>,
    context: Vec<u8>,
    projected: Vec<u8>,
    wide: Vec<u8>,
}

impl Encoder {
    pub(crate) fn new() -> Encoder {
        Encoder::with_attention_on_bytes(byte_product::available())
    }

    /// Scratch for the attention on bytes (the CPU must have AVX-512
    /// VNNI) or on int16 words: only that path's buffers.
    fn with_attention_on_bytes(vnni: bool) -> Encoder {
        let (words, bytes) = if vnni { (0, 1) } else { (1, 0) };
        Encoder {
            mel: LogMel::new(),
            features: vec![0.0; BANDS * FRAMES],
            quantized: vec![0; 2 * BANDS * FRAMES],
            windows: vec![0; FRAMES * 3 * BANDS.max(WIDTH)],
            conv: vec![0; FRAMES * WIDTH],
            hidden: vec![0.0; STEPS * WIDTH],
            normed: vec![0; STEPS * WIDTH],
            keys: vec![0; STEPS * WIDTH],
            queries: vec![0; STEPS * WIDTH],
            values: vec![0; STEPS * WIDTH],
            head_queries: vec![0; words * STEPS * HEAD_WIDTH],
            head_keys: vec![0; words * HEAD_WIDTH * STEPS],
            head_values: vec![0; words * STEPS * HEAD_WIDTH],
            scores: vec![0; STEPS * STEPS],
            exps: vec![0.0; STEPS],
            probabilities: vec![0; words * STEPS * STEPS],
            vnni,
            packed_keys: PackedColumns::default(),
            packed_values: PackedColumns::default(),
            probability_bytes: vec![0; bytes * STEPS * STEPS],
            context: vec![0; STEPS * WIDTH],
            projected: vec![0; STEPS * WIDTH],
            wide: vec![0; STEPS * FF_WIDTH],
        }
    }

    pub(crate) fn features(&mut self, turn: &[i16], out: &mut [f32]) {
        self.mel.compute(turn, out);
    }

    /// The probability that `turn` (16 kHz) is complete.
    pub(crate) fn probability(&mut self, w: &Weights, turn: &[i16]) -> f32 {
        let padding = self.mel.compute(turn, &mut self.features);
        self.convolutions(w, padding);
        for layer in &w.layers {
            self.attention(layer);
            self.feed_forward(layer);
        }
        layer_norm(
            &self.hidden,
            &w.final_norm,
            w.final_norm_out,
            &mut self.normed,
        );
        let pooled = self.pool(w);
        classify(w, &pooled)
    }

    /// The convolutions of the features, whose first `padding` frames are
    /// equal (the zeros before a short turn): the steps that see only
    /// those have equal outputs, computed once.
    fn convolutions(&mut self, w: &Weights, padding: usize) {
        // The features, quantised (`[BANDS][FRAMES]`), then as
        // `[FRAMES][BANDS]`.
        let (bands, frames) = self.quantized.split_at_mut(BANDS * FRAMES);
        w.input.quantize_all(&self.features, bands);
        for (b, band) in bands.chunks_exact(FRAMES).enumerate() {
            for (t, q) in band.iter().enumerate() {
                frames[t * BANDS + b] = *q;
            }
        }
        let windows = &mut self.windows[..FRAMES * 3 * BANDS];
        windows_of_three(frames, BANDS, 1, w.input.zero_point, windows);
        // Step t sees frames t - 1 to t + 1: steps 1 to `padding - 2` see
        // equal frames only.
        let last_equal = padding.saturating_sub(2);
        w.conv1.run_repeating(
            windows,
            &mut self.conv,
            Some(&w.conv1_lut),
            repeats(last_equal),
        );
        let windows = &mut self.windows[..STEPS * 3 * WIDTH];
        windows_of_three(&self.conv, WIDTH, 2, w.conv1_gelu.zero_point, windows);
        let conv2 = &mut self.conv[..STEPS * WIDTH];
        // Step s sees the first convolution's steps 2s - 1 to 2s + 1.
        let last_equal = last_equal.saturating_sub(1) / 2;
        w.conv2
            .run_repeating(windows, conv2, None, repeats(last_equal));
        for ((h, q), p) in self.hidden.iter_mut().zip(conv2.iter()).zip(&w.positions) {
            *h = w.conv2_gelu[usize::from(*q)] + p;
        }
    }

    fn attention(&mut self, layer: &super::weights::Layer) {
        layer_norm(
            &self.hidden,
            &layer.norm_1,
            layer.norm_1_out,
            &mut self.normed,
        );
        layer
            .key
            .run_mapped(&self.normed, &mut self.keys, &layer.key_lut);
        layer
            .query
            .run_mapped(&self.normed, &mut self.queries, &layer.query_lut);
        layer
            .value
            .run_mapped(&self.normed, &mut self.values, &layer.value_lut);
        let scores = Requant {
            scale: layer.query_scaled.scale * layer.key_scaled.scale / layer.scores.scale,
            zero_point: layer.scores.zero_point,
        };
        let context = Requant {
            scale: layer.probabilities.scale * layer.value_biased.scale / layer.context.scale,
            zero_point: layer.context.zero_point,
        };
        let softmax = QSoftmax::new(
            STEPS,
            layer.scores.scale,
            layer.probabilities.scale,
            layer.probabilities.zero_point,
        );
        let zero_points = HeadZeroPoints {
            query: layer.query_scaled.zero_point,
            key: layer.key_scaled.zero_point,
            value: layer.value_biased.zero_point,
            probability: layer.probabilities.zero_point,
        };
        for head in 0..HEADS {
            if self.vnni {
                self.head_on_bytes(head, zero_points, scores, &softmax, context);
            } else {
                self.head_on_words(head, zero_points, scores, &softmax, context);
            }
        }
        layer.out.run(&self.context, &mut self.projected);
        residual(
            &mut self.hidden,
            &self.projected,
            layer.out_out,
            &layer.out_bias,
        );
    }

    /// One head's attention with the int16 products (AVX2 or plain), as
    /// MLAS's AVX2 path computes it.
    fn head_on_words(
        &mut self,
        head: usize,
        zero_points: HeadZeroPoints,
        scores: Requant,
        softmax: &QSoftmax,
        context: Requant,
    ) {
        let (q_zero, k_zero, v_zero) = (
            i16::from(zero_points.query),
            i16::from(zero_points.key),
            i16::from(zero_points.value),
        );
        let first = head * HEAD_WIDTH;
        for (row, queries) in self
            .head_queries
            .chunks_exact_mut(HEAD_WIDTH)
            .zip(self.queries.chunks_exact(WIDTH))
        {
            for (q, byte) in row.iter_mut().zip(&queries[first..first + HEAD_WIDTH]) {
                *q = i16::from(*byte) - q_zero;
            }
        }
        let keys = &self.keys;
        let key = |t: usize, d: usize| i16::from(keys[t * WIDTH + first + d]) - k_zero;
        pack(STEPS, HEAD_WIDTH, key, &mut self.head_keys);
        let values = &self.values;
        let value = |d: usize, t: usize| i16::from(values[t * WIDTH + first + d]) - v_zero;
        pack(HEAD_WIDTH, STEPS, value, &mut self.head_values);
        product(
            &self.head_queries,
            HEAD_WIDTH,
            &self.head_keys,
            STEPS,
            scores,
            &mut self.scores,
            STEPS,
        );
        for (scores, probabilities) in self
            .scores
            .chunks_exact(STEPS)
            .zip(self.probabilities.chunks_exact_mut(STEPS))
        {
            softmax.row(scores, &mut self.exps, probabilities);
        }
        sparse_product(
            &self.probabilities,
            STEPS,
            &self.head_values,
            HEAD_WIDTH,
            context,
            &mut self.context[first..],
            WIDTH,
        );
    }

    /// One head's attention on bytes with `vpdpbusd`: the same sums, exact,
    /// half the multiplies.
    fn head_on_bytes(
        &mut self,
        head: usize,
        zero_points: HeadZeroPoints,
        scores: Requant,
        softmax: &QSoftmax,
        context: Requant,
    ) {
        let first = head * HEAD_WIDTH;
        self.packed_keys.pack_rows(
            &self.keys[first..],
            WIDTH,
            STEPS,
            HEAD_WIDTH,
            zero_points.key,
        );
        self.packed_values.pack_columns(
            &self.values[first..],
            WIDTH,
            HEAD_WIDTH,
            STEPS,
            zero_points.value,
        );
        byte_product::product(
            &self.queries[first..],
            WIDTH,
            STEPS,
            zero_points.query,
            &self.packed_keys,
            scores,
            &mut self.scores,
            STEPS,
        );
        for (scores, probabilities) in self
            .scores
            .chunks_exact(STEPS)
            .zip(self.probability_bytes.chunks_exact_mut(STEPS))
        {
            softmax.row_bytes(scores, &mut self.exps, probabilities);
        }
        byte_product::product(
            &self.probability_bytes,
            STEPS,
            STEPS,
            zero_points.probability,
            &self.packed_values,
            context,
            &mut self.context[first..],
            WIDTH,
        );
    }

    fn feed_forward(&mut self, layer: &super::weights::Layer) {
        layer_norm(
            &self.hidden,
            &layer.norm_2,
            layer.norm_2_out,
            &mut self.normed,
        );
        layer
            .fc1
            .run_mapped(&self.normed, &mut self.wide, &layer.fc1_lut);
        layer.fc2.run(&self.wide, &mut self.projected);
        residual(
            &mut self.hidden,
            &self.projected,
            layer.fc2_out,
            &layer.fc2_bias,
        );
    }

    /// The attention pool: a score per time step (a two-layer network), a
    /// softmax over time, the steps' normalised features averaged by it.
    fn pool(&mut self, w: &Weights) -> Vec<f32> {
        let hidden = &mut self.wide[..STEPS * w.pool_1.n()];
        w.pool_1.run_mapped(&self.normed, hidden, &w.pool_lut);
        let mut scores = [0u8; STEPS];
        w.pool_2.run(hidden, &mut scores);
        let logits: Vec<f32> = scores
            .iter()
            .map(|q| w.pool_2_out.dequantize(*q) + w.pool_2_bias)
            .collect();
        let weights = softmax(&logits);
        let mut pooled = vec![0.0f32; WIDTH];
        for (row, weight) in self.normed.chunks_exact(WIDTH).zip(&weights) {
            for (p, q) in pooled.iter_mut().zip(row) {
                *p += w.final_norm_out.dequantize(*q) * weight;
            }
        }
        pooled
    }
}

/// The classifier head on the pooled features: linear, layer norm, GELU,
/// linear, GELU, linear, sigmoid.
fn classify(w: &Weights, pooled: &[f32]) -> f32 {
    let input: Vec<u8> = pooled.iter().map(|x| w.pooled.quantize(*x)).collect();
    let hidden = dense(&w.classifier_1, &input);
    let hidden: Vec<f32> = hidden
        .iter()
        .map(|q| w.classifier_1_out.dequantize(*q))
        .collect();
    let mut normed = vec![0.0; hidden.len()];
    normalise(&hidden, &w.classifier_norm, &mut normed);
    let input: Vec<u8> = normed
        .iter()
        .map(|x| w.classifier_gelu_1.quantize(gelu(*x)))
        .collect();
    let hidden = dense(&w.classifier_2, &input);
    let input: Vec<u8> = hidden
        .iter()
        .map(|q| {
            w.classifier_gelu_2
                .quantize(gelu(w.classifier_2_out.dequantize(*q)))
        })
        .collect();
    let logit = w
        .classifier_3_out
        .dequantize(dense(&w.classifier_3, &input)[0]);
    1.0 / (1.0 + (-logit).exp())
}

fn dense(layer: &QLinear, input: &[u8]) -> Vec<u8> {
    let mut out = vec![0; layer.n()];
    layer.run(input, &mut out);
    out
}

/// The steps a convolution may copy when its steps 1 to `last_equal` have
/// equal inputs: from 4 (step 0 sees the padding, 1 to 3 are the
/// original) to a multiple of 4 (the kernel's blocks stay whole).
fn repeats(last_equal: usize) -> std::ops::Range<usize> {
    4..((last_equal + 1) / 4 * 4).max(4)
}

/// Each output step's `[tap][channel]` window of three input steps
/// (`stride` apart in output steps, centred, padded with the zero point).
fn windows_of_three(input: &[u8], channels: usize, stride: usize, pad: u8, out: &mut [u8]) {
    let steps_in = input.len() / channels;
    for (t, window) in out.chunks_exact_mut(3 * channels).enumerate() {
        for (tap, slot) in window.chunks_exact_mut(channels).enumerate() {
            let source = (t * stride + tap).checked_sub(1).filter(|s| *s < steps_in);
            match source {
                Some(s) => slot.copy_from_slice(&input[s * channels..(s + 1) * channels]),
                None => slot.fill(pad),
            }
        }
    }
}

/// `hidden += dequantize(delta) + bias`, as the graph adds them.
fn residual(hidden: &mut [f32], delta: &[u8], quant: Quant, bias: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        avx2::residual(hidden, delta, quant, bias);
        return;
    }
    residual_rows(hidden, delta, quant, bias);
}

/// [`residual`], compiled for whichever CPU its caller is.
#[inline(always)]
fn residual_rows(hidden: &mut [f32], delta: &[u8], quant: Quant, bias: &[f32]) {
    for (hidden, delta) in hidden
        .chunks_exact_mut(WIDTH)
        .zip(delta.chunks_exact(WIDTH))
    {
        for ((h, d), b) in hidden.iter_mut().zip(delta).zip(bias) {
            *h += quant.dequantize(*d) + b;
        }
    }
}

/// Layer norm of each row of `input`, quantised.
fn layer_norm(input: &[f32], norm: &Norm, quant: Quant, out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        avx2::layer_norm(input, norm, quant, out);
        return;
    }
    layer_norm_rows(input, norm, quant, out);
}

/// [`layer_norm`], compiled for whichever CPU its caller is.
#[inline(always)]
fn layer_norm_rows(input: &[f32], norm: &Norm, quant: Quant, out: &mut [u8]) {
    let mut row_out = [0.0; WIDTH];
    for (row, out) in input.chunks_exact(WIDTH).zip(out.chunks_exact_mut(WIDTH)) {
        normalise(row, norm, &mut row_out);
        quant.quantize_all(&row_out, out);
    }
}

/// The float loops compiled for AVX2: the same operations in the same
/// order (Rust never fuses a multiply and an add on its own), on 8 lanes
/// where the plain x86-64 build has 4.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx2 {
    use super::{Norm, Quant};

    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx2")
    }

    /// [`super::layer_norm`]. Only call when [`available`].
    pub(super) fn layer_norm(input: &[f32], norm: &Norm, quant: Quant, out: &mut [u8]) {
        assert!(available());
        // SAFETY: the CPU has AVX2.
        unsafe { layer_norm_compiled_for_avx2(input, norm, quant, out) }
    }

    /// [`super::residual`]. Only call when [`available`].
    pub(super) fn residual(hidden: &mut [f32], delta: &[u8], quant: Quant, bias: &[f32]) {
        assert!(available());
        // SAFETY: the CPU has AVX2.
        unsafe { residual_compiled_for_avx2(hidden, delta, quant, bias) }
    }

    #[target_feature(enable = "avx2")]
    fn residual_compiled_for_avx2(hidden: &mut [f32], delta: &[u8], quant: Quant, bias: &[f32]) {
        super::residual_rows(hidden, delta, quant, bias);
    }

    #[target_feature(enable = "avx2")]
    fn layer_norm_compiled_for_avx2(input: &[f32], norm: &Norm, quant: Quant, out: &mut [u8]) {
        super::layer_norm_rows(input, norm, quant, out);
    }
}

/// ONNX `LayerNormalization` (epsilon 1e-5) of one row.
#[inline(always)]
fn normalise(row: &[f32], norm: &Norm, out: &mut [f32]) {
    let n = row.len() as f64;
    let mean = sum_in_lanes(row, |x| x) / n;
    let var = sum_in_lanes(row, |x| (x - mean).powi(2)) / n;
    let (mean, deviation) = (mean as f32, (var + 1e-5).sqrt() as f32);
    for (((o, x), g), b) in out.iter_mut().zip(row).zip(&norm.gain).zip(&norm.bias) {
        *o = (x - mean) / deviation * g + b;
    }
}

/// `Σ f(x)` in f64 over eight lanes (each summing every eighth value,
/// then the lanes), so that the sums vectorise: the f64 sum of a row of
/// f32 values is exact whatever the order unless their magnitudes span
/// about 2^20, and the squares' sum rounds at f64's precision, far below
/// the f32 the norm is taken in.
#[inline(always)]
fn sum_in_lanes(row: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    let mut lanes = [0.0f64; 8];
    let chunks = row.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|x| f(f64::from(*x))).sum();
    for chunk in chunks {
        for (lane, x) in lanes.iter_mut().zip(chunk) {
            *lane += f(f64::from(*x));
        }
    }
    lanes.iter().sum::<f64>() + tail
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|x| (x - max).exp()).collect();
    let total: f32 = exps.iter().sum();
    exps.iter().map(|e| e / total).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vad::smart_turn::SmartTurnModel;

    #[test]
    fn attention_on_bytes_gives_the_bytes_of_attention_on_words() {
        if !byte_product::available() {
            eprintln!("skipped: this CPU has no AVX-512 VNNI");
            return;
        }
        let model = SmartTurnModel::bundled().unwrap();
        let mut words = Encoder::with_attention_on_bytes(false);
        let mut bytes = Encoder::with_attention_on_bytes(true);
        // A residual stream of the size the layers see: a hash in [-2, 2].
        for (i, h) in words.hidden.iter_mut().enumerate() {
            *h = ((i.wrapping_mul(2_654_435_761) >> 8) % 4001) as f32 / 1000.0 - 2.0;
        }
        bytes.hidden.clone_from(&words.hidden);
        for layer in &model.weights.layers[..2] {
            words.attention(layer);
            bytes.attention(layer);
            assert_eq!(words.context, bytes.context);
            assert_eq!(words.hidden, bytes.hidden);
        }
        let distinct: std::collections::BTreeSet<u8> = words.context.iter().copied().collect();
        assert!(distinct.len() > 20, "a degenerate test: {distinct:?}");
    }

    #[test]
    fn the_avx2_layer_norm_and_residual_give_the_plain_values() {
        if !avx2::available() {
            eprintln!("skipped: this CPU has no AVX2");
            return;
        }
        let model = SmartTurnModel::bundled().unwrap();
        let layer = &model.weights.layers[1];
        let input: Vec<f32> = (0..STEPS * WIDTH)
            .map(|i| ((i.wrapping_mul(2_654_435_761) >> 8) % 40_001) as f32 / 1000.0 - 20.0)
            .collect();
        let (mut plain, mut vector) = (vec![0; STEPS * WIDTH], vec![0; STEPS * WIDTH]);
        layer_norm_rows(&input, &layer.norm_1, layer.norm_1_out, &mut plain);
        avx2::layer_norm(&input, &layer.norm_1, layer.norm_1_out, &mut vector);
        assert_eq!(plain, vector);
        let distinct: std::collections::BTreeSet<u8> = plain.iter().copied().collect();
        assert!(distinct.len() > 100, "a degenerate test: {distinct:?}");
        let (mut plain_sum, mut vector_sum) = (input.clone(), input);
        residual_rows(&mut plain_sum, &plain, layer.out_out, &layer.out_bias);
        avx2::residual(&mut vector_sum, &plain, layer.out_out, &layer.out_bias);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&plain_sum), bits(&vector_sum));
    }
}
