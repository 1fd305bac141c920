//! The arithmetic of the forward pass: dot products written so the compiler
//! vectorises them on any x86-64 or ARM target (SSE2 and NEON are enough),
//! and the encoder's convolution as dot products over im2col columns.
//!
//! On x86-64 CPUs with AVX2 and FMA (detected at run time; the build stays
//! portable), the dot products run eight lanes wide with fused
//! multiply-adds: the same code, compiled a second time for those
//! instructions. Fused products round once instead of twice, so the sums
//! differ from the portable ones in the last bits (the tests hold both to
//! the plain sums and to onnxruntime).

use super::weights::Conv;

/// Floats per vector register with SSE2 or NEON, the baseline of every
/// 64-bit target: `[f32; WIDTH]` arithmetic compiles to one instruction.
const WIDTH: usize = 4;

/// What one vector register holds.
pub(crate) type Vector = [f32; WIDTH];

#[inline(always)]
fn multiply_add<const W: usize, const FUSED: bool>(acc: &mut [f32; W], w: &[f32; W], x: &[f32; W]) {
    for i in 0..W {
        acc[i] = if FUSED {
            w[i].mul_add(x[i], acc[i])
        } else {
            acc[i] + w[i] * x[i]
        };
    }
}

/// The horizontal sums of the accumulators. Kept out of line on purpose:
/// when the compiler sees these sums next to the loop it "vectorises"
/// across the columns instead of along them and shuffles in the hot loop.
#[inline(never)]
fn sums<const C: usize, const V: usize, const W: usize>(acc: &[[[f32; W]; V]; C]) -> [f32; C] {
    acc.map(|vectors| {
        let mut v = [0.0f32; W];
        for x in &vectors {
            for i in 0..W {
                v[i] += x[i];
            }
        }
        // Pairwise, as the four-lane sum always was.
        let mut width = W;
        while width > 1 {
            width /= 2;
            for i in 0..width {
                v[i] += v[i + width];
            }
        }
        v[0]
    })
}

