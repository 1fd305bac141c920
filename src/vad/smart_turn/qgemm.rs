//! The int8 matrix product of the encoder's linear layers and
//! convolutions, with onnxruntime's arithmetic on x86-64 without VNNI
//! (MLAS's AVX2 U8S8 kernels): uint8 activations times int8 weights, the
//! products of each pair of neighbouring inputs (`k`, `k + 1`, `k` even)
//! summed and **saturated to int16** (what `vpmaddubsw` does), then
//! accumulated in int32, and requantised in float with round-half-even.
//!
//! The saturation is part of the answer: with full-range weights (this
//! model's reach ±127) and activations around their zero point (about 130),
//! a pair's sum passes 32,767 now and then, and onnxruntime's results carry
//! the clipped value. An exact product would disagree with them.
//!
//! [`QLinear::run`] computes `out[m][n] = requant(sat_dot(a[m], w[n]) +
//! offset[n])` with the AVX2 kernel when the CPU has it (detected at run
//! time) and with the same arithmetic in plain Rust otherwise.

use std::ops::Range;

use super::lut::ColumnLut;

/// Output rows the AVX2 kernel computes at once.
const ROWS: usize = 4;
/// Output columns the AVX2 kernel computes at once (two vectors of 8).
const COLUMNS: usize = 16;

/// A linear map from `k` uint8 inputs to `n` uint8 outputs.
#[derive(Debug, Clone)]
pub(crate) struct QLinear {
    pub(crate) k: usize,
    pub(crate) n: usize,
    /// The weights, `[n][k]`.
    weights: Vec<i8>,
    /// The weights in the kernel's panels: for each block of 16 columns,
    /// for each group of 4 inputs, the 4 bytes of column 0, then column 1,
    /// and so on (empty when `n` or `k` do not fit the kernel).
    panels: Vec<i8>,
    /// Added to each column's int32 sum: the bias (if any) minus the input
    /// zero point times the column's weight sum.
    offset: Vec<i32>,
    /// `input_scale * weight_scale[n] / output_scale`, as onnxruntime
    /// computes it.
    scale: Vec<f32>,
    zero_point: u8,
}

impl QLinear {
    /// `weights` is `[n][k]`, `bias` (if any) in units of
    /// `input_scale * weight_scale[n]`.
    pub(crate) fn new(
        k: usize,
        n: usize,
        weights: Vec<i8>,
        weight_scale: &[f32],
        bias: Option<&[i32]>,
        input: (f32, u8),
        output: (f32, u8),
    ) -> QLinear {
        debug_assert_eq!(weights.len(), k * n);
        let offset = (0..n)
            .map(|c| {
                let sum: i32 = weights[c * k..(c + 1) * k]
                    .iter()
                    .map(|w| i32::from(*w))
                    .sum();
                bias.map_or(0, |b| b[c]) - i32::from(input.1) * sum
            })
            .collect();
        let scale = weight_scale
            .iter()
            .map(|ws| input.0 * ws / output.0)
            .collect();
        let panels = if n.is_multiple_of(COLUMNS) && k.is_multiple_of(4) {
            let mut panels = Vec::with_capacity(k * n);
            for block in (0..n).step_by(COLUMNS) {
                for group in (0..k).step_by(4) {
                    for c in block..block + COLUMNS {
                        panels.extend_from_slice(&weights[c * k + group..c * k + group + 4]);
                    }
                }
            }
            panels
        } else {
            Vec::new()
        };
        QLinear {
            k,
            n,
            weights,
            panels,
            offset,
            scale,
            zero_point: output.1,
        }
    }

    /// `out` (`[m][n]`) from `input` (`[m][k]`).
    pub(crate) fn run(&self, input: &[u8], out: &mut [u8]) {
        self.run_then(input, out, None);
    }

    /// [`run`](QLinear::run), then each output through its column's table
    /// in `lut` (while the kernel's outputs are in cache).
    pub(crate) fn run_mapped(&self, input: &[u8], out: &mut [u8], lut: &ColumnLut) {
        self.run_then(input, out, Some(lut));
    }

