//! The arithmetic of the forward pass, written so that the compiler
//! vectorises it on any x86-64 or ARM target (SSE2 and NEON are enough).
//!
//! The convolutions and the LSTM's matrix product are outer products over
//! blocks of output channels (`layers.rs` lays the weights out for them):
//! each input value is broadcast and multiplied into the sums of a block's
//! channels, which stay in registers from the first input to the last. No
//! input is copied (no im2col), no sum is added across lanes, every weight
//! is read once, and taps that would read padding are never computed.
//! Zero inputs are not skipped, measured with callgrind on
//! `benches/twilio_media.rs`: skipping the convolutions' input channels
//! that are zero at every step saved 0.1% of their instructions, and about
//! 10% of the LSTM's inputs are zero, while a list of the others cost 21
//! instructions per input and block against 13 without.
//!
//! On x86-64 CPUs with AVX2 and FMA (detected at run time; the build stays
//! portable), the same code is compiled a second time for those
//! instructions: eight lanes in one register, fused multiply-adds, and the
//! activations eight lanes wide. Fused products round once instead of
//! twice, so the sums differ from the portable ones in the last bits (the
//! tests hold both to each other, to plain sums, and to onnxruntime).

use super::layers::{ACCUMULATORS, Conv, HIDDEN, LANES, LSTM_UNITS_PER_BLOCK, Lstm};

/// Eight lanes of floats: one AVX register, or two SSE2 or NEON ones.
type Vector = [f32; LANES];

#[inline(always)]
fn multiply_add<const FUSED: bool>(acc: &mut Vector, w: &Vector, x: f32) {
    for i in 0..LANES {
        acc[i] = if FUSED {
            w[i].mul_add(x, acc[i])
        } else {
            acc[i] + w[i] * x
        };
    }
}