/// `row · columns[c]` for each of the `C` columns, over the shortest of
/// them, reading `row` once (the convolutions apply each kernel row to up
/// to four time steps; the LSTM applies four gate rows to one input). `V`
/// vectors accumulate per column, so that `C * V` independent additions
/// hide the adder's latency: `C * V = 4` measured best. Eight lanes with
/// fused multiply-adds where the CPU has AVX2 and FMA, four otherwise.
#[inline(always)]
pub(crate) fn dots<const C: usize, const V: usize>(row: &[f32], columns: [&[f32]; C]) -> [f32; C] {
    #[cfg(target_arch = "x86_64")]
    if x86::has_avx2_fma() && !portable_only() {
        return x86::dots_avx2_fma::<C, V>(row, columns);
    }
    dots_lanes::<C, V, WIDTH, false>(row, columns)
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

/// [`dots`] with `W` lanes, fused or not.
#[inline(always)]
fn dots_lanes<const C: usize, const V: usize, const W: usize, const FUSED: bool>(
    row: &[f32],
    columns: [&[f32]; C],
) -> [f32; C] {
    let n = columns.iter().fold(row.len(), |n, c| n.min(c.len()));
    let (row_groups, _) = row[..n].as_chunks::<W>().0.as_chunks::<V>();
    let groups = columns.map(|c| c[..n].as_chunks::<W>().0.as_chunks::<V>().0);
    let mut acc = [[[0.0f32; W]; V]; C];
    for (g, w) in row_groups.iter().enumerate() {
        for (acc, column) in acc.iter_mut().zip(&groups) {
            // Always there (every column has as many groups as the row);
            // checked rather than indexed, which measured faster.
            if let Some(x) = column.get(g) {
                for v in 0..V {
                    multiply_add::<W, FUSED>(&mut acc[v], &w[v], &x[v]);
                }
            }
        }
    }
    let mut out = sums(&acc);
    let done = row_groups.len() * V * W;
    for (sum, column) in out.iter_mut().zip(&columns) {
        for (w, x) in row[done..n].iter().zip(&column[done..n]) {
            *sum = if FUSED {
                w.mul_add(*x, *sum)
            } else {
                *sum + w * x
            };
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::has_avx2_fma;

/// The AVX2 and FMA build of the dot products.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    /// Whether this CPU has AVX2 and FMA (std caches the answer).
    #[inline(always)]
    pub(crate) fn has_avx2_fma() -> bool {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }

    #[target_feature(enable = "avx2,fma")]
    fn dots_compiled_for_avx2_fma<const C: usize, const V: usize>(
        row: &[f32],
        columns: [&[f32]; C],
    ) -> [f32; C] {
        super::dots_lanes::<C, V, 8, true>(row, columns)
    }

    /// [`super::dots`] on eight lanes with fused multiply-adds. Only call
    /// when [`has_avx2_fma`].
    #[inline(always)]
    pub(super) fn dots_avx2_fma<const C: usize, const V: usize>(
        row: &[f32],
        columns: [&[f32]; C],
    ) -> [f32; C] {
        debug_assert!(has_avx2_fma());
        // SAFETY: the function is safe Rust compiled for AVX2 and FMA; it
        // is called only after `has_avx2_fma` found both on this CPU.
        unsafe { dots_compiled_for_avx2_fma::<C, V>(row, columns) }
    }
}

/// `Σ a[i] b[i]` over the shorter of the two.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let [sum] = dots::<1, 4>(a, [b]);
    sum
}

/// `e^x` in each lane: Cephes' `expf` (a Cody-Waite reduction by ln 2 and a
/// degree-5 polynomial, relative error under 2e-7), written lane-wise so
/// that it vectorises, where the C library's `expf` is one call per value.
/// Inputs are clamped to [-87, 88], where `e^x` is a normal float.
pub(crate) fn exp(x: Vector) -> Vector {
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
    let mut out = [0.0; WIDTH];
    for (y, x) in out.iter_mut().zip(x) {
        let x = x.clamp(-87.0, 88.0);
        // round(x / ln 2), by truncating a positive number (SSE2 has no
        // rounding instruction; truncation is one).
        let n = ((x * LOG2E + 0.5 + 128.0) as i32 - 128) as f32;
        let r = x - n * LN2_HIGH - n * LN2_LOW;
        let poly = P.iter().fold(0.0, |acc, p| acc * r + p);
        let e_r = poly * (r * r) + r + 1.0;
        // Times 2^n: n + 127 is in [1, 254], a normal exponent.
        *y = e_r * f32::from_bits(((n as i32 + 127) as u32) << 23);
    }
    out
}

/// The logistic function in each lane.
pub(crate) fn sigmoid(x: Vector) -> Vector {
    exp(x.map(|x| -x)).map(|e| 1.0 / (1.0 + e))
}

/// `tanh` in each lane, as `(1 - e^-2x) / (1 + e^-2x)`: absolute error
/// about 1e-7, the precision the network needs.
pub(crate) fn tanh(x: Vector) -> Vector {
    exp(x.map(|x| -2.0 * x)).map(|e| (1.0 - e) / (1.0 + e))
}

/// `relu(conv(input))` for one of the encoder's convolutions: `input` is
/// `[in_channels][conv.steps_in]`, `output` becomes
/// `[out_channels][conv.steps_out()]`. `columns` is scratch.
pub(crate) fn conv_relu(conv: &Conv, input: &[f32], columns: &mut Vec<f32>, output: &mut Vec<f32>) {
    let steps = conv.steps_in;
    let steps_out = conv.steps_out();
    let width = conv.taps.len() * conv.in_channels;
    // Column t holds, channel by channel, the input samples the kernel's
    // live taps see at output step t (zero past either edge).
    columns.clear();
    columns.resize(steps_out * width, 0.0);
    for (t, column) in columns.chunks_exact_mut(width).enumerate() {
        for (channel, taps) in column.chunks_exact_mut(conv.taps.len()).enumerate() {
            let row = &input[channel * steps..(channel + 1) * steps];
            for (tap, k) in taps.iter_mut().zip(&conv.taps) {
                if let Some(x) = (t * conv.stride + k)
                    .checked_sub(1)
                    .and_then(|i| row.get(i))
                {
                    *tap = *x;
                }
            }
        }
    }
    output.clear();
    output.resize(conv.out_channels * steps_out, 0.0);
    match steps_out {
        4 => apply::<4, 1>(conv, columns, output),
        2 => apply::<2, 2>(conv, columns, output),
        1 => apply::<1, 4>(conv, columns, output),
        _ => {
            for ((out, kernel), bias) in output
                .chunks_exact_mut(steps_out)
                .zip(conv.weight.chunks_exact(width))
                .zip(&conv.bias)
            {
                for (y, column) in out.iter_mut().zip(columns.chunks_exact(width)) {
                    *y = (bias + dot(kernel, column)).max(0.0);
                }
            }
        }
    }
}

/// [`conv_relu`]'s products for exactly `C` output steps.
fn apply<const C: usize, const V: usize>(conv: &Conv, columns: &[f32], output: &mut [f32]) {
    let width = columns.len() / C;
    let columns: [&[f32]; C] = std::array::from_fn(|t| &columns[t * width..(t + 1) * width]);
    for ((out, kernel), bias) in output
        .chunks_exact_mut(C)
        .zip(conv.weight.chunks_exact(width))
        .zip(&conv.bias)
    {
        for (y, sum) in out.iter_mut().zip(dots::<C, V>(kernel, columns)) {
            *y = (bias + sum).max(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_sigmoid_and_tanh_match_the_c_library() {
        let mut worst = [0.0f32; 3];
        for i in -20_000..=20_000 {
            let x = i as f32 * 0.004; // -80 to 80
            let lanes = [x, x, x, x];
            let e = exp(lanes)[0];
            worst[0] = worst[0].max((e - x.exp()).abs() / x.exp());
            let logistic = 1.0 / (1.0 + (-x).exp());
            worst[1] = worst[1].max((sigmoid(lanes)[0] - logistic).abs());
            worst[2] = worst[2].max((tanh(lanes)[0] - x.tanh()).abs());
        }
        assert!(worst[0] < 5e-7, "exp: relative error {}", worst[0]);
        assert!(worst[1] < 2e-7, "sigmoid: error {}", worst[1]);
        assert!(worst[2] < 5e-7, "tanh: error {}", worst[2]);
        assert_eq!(exp([-1000.0, 1000.0, 0.0, 1.0])[2], 1.0);
        assert!(exp([-1000.0; 4])[0] > 0.0 && exp([1000.0; 4])[0].is_finite());
    }

    #[test]
    fn dots_match_the_plain_sums_for_any_length() {
        for n in [0, 1, 7, 8, 9, 31, 256, 387] {
            let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let b: Vec<f32> = (0..n).map(|i| 1.0 - i as f32 * 0.25).collect();
            let c: Vec<f32> = (0..n).map(|i| (i % 5) as f32).collect();
            let plain = |x: &[f32]| -> f32 { a.iter().zip(x).map(|(p, q)| p * q).sum() };
            let close = |x: f32, y: f32| (x - y).abs() <= 1e-3 * y.abs().max(1.0);
            assert!(close(dot(&a, &b), plain(&b)), "n={n}");
            let [ab, ac] = dots::<2, 2>(&a, [&b, &c]);
            assert!(close(ab, plain(&b)) && close(ac, plain(&c)), "n={n}");
        }
    }

    #[test]
    fn the_avx2_fma_build_agrees_with_the_portable_one() {
        #[cfg(target_arch = "x86_64")]
        if x86::has_avx2_fma() {
            for n in [0, 5, 8, 63, 256, 387] {
                let a: Vec<f32> = (0..n)
                    .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
                    .collect();
                let b: Vec<f32> = (0..n)
                    .map(|i| ((i * 53) % 89) as f32 / 40.0 - 1.1)
                    .collect();
                let c: Vec<f32> = (0..n).map(|i| ((i * 11) % 7) as f32 - 3.0).collect();
                let portable = dots_lanes::<2, 2, WIDTH, false>(&a, [&b, &c]);
                let fused = x86::dots_avx2_fma::<2, 2>(&a, [&b, &c]);
                for (p, f) in portable.iter().zip(fused) {
                    assert!(
                        (p - f).abs() <= 1e-5 * p.abs().max(1.0),
                        "n={n}: {p} vs {f}"
                    );
                }
            }
        } else {
            eprintln!("this CPU has no AVX2 and FMA: only the portable build ran");
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

    #[test]
    fn conv_pads_strides_drops_dead_taps_and_rectifies() {
        // One input channel [1, 2, 3, 4]; two output channels; stride 2.
        let conv = Conv::new(
            (1, 2, 2, 4),
            &[1.0, 10.0, 100.0, -1.0, -1.0, -1.0],
            &[0.5, 0.0],
        );
        assert_eq!(conv.taps, [0, 1, 2]);
        let (mut columns, mut out) = (Vec::new(), Vec::new());
        conv_relu(&conv, &[1.0, 2.0, 3.0, 4.0], &mut columns, &mut out);
        // Step 0 sees [0, 1, 2]; step 1 sees [2, 3, 4].
        assert_eq!(
            out,
            [0.5 + 10.0 + 200.0, 2.0 + 30.0 + 400.0 + 0.5, 0.0, 0.0]
        );

        // A one-step input: only the middle tap ever sees it.
        let conv = Conv::new((2, 1, 1, 1), &[5.0, 1.0, 5.0, 7.0, 2.0, 7.0], &[0.0]);
        assert_eq!(
            (conv.taps.as_slice(), conv.weight.as_slice()),
            (&[1][..], &[1.0, 2.0][..])
        );
        conv_relu(&conv, &[3.0, 4.0], &mut columns, &mut out);
        assert_eq!(out, [3.0 + 8.0]);
    }
}