    /// [`run`](QLinear::run) (or [`run_mapped`](QLinear::run_mapped) with
    /// `lut`) where the input rows `repeats` equal the row before them:
    /// their outputs are that row's, copied. The caller keeps the rows
    /// before and after `repeats` multiples of 4, the vector kernel's
    /// block, so that none goes to the plain loop.
    pub(crate) fn run_repeating(
        &self,
        input: &[u8],
        out: &mut [u8],
        lut: Option<&ColumnLut>,
        repeats: Range<usize>,
    ) {
        let (k, n) = (self.k, self.n);
        if repeats.is_empty() || repeats.start == 0 {
            self.run_then(input, out, lut);
            return;
        }
        let (before, out) = out.split_at_mut(repeats.start * n);
        let (copies, after) = out.split_at_mut(repeats.len() * n);
        self.run_then(&input[..repeats.start * k], before, lut);
        self.run_then(&input[repeats.end * k..], after, lut);
        let last = &before[(repeats.start - 1) * n..];
        for copy in copies.chunks_exact_mut(n) {
            copy.copy_from_slice(last);
        }
    }

    fn run_then(&self, input: &[u8], out: &mut [u8], lut: Option<&ColumnLut>) {
        let m = input.len() / self.k;
        debug_assert_eq!(out.len(), m * self.n);
        let whole = if self.panels.is_empty() {
            0
        } else {
            m / ROWS * ROWS
        };
        #[cfg(target_arch = "x86_64")]
        if whole > 0 && avx2::available() {
            let (vector, rest) = out.split_at_mut(whole * self.n);
            avx2::run(self, &input[..whole * self.k], vector, lut);
            self.run_scalar(&input[whole * self.k..], rest);
            if let Some(lut) = lut {
                lut.apply(rest);
            }
            return;
        }
        self.run_scalar(input, out);
        if let Some(lut) = lut {
            lut.apply(out);
        }
    }

    /// The same arithmetic, one output at a time.
    pub(crate) fn run_scalar(&self, input: &[u8], out: &mut [u8]) {
        for (row, out) in input.chunks_exact(self.k).zip(out.chunks_exact_mut(self.n)) {
            for (c, out) in out.iter_mut().enumerate() {
                let sum = saturating_dot(row, &self.weights[c * self.k..(c + 1) * self.k]);
                *out = requantize(sum + self.offset[c], self.scale[c], self.zero_point);
            }
        }
    }
}

/// `Σ a·w` with each pair of neighbouring products saturated to int16, as
/// `vpmaddubsw` computes it.
pub(crate) fn saturating_dot(a: &[u8], w: &[i8]) -> i32 {
    a.chunks(2)
        .zip(w.chunks(2))
        .map(|(a, w)| {
            let pair: i32 = a
                .iter()
                .zip(w)
                .map(|(a, w)| i32::from(*a) * i32::from(*w))
                .sum();
            pair.clamp(i32::from(i16::MIN), i32::from(i16::MAX))
        })
        .sum()
}