#[cfg(test)]
thread_local! {
    /// Set by tests to run the portable build on a CPU with AVX2 and FMA.
    pub(crate) static PORTABLE_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a test asked for the portable build.
#[cfg(test)]
fn portable_only() -> bool {
    PORTABLE_ONLY.with(std::cell::Cell::get)
}

/// Never outside tests.
#[cfg(not(test))]
#[inline(always)]
fn portable_only() -> bool {
    false
}

/// Whether to run the AVX2 and FMA build.
#[inline(always)]
fn use_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    return x86::has_avx2_fma() && !portable_only();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `relu(conv(input))` for one of the encoder's convolutions: `input` is
/// `[STEPS_IN][in_channels]`, `output` `[STEPS_OUT][out_channels]`.
pub(crate) fn conv_relu<const STEPS_IN: usize, const STRIDE: usize>(
    conv: &Conv<STEPS_IN, STRIDE>,
    input: &[f32],
    output: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if use_avx2_fma() {
        return x86::conv_relu_avx2_fma(conv, input, output);
    }
    conv_relu_lanes::<STEPS_IN, STRIDE, false>(conv, input, output);
}

/// [`conv_relu`]'s arithmetic, fused or not.
#[inline(always)]
fn conv_relu_lanes<const STEPS_IN: usize, const STRIDE: usize, const FUSED: bool>(
    conv: &Conv<STEPS_IN, STRIDE>,
    input: &[f32],
    output: &mut [f32],
) {
    type Layer<const N: usize, const S: usize> = Conv<N, S>;
    let steps_out = Layer::<STEPS_IN, STRIDE>::STEPS_OUT;
    let block = Layer::<STEPS_IN, STRIDE>::BLOCK;
    let per_channel = Layer::<STEPS_IN, STRIDE>::TAPS * block;
    let (inputs, outputs) = (conv.in_channels, conv.out_channels);
    let steps: [&[f32]; STEPS_IN] = std::array::from_fn(|step| &input[step * inputs..][..inputs]);
    let blocks = conv
        .weight
        .chunks_exact(inputs * per_channel)
        .zip(conv.bias.chunks_exact(block));
    for (b, (weights, bias)) in blocks.enumerate() {
        // One sum per output step for each vector of the block's channels;
        // every index below is a constant once the loops are unrolled, so
        // the sums live in registers.
        let mut acc = [[0.0f32; LANES]; ACCUMULATORS];
        for t in 0..steps_out {
            for v in 0..block {
                acc[t * block + v] = bias[v].0;
            }
        }
        for (c, w) in weights.chunks_exact(per_channel).enumerate() {
            for (step, values) in steps.iter().enumerate() {
                let x = values[c];
                for k in 0..3 {
                    let (Some(t), Some(tap)) = (
                        Layer::<STEPS_IN, STRIDE>::step_fed(step, k),
                        Layer::<STEPS_IN, STRIDE>::LIVE_TAPS[k],
                    ) else {
                        continue;
                    };
                    for v in 0..block {
                        multiply_add::<FUSED>(&mut acc[t * block + v], &w[tap * block + v].0, x);
                    }
                }
            }
        }
        for t in 0..steps_out {
            let row = &mut output[t * outputs..(t + 1) * outputs];
            for v in 0..block {
                let first = (b * block + v) * LANES;
                let relu = acc[t * block + v].map(|sum| sum.max(0.0));
                if let Some(y) = row.get_mut(first..first + LANES) {
                    y.copy_from_slice(&relu);
                } else if let Some(y) = row.get_mut(first..) {
                    // The last, partial vector of a layer whose channels
                    // are not a multiple of eight (Silero's all are).
                    y.copy_from_slice(&relu[..y.len()]);
                }
            }
        }
    }
}

/// One step of the LSTM cell: `input` is the cell's input then its
/// previous `h`; `cell` (`c`) is updated in place and the new `h` written
/// to `h`.
pub(crate) fn lstm_step(lstm: &Lstm, input: &[f32], cell: &mut [f32], h: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if use_avx2_fma() {
        return x86::lstm_step_avx2_fma(lstm, input, cell, h);
    }
    lstm_step_lanes::<false>(lstm, input, cell, h);
}

/// Vectors of the LSTM's gates: four gates of HIDDEN units.
const GATE_VECTORS: usize = 4 * HIDDEN / LANES;

/// [`lstm_step`]'s arithmetic, fused or not.
#[inline(always)]
fn lstm_step_lanes<const FUSED: bool>(lstm: &Lstm, input: &[f32], cell: &mut [f32], h: &mut [f32]) {
    /// Vectors per gate in a block.
    const PER_GATE: usize = LSTM_UNITS_PER_BLOCK / LANES;
    let width = input.len();
    // All the sums first, then the activations: computed in one loop, the
    // activations' constants took registers from the sums.
    let mut gates = [[0.0f32; LANES]; GATE_VECTORS];
    let blocks = lstm
        .weight
        .chunks_exact(width * ACCUMULATORS)
        .zip(lstm.bias.chunks_exact(ACCUMULATORS))
        .zip(gates.as_chunks_mut::<ACCUMULATORS>().0);
    for ((weights, bias), sums) in blocks {
        let mut acc: [Vector; ACCUMULATORS] = std::array::from_fn(|v| bias[v].0);
        // Two inputs a turn: the loop's own instructions are a quarter of
        // one input's.
        let (pairs, last) = input.as_chunks::<2>();
        let (weight_pairs, last_weights) = weights.as_chunks::<{ 2 * ACCUMULATORS }>();
        for (x, w) in pairs.iter().zip(weight_pairs) {
            for (j, x) in x.iter().enumerate() {
                for v in 0..ACCUMULATORS {
                    multiply_add::<FUSED>(&mut acc[v], &w[j * ACCUMULATORS + v].0, *x);
                }
            }
        }
        for (x, w) in last.iter().zip(last_weights.chunks_exact(ACCUMULATORS)) {
            for v in 0..ACCUMULATORS {
                multiply_add::<FUSED>(&mut acc[v], &w[v].0, *x);
            }
        }
        *sums = acc;
    }
    let units = gates
        .as_chunks::<ACCUMULATORS>()
        .0
        .iter()
        .flat_map(|block| {
            (0..PER_GATE).map(move |v| std::array::from_fn(|g| block[g * PER_GATE + v]))
        });
    for ((c, h), [input_gate, forget_gate, cell_gate, output_gate]) in cell
        .as_chunks_mut::<LANES>()
        .0
        .iter_mut()
        .zip(h.as_chunks_mut::<LANES>().0)
        .zip(units)
    {
        let (i, f, g, o) = (
            sigmoid(input_gate),
            sigmoid(forget_gate),
            tanh(cell_gate),
            sigmoid(output_gate),
        );
        for lane in 0..LANES {
            c[lane] = f[lane] * c[lane] + i[lane] * g[lane];
        }
        let tanh_c = tanh(*c);
        for lane in 0..LANES {
            h[lane] = o[lane] * tanh_c[lane];
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::has_avx2_fma;

/// The AVX2 and FMA build of the kernels.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use crate::vad::silero::layers::{Conv, Lstm};

    /// Whether this CPU has AVX2 and FMA (std caches the answer).
    #[inline(always)]
    pub(crate) fn has_avx2_fma() -> bool {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }

    #[target_feature(enable = "avx2,fma")]
    fn conv_relu_compiled_for_avx2_fma<const STEPS_IN: usize, const STRIDE: usize>(
        conv: &Conv<STEPS_IN, STRIDE>,
        input: &[f32],
        output: &mut [f32],
    ) {
        crate::vad::silero::kernels::conv_relu_lanes::<STEPS_IN, STRIDE, true>(conv, input, output);
    }

    /// The convolution on eight lanes with fused multiply-adds. Only call
    /// when [`has_avx2_fma`].
    #[inline(always)]
    pub(super) fn conv_relu_avx2_fma<const STEPS_IN: usize, const STRIDE: usize>(
        conv: &Conv<STEPS_IN, STRIDE>,
        input: &[f32],
        output: &mut [f32],
    ) {
        debug_assert!(has_avx2_fma());
        // SAFETY: the function is safe Rust compiled for AVX2 and FMA; it
        // is called only after `has_avx2_fma` found both on this CPU.
        unsafe { conv_relu_compiled_for_avx2_fma(conv, input, output) }
    }

    #[target_feature(enable = "avx2,fma")]
    fn lstm_step_compiled_for_avx2_fma(
        lstm: &Lstm,
        input: &[f32],
        cell: &mut [f32],
        h: &mut [f32],
    ) {
        crate::vad::silero::kernels::lstm_step_lanes::<true>(lstm, input, cell, h);
    }

    /// The LSTM step on eight lanes with fused multiply-adds and
    /// activations. Only call when [`has_avx2_fma`].
    #[inline(always)]
    pub(super) fn lstm_step_avx2_fma(lstm: &Lstm, input: &[f32], cell: &mut [f32], h: &mut [f32]) {
        debug_assert!(has_avx2_fma());
        // SAFETY: the function is safe Rust compiled for AVX2 and FMA; it
        // is called only after `has_avx2_fma` found both on this CPU.
        unsafe { lstm_step_compiled_for_avx2_fma(lstm, input, cell, h) }
    }
}

/// `e^x` in each lane: Cephes' `expf` (a Cody-Waite reduction by ln 2 and a
/// degree-5 polynomial, relative error under 2e-7), written lane-wise so
/// that it vectorises, where the C library's `expf` is one call per value.
/// Inputs are clamped to [-87, 88], where `e^x` is a normal float.
#[inline(always)]
pub(crate) fn exp<const W: usize>(x: [f32; W]) -> [f32; W] {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts, so that n ln 2 is exact for the reduction.
    const LN2_HIGH: f32 = 0.693_359_4;
    const LN2_LOW: f32 = -2.121_944_4e-4;
    const P: [f32; 6] = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ];
    // 1.5 * 2^23 + 127: added to a number under 2^22 in size, it leaves
    // that number rounded to an integer in the low bits of the mantissa,
    // plus 127 (the exponent bias), with no conversion to an integer (a
    // float-to-int conversion saturates in Rust, which does not
    // vectorise).
    const ROUND: f32 = 12_583_039.0;
    let mut out = [0.0; W];
    for (y, x) in out.iter_mut().zip(x) {
        let x = x.clamp(-87.0, 88.0);
        let shifted = x * LOG2E + ROUND;
        // n = round(x / ln 2), exactly.
        let n = shifted - ROUND;
        let r = x - n * LN2_HIGH - n * LN2_LOW;
        let poly = P.iter().fold(0.0, |acc, p| acc * r + p);
        let e_r = poly * (r * r) + r + 1.0;
        // Times 2^n: the low bits of `shifted` hold n + 127, in [1, 254],
        // a normal exponent.
        *y = e_r * f32::from_bits(shifted.to_bits() << 23);
    }
    out
}

/// The logistic function in each lane.
#[inline(always)]
pub(crate) fn sigmoid<const W: usize>(x: [f32; W]) -> [f32; W] {
    exp(x.map(|x| -x)).map(|e| 1.0 / (1.0 + e))
}

/// `tanh` in each lane, as `(1 - e^-2x) / (1 + e^-2x)`: absolute error
/// about 1e-7, the precision the network needs.
#[inline(always)]
pub(crate) fn tanh<const W: usize>(x: [f32; W]) -> [f32; W] {
    exp(x.map(|x| -2.0 * x)).map(|e| (1.0 - e) / (1.0 + e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_sigmoid_and_tanh_match_the_c_library() {
        let mut worst = [0.0f32; 3];
        for i in -20_000..=20_000 {
            let x = i as f32 * 0.004; // -80 to 80
            let lanes = [x; LANES];
            let e = exp(lanes)[0];
            worst[0] = worst[0].max((e - x.exp()).abs() / x.exp());
            let logistic = 1.0 / (1.0 + (-x).exp());
            worst[1] = worst[1].max((sigmoid(lanes)[7] - logistic).abs());
            worst[2] = worst[2].max((tanh([x])[0] - x.tanh()).abs());
        }
        assert!(worst[0] < 5e-7, "exp: relative error {}", worst[0]);
        assert!(worst[1] < 2e-7, "sigmoid: error {}", worst[1]);
        assert!(worst[2] < 5e-7, "tanh: error {}", worst[2]);
        assert_eq!(exp([-1000.0, 1000.0, 0.0, 1.0])[2], 1.0);
        assert!(exp([-1000.0; 4])[0] > 0.0 && exp([1000.0; 4])[0].is_finite());
    }

    /// Pseudo-random values in [-1, 1), a third of them zero (as after a
    /// ReLU).
    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let r = (i * 7919 + seed * 104_729) % 1009;
                if r.is_multiple_of(3) {
                    0.0
                } else {
                    r as f32 / 504.5 - 1.0
                }
            })
            .collect()
    }

    /// `relu(conv(input))` as PyTorch defines it, in `f64`, time-major.
    fn plain_conv_relu(
        (inputs, outputs, stride, steps_in): (usize, usize, usize, usize),
        weight: &[f32],
        bias: &[f32],
        input: &[f32],
    ) -> Vec<f64> {
        let steps_out = (steps_in - 1) / stride + 1;
        let mut out = vec![0.0; steps_out * outputs];
        for t in 0..steps_out {
            for o in 0..outputs {
                let mut sum = f64::from(bias[o]);
                for c in 0..inputs {
                    for k in 0..3 {
                        let Some(step) = (t * stride + k).checked_sub(1) else {
                            continue;
                        };
                        if step < steps_in {
                            sum += f64::from(weight[(o * inputs + c) * 3 + k])
                                * f64::from(input[step * inputs + c]);
                        }
                    }
                }
                out[t * outputs + o] = sum.max(0.0);
            }
        }
        out
    }

    /// Runs `conv` in the portable build and, where the CPU has them, with
    /// AVX2 and FMA, and holds both to the plain sums.
    fn check_conv<const STEPS_IN: usize, const STRIDE: usize>(inputs: usize, outputs: usize) {
        let weight = values(outputs * inputs * 3, 1);
        let bias = values(outputs, 2);
        let input = values(STEPS_IN * inputs, 3);
        let conv = Conv::<STEPS_IN, STRIDE>::new(inputs, outputs, &weight, &bias);
        let plain = plain_conv_relu((inputs, outputs, STRIDE, STEPS_IN), &weight, &bias, &input);
        let run = |portable: bool| {
            PORTABLE_ONLY.with(|p| p.set(portable));
            let mut out = vec![f32::NAN; plain.len()];
            conv_relu(&conv, &input, &mut out);
            PORTABLE_ONLY.with(|p| p.set(false));
            out
        };
        for out in [run(true), run(false)] {
            assert_eq!(out.len(), plain.len());
            for (i, (y, p)) in out.iter().zip(&plain).enumerate() {
                assert!(
                    (f64::from(*y) - p).abs() <= 1e-5 * p.abs().max(1.0),
                    "{STEPS_IN} steps, stride {STRIDE}, output {i}: {y} vs {p}"
                );
            }
        }
    }

    #[test]
    fn the_convolutions_match_the_plain_sums_in_both_builds() {
        #[cfg(target_arch = "x86_64")]
        if !x86::has_avx2_fma() {
            eprintln!("this CPU has no AVX2 and FMA: only the portable build ran");
        }
        // Silero's four layers at 8 and 16 kHz, then channels that fill no
        // whole block.
        for inputs in [65, 129] {
            check_conv::<4, 1>(inputs, 128);
        }
        check_conv::<4, 2>(128, 64);
        check_conv::<2, 2>(64, 64);
        check_conv::<1, 1>(64, 128);
        check_conv::<4, 1>(3, 20);
        check_conv::<4, 2>(5, 7);
        check_conv::<2, 2>(1, 70);
        check_conv::<1, 1>(9, 3);
    }

    #[test]
    fn conv_pads_strides_drops_dead_taps_and_rectifies() {
        // One input channel [1, 2, 3, 4]; two output channels; stride 2.
        let conv = Conv::<4, 2>::new(1, 2, &[1.0, 10.0, 100.0, -1.0, -1.0, -1.0], &[0.5, 0.0]);
        assert_eq!(Conv::<4, 2>::LIVE_TAPS, [Some(0), Some(1), Some(2)]);
        let mut out = [f32::NAN; 4];
        conv_relu(&conv, &[1.0, 2.0, 3.0, 4.0], &mut out);
        // Step 0 sees [0, 1, 2]; step 1 sees [2, 3, 4]. Time-major.
        assert_eq!(
            out,
            [0.5 + 10.0 + 200.0, 0.0, 2.0 + 30.0 + 400.0 + 0.5, 0.0]
        );

        // A one-step input: only the middle tap ever sees it.
        let conv = Conv::<1, 1>::new(2, 1, &[5.0, 1.0, 5.0, 7.0, 2.0, 7.0], &[0.0]);
        assert_eq!(Conv::<1, 1>::LIVE_TAPS, [None, Some(0), None]);
        assert_eq!(conv.weight.len(), 2 * Conv::<1, 1>::BLOCK);
        assert_eq!((conv.weight[0].0[0], conv.weight[8].0[0]), (1.0, 2.0));
        let mut out = [f32::NAN; 1];
        conv_relu(&conv, &[3.0, 4.0], &mut out);
        assert_eq!(out, [3.0 + 8.0]);
        // Two steps, stride 2: the first tap only sees padding.
        assert_eq!(Conv::<2, 2>::LIVE_TAPS, [None, Some(0), Some(1)]);
    }

    #[test]
    fn the_lstm_step_matches_the_plain_cell_in_both_builds() {
        // An odd number of inputs, for the one the pairs leave over.
        let (hidden, inputs) = (HIDDEN, HIDDEN + 1);
        let weight_ih = values(4 * hidden * inputs, 4);
        let weight_hh = values(4 * hidden * hidden, 5);
        let bias = values(4 * hidden, 6);
        let lstm = Lstm::new(&weight_ih, &weight_hh, &bias);
        let input = values(inputs + hidden, 7);
        let cell = values(hidden, 8);
        // PyTorch's LSTM cell, in f64.
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        let gate = |g: usize, u: usize| {
            let r = g * hidden + u;
            let ih =
                (0..inputs).map(|i| f64::from(weight_ih[r * inputs + i]) * f64::from(input[i]));
            let hh = (0..hidden)
                .map(|i| f64::from(weight_hh[r * hidden + i]) * f64::from(input[inputs + i]));
            f64::from(bias[r]) + ih.sum::<f64>() + hh.sum::<f64>()
        };
        let plain: Vec<(f64, f64)> = (0..hidden)
            .map(|u| {
                let c = sigmoid(gate(1, u)) * f64::from(cell[u])
                    + sigmoid(gate(0, u)) * gate(2, u).tanh();
                (c, sigmoid(gate(3, u)) * c.tanh())
            })
            .collect();
        for portable in [true, false] {
            PORTABLE_ONLY.with(|p| p.set(portable));
            let (mut c, mut h) = (cell.clone(), vec![0.0; hidden]);
            lstm_step(&lstm, &input, &mut c, &mut h);
            PORTABLE_ONLY.with(|p| p.set(false));
            for (u, (plain, (c, h))) in plain.iter().zip(c.iter().zip(&h)).enumerate() {
                let close = |x: f32, y: f64| (f64::from(x) - y).abs() <= 1e-5 * y.abs().max(1.0);
                assert!(
                    close(*c, plain.0) && close(*h, plain.1),
                    "unit {u}: {c}, {h} vs {plain:?}"
                );
            }
        }
    }

    #[test]
    fn the_avx2_fma_build_and_the_portable_one_make_the_same_decisions() {
        use crate::vad::{SileroVad, VoiceModel};
        #[cfg(target_arch = "x86_64")]
        if !x86::has_avx2_fma() {
            eprintln!("this CPU has no AVX2 and FMA: both runs are the portable build");
        }
        for (rate, file) in [(16_000, "hello.wav"), (8_000, "hello_8k.wav")] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("assets/samples")
                .join(file);
            let samples = crate::audio::read_wav(&path).unwrap().to_mono();
            let run = |portable: bool| -> Vec<f32> {
                PORTABLE_ONLY.with(|p| p.set(portable));
                let mut vad = SileroVad::new(rate).unwrap();
                let out = samples
                    .chunks_exact(vad.chunk_samples())
                    .map(|chunk| vad.voice_confidence(chunk))
                    .collect();
                PORTABLE_ONLY.with(|p| p.set(false));
                out
            };
            let (detected, portable) = (run(false), run(true));
            for (i, (d, p)) in detected.iter().zip(&portable).enumerate() {
                assert!((d - p).abs() < 1e-4, "{rate} Hz chunk {i}: {d} vs {p}");
                // The decision at Pipecat's default confidence, and at any
                // threshold 1e-4 away from both.
                assert_eq!(*d >= 0.7, *p >= 0.7, "{rate} Hz chunk {i}: {d} vs {p}");
            }
            assert!(portable.iter().filter(|p| **p >= 0.7).count() > portable.len() / 4);
        }
    }
}