/// An int32 sum to uint8, as MLAS requantises: times the scale in float,
/// rounded half to even, plus the zero point, clamped.
pub(crate) fn requantize(sum: i32, scale: f32, zero_point: u8) -> u8 {
    let value = (sum as f32 * scale).round_ties_even() + f32::from(zero_point);
    value.clamp(0.0, 255.0) as u8
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    use crate::vad::smart_turn::lut::ColumnLut;
    use crate::vad::smart_turn::qgemm::{COLUMNS, QLinear, ROWS};

    pub(crate) fn available() -> bool {
        is_x86_feature_detected!("avx2")
    }

    /// The product for whole blocks of 4 rows, if the CPU has AVX2 (the
    /// caller checked [`available`]).
    pub(super) fn run(q: &QLinear, input: &[u8], out: &mut [u8], lut: Option<&ColumnLut>) {
        assert!(available() && input.len().is_multiple_of(q.k));
        assert!(out.len() == input.len() / q.k * q.n && q.panels.len() == q.k * q.n);
        // SAFETY: the CPU has AVX2 and the shapes are as `kernel` needs.
        unsafe { kernel(q, input, out, lut) }
    }

    /// The product for whole blocks of 4 rows.
    ///
    /// # Safety
    /// The CPU must have AVX2; `input` is `[m][k]` and `out` `[m][n]` with
    /// `m` a multiple of 4; `q.panels` is filled.
    #[target_feature(enable = "avx2")]
    unsafe fn kernel(q: &QLinear, input: &[u8], out: &mut [u8], lut: Option<&ColumnLut>) {
        let (k, n) = (q.k, q.n);
        let m = input.len() / k;
        let ones = _mm256_set1_epi16(1);
        let zero_point = _mm256_set1_epi32(i32::from(q.zero_point));
        for block in 0..n / COLUMNS {
            let panel = &q.panels[block * COLUMNS * k..(block + 1) * COLUMNS * k];
            let column = block * COLUMNS;
            let offsets = [0, 8].map(|v| {
                // SAFETY: `offset` and `scale` hold `n` values, `column + 16 <= n`.
                unsafe {
                    (
                        _mm256_loadu_si256(q.offset.as_ptr().add(column + v).cast()),
                        _mm256_loadu_ps(q.scale.as_ptr().add(column + v)),
                    )
                }
            });
            for row in (0..m).step_by(ROWS) {
                let mut acc = [[_mm256_setzero_si256(); 2]; ROWS];
                let rows: [*const u8; ROWS] =
                    std::array::from_fn(|r| input[(row + r) * k..].as_ptr());
                for group in 0..k / 4 {
                    // SAFETY: the panel holds `k / 4` groups of 64 bytes and
                    // each row `k` bytes.
                    unsafe {
                        let w0 = _mm256_loadu_si256(panel.as_ptr().add(group * 64).cast());
                        let w1 = _mm256_loadu_si256(panel.as_ptr().add(group * 64 + 32).cast());
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let a = _mm256_set1_epi32(
                                rows[r].add(group * 4).cast::<i32>().read_unaligned(),
                            );
                            let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(a, w0), ones);
                            let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(a, w1), ones);
                            acc[0] = _mm256_add_epi32(acc[0], p0);
                            acc[1] = _mm256_add_epi32(acc[1], p1);
                        }
                    }
                }
                for (r, acc) in acc.into_iter().enumerate() {
                    let bytes = requantize_16(
                        acc,
                        offsets.map(|(offset, _)| offset),
                        offsets.map(|(_, scale)| scale),
                        zero_point,
                    );
                    let at = (row + r) * n + column;
                    let out = &mut out[at..at + COLUMNS];
                    match lut {
                        // The 16 columns' tables (4 KB) stay in cache over
                        // the rows; the lookups run in general-purpose
                        // registers, beside the next block's products.
                        Some(lut) => {
                            let words = [_mm_cvtsi128_si64(bytes), _mm_extract_epi64::<1>(bytes)];
                            for (half, (word, out)) in
                                words.into_iter().zip(out.chunks_exact_mut(8)).enumerate()
                            {
                                let mapped = lut.map_word(column + 8 * half, word as u64);
                                out.copy_from_slice(&mapped.to_le_bytes());
                            }
                        }
                        // SAFETY: `out` holds 16 bytes.
                        None => unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), bytes) },
                    }
                }
            }
        }
    }

    /// `weights::Quant::quantize` of each of `values` (a multiple of 8 of
    /// them) into `out`. Only call when [`available`].
    pub(crate) fn quantize(scale: f32, zero_point: u8, values: &[f32], out: &mut [u8]) {
        assert!(available() && values.len().is_multiple_of(8) && out.len() == values.len());
        // SAFETY: the CPU has AVX2 and the lengths are as `quantize_kernel`
        // needs.
        unsafe { quantize_kernel(scale, zero_point, values, out) }
    }

    /// # Safety
    /// The CPU must have AVX2; `values` and `out` have the same length, a
    /// multiple of 8.
    #[target_feature(enable = "avx2")]
    unsafe fn quantize_kernel(scale: f32, zero_point: u8, values: &[f32], out: &mut [u8]) {
        let scale = _mm256_set1_ps(scale);
        let zero_point = _mm256_set1_ps(f32::from(zero_point));
        let top = _mm256_set1_ps(255.0);
        for (values, out) in values.chunks_exact(8).zip(out.chunks_exact_mut(8)) {
            // SAFETY: 8 values to read and 8 bytes to write.
            unsafe {
                let x = _mm256_div_ps(_mm256_loadu_ps(values.as_ptr()), scale);
                let rounded =
                    _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x);
                // `max` first: it gives its second operand, 0, for a NaN,
                // as the plain clamp and cast do.
                let q = _mm256_add_ps(rounded, zero_point);
                let q =
                    _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(q, _mm256_setzero_ps()), top));
                let words =
                    _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256::<1>(q));
                _mm_storel_epi64(out.as_mut_ptr().cast(), _mm_packus_epi16(words, words));
            }
        }
    }

    /// Two vectors of 8 int32 sums plus `offset`, requantised as
    /// [`requantize`](super::requantize) does (times `scale` in float,
    /// rounded half to even, plus `zero_point`, clamped) to 16 bytes in
    /// order.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(crate) fn requantize_16(
        sums: [__m256i; 2],
        offset: [__m256i; 2],
        scale: [__m256; 2],
        zero_point: __m256i,
    ) -> __m128i {
        let [v0, v1] = [0, 1].map(|v| {
            let sum = _mm256_add_epi32(sums[v], offset[v]);
            let scaled = _mm256_mul_ps(_mm256_cvtepi32_ps(sum), scale[v]);
            // Round half to even (the default MXCSR mode).
            let q = _mm256_add_epi32(_mm256_cvtps_epi32(scaled), zero_point);
            _mm256_min_epi32(
                _mm256_max_epi32(q, _mm256_setzero_si256()),
                _mm256_set1_epi32(255),
            )
        });
        // 16 int32 in [0, 255] to 16 bytes, in order.
        let words = _mm256_permute4x64_epi64(_mm256_packus_epi32(v0, v1), 0b11_01_10_00);
        let bytes = _mm256_permute4x64_epi64(_mm256_packus_epi16(words, words), 0b11_01_10_00);
        _mm256_castsi256_si128(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(k: usize, n: usize, seed: u32) -> (QLinear, Vec<u8>) {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 16) as u8
        };
        let weights: Vec<i8> = (0..k * n).map(|_| next() as i8).collect();
        let scales: Vec<f32> = (0..n).map(|c| 0.001 + c as f32 * 1e-5).collect();
        let bias: Vec<i32> = (0..n).map(|c| c as i32 * 37 - 500).collect();
        let input: Vec<u8> = (0..9 * k).map(|_| next()).collect();
        let q = QLinear::new(k, n, weights, &scales, Some(&bias), (0.05, 131), (0.9, 120));
        (q, input)
    }

    #[test]
    fn pairs_saturate_to_int16_as_vpmaddubsw_does() {
        // 255 * 127 * 2 = 64,770: clipped to 32,767 per pair.
        assert_eq!(
            saturating_dot(&[255, 255, 255, 255], &[127, 127, 127, 127]),
            65_534
        );
        assert_eq!(saturating_dot(&[255, 255], &[-128, -128]), -32_768);
        // Pairs are (0, 1) and (2, 3): opposite signs within a pair cancel
        // before the clip.
        assert_eq!(saturating_dot(&[255, 255], &[127, -127]), 0);
        assert_eq!(saturating_dot(&[1, 2, 3], &[4, 5, 6]), 32);
    }

    #[test]
    fn requantization_rounds_half_to_even_and_clamps() {
        assert_eq!(requantize(5, 0.5, 10), 12); // 2.5 -> 2
        assert_eq!(requantize(7, 0.5, 10), 14); // 3.5 -> 4
        assert_eq!(requantize(-1000, 1.0, 10), 0);
        assert_eq!(requantize(1000, 1.0, 10), 255);
    }

    #[test]
    fn the_vector_kernel_matches_the_scalar_arithmetic() {
        for (k, n) in [(384, 32), (240, 16), (8, 48)] {
            let (q, input) = layer(k, n, k as u32);
            let mut fast = vec![0; 9 * n];
            let mut plain = vec![0; 9 * n];
            q.run(&input, &mut fast);
            q.run_scalar(&input, &mut plain);
            assert_eq!(fast, plain, "k {k}, n {n}");
            assert!(plain.iter().any(|v| *v != plain[0]), "a degenerate test");
            // With a table per column, applied in the kernel.
            let lut = ColumnLut::new(n, |c, v| v.wrapping_mul(3).wrapping_add(c as u8));
            q.run_mapped(&input, &mut fast, &lut);
            lut.apply(&mut plain);
            assert_eq!(fast, plain, "k {k}, n {n}, mapped");
        }
    }

    #[test]
    fn repeated_rows_are_copied_as_computed() {
        let (q, mut input) = layer(240, 32, 7);
        // Rows 1 to 8 the same: 4 to 8 may be copied from row 3.
        let row: Vec<u8> = input[240..480].to_vec();
        for r in 2..9 {
            input[r * 240..(r + 1) * 240].copy_from_slice(&row);
        }
        let lut = ColumnLut::new(32, |c, v| v.wrapping_add(c as u8));
        let mut copied = vec![0; 9 * 32];
        let mut computed = vec![0; 9 * 32];
        q.run_repeating(&input, &mut copied, Some(&lut), 4..8);
        q.run_mapped(&input, &mut computed, &lut);
        assert_eq!(copied, computed);
        q.run_repeating(&input, &mut copied, None, 4..8);
        q.run(&input, &mut computed);
        assert_eq!(copied, computed);
    }
}
