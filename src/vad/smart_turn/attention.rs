//! Self-attention's two products and its softmax, as onnxruntime computes
//! them for this model: `QLinearMatMul` of uint8 by uint8 (exact int32
//! sums of zero-point-corrected products, no saturation: MLAS widens both
//! sides to int16) and the contrib `QLinearSoftmax` (a table of
//! exponentials over the 256 input bytes).
//!
//! The products run as MLAS's do, on int16 operands (the bytes minus their
//! zero points, in [-255, 255]) summed in int32 (`vpmaddwd`: 16 products
//! an instruction): every sum is exact (queries by keys: 64 products of at
//! most 255² each; probabilities by values: 400), so the results are the
//! same whichever order the kernel adds them in. Each result goes straight
//! to its requantised byte.

use super::qgemm::requantize;

/// Columns of the packed right operand the kernels read at once.
const PANEL: usize = 8;

/// Packs the right operand `b` (`n` columns of `k` values, `value(column,
/// i)`) as the kernels read it: for each block of 8 columns, for each pair
/// of inputs `(i, i + 1)`, the 8 columns' two values.
pub(crate) fn pack(n: usize, k: usize, value: impl Fn(usize, usize) -> i16, out: &mut [i16]) {
    debug_assert!(n.is_multiple_of(PANEL) && k.is_multiple_of(2) && out.len() == n * k);
    let mut slots = out.iter_mut();
    for block in (0..n).step_by(PANEL) {
        for i in (0..k).step_by(2) {
            for column in block..block + PANEL {
                // The pair first: `zip` stops on it without taking a slot.
                for (i, slot) in [i, i + 1].into_iter().zip(slots.by_ref()) {
                    *slot = value(column, i);
                }
            }
        }
    }
}

/// The requantisation of a product's int32 sums: `scale` (`a_scale *
/// b_scale / out_scale`) and the output's zero point.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Requant {
    pub(crate) scale: f32,
    pub(crate) zero_point: u8,
}

/// `out[row · stride + c] = requantize(Σ_i a[row][i] · b[c][i])` for the
/// `n` columns of `b` ([`pack`]ed, `k` values each) and the rows of `a`
/// (`[m][k]`).
pub(crate) fn product(
    a: &[i16],
    k: usize,
    packed: &[i16],
    n: usize,
    requant: Requant,
    out: &mut [u8],
    stride: usize,
) {
    let m = a.len() / k;
    assert!(packed.len() == n * k && (m == 0 || out.len() >= (m - 1) * stride + n));
    #[cfg(target_arch = "x86_64")]
    if m.is_multiple_of(avx2::ROWS) && n.is_multiple_of(avx2::COLUMNS) && avx2::available() {
        avx2::product(a, k, packed, n, requant, out, stride);
        return;
    }
    product_scalar(a, k, packed, n, requant, out, stride);
}

/// [`product`] for a left operand that is mostly zeros: the softmax's
/// probabilities, of which about three in four quantise to zero. Each row
/// multiplies only its pairs of inputs that are not both zero; the sums
/// are exact, so leaving out zero products changes nothing.
pub(crate) fn sparse_product(
    a: &[i16],
    k: usize,
    packed: &[i16],
    n: usize,
    requant: Requant,
    out: &mut [u8],
    stride: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if n == avx2::SPARSE_COLUMNS && avx2::sparse_fits(k) && avx2::available() {
        avx2::sparse_product(a, k, packed, requant, out, stride);
        return;
    }
    product(a, k, packed, n, requant, out, stride);
}

fn product_scalar(
    a: &[i16],
    k: usize,
    packed: &[i16],
    n: usize,
    requant: Requant,
    out: &mut [u8],
    stride: usize,
) {
    for (row, a) in a.chunks_exact(k).enumerate() {
        for column in 0..n {
            let block = &packed[column / PANEL * PANEL * k..][..PANEL * k];
            let lane = column % PANEL * 2;
            let sum: i32 = a
                .chunks_exact(2)
                .zip(block.chunks_exact(2 * PANEL))
                .map(|(a, b)| {
                    i32::from(a[0]) * i32::from(b[lane]) + i32::from(a[1]) * i32::from(b[lane + 1])
                })
                .sum();
            out[row * stride + column] = requantize(sum, requant.scale, requant.zero_point);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{PANEL, QSoftmax, Requant};
    use crate::vad::smart_turn::qgemm::avx2::requantize_16;

    /// Rows and columns of the kernel's register block.
    pub(super) const ROWS: usize = 4;
    pub(super) const COLUMNS: usize = 2 * PANEL;

    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx2")
    }

    /// [`super::product`] for `m` a multiple of 4 and `n` of 16, if the CPU
    /// has AVX2 (the caller checked [`available`]).
    pub(super) fn product(
        a: &[i16],
        k: usize,
        packed: &[i16],
        n: usize,
        requant: Requant,
        out: &mut [u8],
        stride: usize,
    ) {
        let m = a.len() / k;
        assert!(available() && m.is_multiple_of(ROWS) && n.is_multiple_of(COLUMNS));
        assert!(k.is_multiple_of(2) && a.len() == m * k && packed.len() == n * k);
        assert!(m == 0 || out.len() >= (m - 1) * stride + n);
        // SAFETY: the CPU has AVX2 and the shapes are as `kernel` needs.
        unsafe { kernel(a, k, packed, n, requant, out, stride) }
    }

    /// Blocks of 4 rows by 16 columns in 8 int32 accumulators.
    ///
    /// # Safety
    /// The CPU must have AVX2; the shapes are as [`product`] asserts.
    #[target_feature(enable = "avx2")]
    unsafe fn kernel(
        a: &[i16],
        k: usize,
        packed: &[i16],
        n: usize,
        requant: Requant,
        out: &mut [u8],
        stride: usize,
    ) {
        let m = a.len() / k;
        let scale = _mm256_set1_ps(requant.scale);
        let zero_point = _mm256_set1_epi32(i32::from(requant.zero_point));
        let offset = _mm256_setzero_si256();
        for column in (0..n).step_by(COLUMNS) {
            let panels = [column, column + PANEL].map(|c| packed[c * k..].as_ptr());
            for row in (0..m).step_by(ROWS) {
                let rows: [*const i16; ROWS] = std::array::from_fn(|r| a[(row + r) * k..].as_ptr());
                let mut acc = [[_mm256_setzero_si256(); 2]; ROWS];
                for pair in (0..k).step_by(2) {
                    // SAFETY: each panel holds `k / 2` pairs of 8 columns
                    // (16 values) and each row `k` values.
                    unsafe {
                        let b = panels.map(|p| _mm256_loadu_si256(p.add(pair * PANEL).cast()));
                        for (acc, row) in acc.iter_mut().zip(rows) {
                            let a = _mm256_set1_epi32(row.add(pair).cast::<i32>().read_unaligned());
                            acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(a, b[0]));
                            acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(a, b[1]));
                        }
                    }
                }
                for (r, acc) in acc.into_iter().enumerate() {
                    let bytes = requantize_16(acc, [offset; 2], [scale; 2], zero_point);
                    let at = (row + r) * stride + column;
                    // SAFETY: `out` holds row `row + r`'s 16 columns from
                    // `column` (asserted in `product`).
                    unsafe { _mm_storeu_si128(out[at..at + COLUMNS].as_mut_ptr().cast(), bytes) };
                }
            }
        }
    }

    /// Columns of the sparse kernel: one row by all of them (8 vectors
    /// of 8 int32 sums).
    pub(super) const SPARSE_COLUMNS: usize = 8 * PANEL;
    /// Pairs of inputs the sparse kernel lists at once (a byte each).
    const MAX_PAIRS: usize = 256;

    /// For each byte `mask` (bit `i`: pair `i` of 8 is nonzero), the
    /// positions of its set bits, in order, as the bytes of a word.
    const POSITIONS: [u64; 256] = {
        let mut table = [0u64; 256];
        let mut mask = 0;
        while mask < 256 {
            let (mut bit, mut count, mut word) = (0, 0, 0u64);
            while bit < 8 {
                if mask & (1 << bit) != 0 {
                    word |= (bit as u64) << (8 * count);
                    count += 1;
                }
                bit += 1;
            }
            table[mask] = word;
            mask += 1;
        }
        table
    };

    /// Whether rows of `k` values suit the sparse kernel (whole vectors of
    /// 8 pairs, each pair's index a byte).
    pub(super) fn sparse_fits(k: usize) -> bool {
        k.is_multiple_of(16) && k / 2 <= MAX_PAIRS
    }

    /// [`super::sparse_product`] with `n` = [`SPARSE_COLUMNS`], if the CPU
    /// has AVX2 (the caller checked [`available`] and [`sparse_fits`]).
    pub(super) fn sparse_product(
        a: &[i16],
        k: usize,
        packed: &[i16],
        requant: Requant,
        out: &mut [u8],
        stride: usize,
    ) {
        let m = a.len() / k;
        assert!(available() && sparse_fits(k) && a.len() == m * k);
        assert!(packed.len() == SPARSE_COLUMNS * k);
        assert!(m == 0 || out.len() >= (m - 1) * stride + SPARSE_COLUMNS);
        // SAFETY: the CPU has AVX2 and the shapes are as `sparse_kernel`
        // needs.
        unsafe { sparse_kernel(a, k, packed, requant, out, stride) }
    }

    /// Row by row: the indices of the row's nonzero pairs (8 pairs
    /// compared at once, their positions from [`POSITIONS`]), then the
    /// 64 columns' sums over those pairs alone.
    ///
    /// # Safety
    /// The CPU must have AVX2; the shapes are as [`sparse_product`]
    /// asserts.
    #[target_feature(enable = "avx2")]
    unsafe fn sparse_kernel(
        a: &[i16],
        k: usize,
        packed: &[i16],
        requant: Requant,
        out: &mut [u8],
        stride: usize,
    ) {
        let scale = _mm256_set1_ps(requant.scale);
        let zero_point = _mm256_set1_epi32(i32::from(requant.zero_point));
        let offset = _mm256_setzero_si256();
        // A word of 8 indices may be written past the last one listed.
        let mut pairs = [0u8; MAX_PAIRS + 8];
        for (row, a) in a.chunks_exact(k).enumerate() {
            let mut listed = 0;
            for (group, values) in a.chunks_exact(16).enumerate() {
                // SAFETY: `values` holds 16 values (8 pairs).
                let pair_is_zero = unsafe {
                    _mm256_cmpeq_epi32(
                        _mm256_loadu_si256(values.as_ptr().cast()),
                        _mm256_setzero_si256(),
                    )
                };
                let nonzero = !_mm256_movemask_ps(_mm256_castsi256_ps(pair_is_zero)) & 0xff;
                // `group * 8 + 7 < 256`: adding it to each byte carries
                // into none.
                let first = (group as u64 * 8) * 0x0101_0101_0101_0101;
                let indices = POSITIONS[nonzero as usize] + first;
                pairs[listed..listed + 8].copy_from_slice(&indices.to_le_bytes());
                listed += nonzero.count_ones() as usize;
            }
            let mut acc = [_mm256_setzero_si256(); 8];
            for pair in &pairs[..listed] {
                let pair = usize::from(*pair);
                // SAFETY: `pair < k / 2`: the row holds its two values,
                // and each of the 8 panels (`PANEL * k` values) its 16.
                unsafe {
                    let a =
                        _mm256_set1_epi32(a.as_ptr().add(2 * pair).cast::<i32>().read_unaligned());
                    for (block, acc) in acc.iter_mut().enumerate() {
                        let b = packed.as_ptr().add(block * PANEL * k + pair * 2 * PANEL);
                        *acc = _mm256_add_epi32(
                            *acc,
                            _mm256_madd_epi16(a, _mm256_loadu_si256(b.cast())),
                        );
                    }
                }
            }
            for (half, acc) in acc.chunks_exact(2).enumerate() {
                let bytes = requantize_16([acc[0], acc[1]], [offset; 2], [scale; 2], zero_point);
                let at = row * stride + half * COLUMNS;
                // SAFETY: `out` holds the row's 64 columns (asserted in
                // `sparse_product`).
                unsafe { _mm_storeu_si128(out[at..at + COLUMNS].as_mut_ptr().cast(), bytes) };
            }
        }
    }

    /// [`QSoftmax::exponentials`] for a multiple of 16 scores: the row's
    /// maximum 16 bytes at a time, the table read by gathers of 8, summed
    /// in the same 8 lanes in the same order.
    #[target_feature(enable = "avx2")]
    fn exponentials(softmax: &QSoftmax, scores: &[u8], exps: &mut [f32]) -> f32 {
        let mut max = _mm_setzero_si128();
        for chunk in scores.chunks_exact(16) {
            // SAFETY: `chunk` holds 16 bytes.
            max = _mm_max_epu8(max, unsafe { _mm_loadu_si128(chunk.as_ptr().cast()) });
        }
        max = _mm_max_epu8(max, _mm_srli_si128::<8>(max));
        max = _mm_max_epu8(max, _mm_srli_si128::<4>(max));
        max = _mm_max_epu8(max, _mm_srli_si128::<2>(max));
        max = _mm_max_epu8(max, _mm_srli_si128::<1>(max));
        let shift = 255 - (_mm_cvtsi128_si32(max) & 0xff) as usize;
        // Scalar loads, not `vgatherdps`: on AMD's cores a gather of 8 costs
        // more than 8 loads.
        let table = &softmax.table[shift..shift + 256];
        for (score, e) in scores.iter().zip(exps.iter_mut()) {
            *e = table[usize::from(*score)];
        }
        let mut lanes = _mm256_setzero_ps();
        for exps in exps.chunks_exact(8) {
            // SAFETY: 8 exponentials to read.
            lanes = _mm256_add_ps(lanes, unsafe { _mm256_loadu_ps(exps.as_ptr()) });
        }
        let mut sums = [0.0f32; 8];
        // SAFETY: `sums` holds 8 values.
        unsafe { _mm256_storeu_ps(sums.as_mut_ptr(), lanes) };
        let total = sums.iter().fold(0.0f32, |sum, lane| sum + lane);
        (1.0 / total) * softmax.inverse_output_scale
    }

    /// The row's outputs 16 at a time, as int32 quanta in [0, 255].
    #[target_feature(enable = "avx2")]
    #[inline]
    fn quanta(
        softmax: &QSoftmax,
        scores: &[u8],
        exps: &mut [f32],
        mut put: impl FnMut(usize, [__m256i; 2]),
    ) {
        let scale = _mm256_set1_ps(exponentials(softmax, scores, exps));
        let zero_point = _mm256_set1_ps(softmax.zero_point);
        let top = _mm256_set1_epi32(255);
        for (at, exps) in exps.chunks_exact(16).enumerate() {
            let quanta = [0, 8].map(|at| {
                // SAFETY: `exps` holds 16 values.
                let e = unsafe { _mm256_loadu_ps(exps[at..at + 8].as_ptr()) };
                // Times, then plus (two roundings, as the plain loop), then
                // rounded half to even (the default MXCSR mode).
                let q = _mm256_cvtps_epi32(_mm256_add_ps(_mm256_mul_ps(e, scale), zero_point));
                _mm256_min_epi32(_mm256_max_epi32(q, _mm256_setzero_si256()), top)
            });
            put(16 * at, quanta);
        }
    }

    #[target_feature(enable = "avx2")]
    fn softmax_row_compiled_for_avx2(
        softmax: &QSoftmax,
        scores: &[u8],
        exps: &mut [f32],
        out: &mut [i16],
    ) {
        let zero_point = _mm256_set1_epi32(softmax.zero_point as i32);
        quanta(softmax, scores, exps, |at, quanta| {
            let [v0, v1] = quanta.map(|q| _mm256_sub_epi32(q, zero_point));
            // 16 int32 in [-255, 255] to 16 int16, in order.
            let words = _mm256_permute4x64_epi64(_mm256_packs_epi32(v0, v1), 0b11_01_10_00);
            let out = &mut out[at..at + 16];
            // SAFETY: `out` holds 16 values.
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), words) };
        });
    }

    #[target_feature(enable = "avx2")]
    fn softmax_bytes_compiled_for_avx2(
        softmax: &QSoftmax,
        scores: &[u8],
        exps: &mut [f32],
        out: &mut [u8],
    ) {
        quanta(softmax, scores, exps, |at, [v0, v1]| {
            // 16 int32 in [0, 255] to 16 bytes, in order.
            let words = _mm256_permute4x64_epi64(_mm256_packus_epi32(v0, v1), 0b11_01_10_00);
            let bytes = _mm256_permute4x64_epi64(_mm256_packus_epi16(words, words), 0b11_01_10_00);
            let out = &mut out[at..at + 16];
            // SAFETY: `out` holds 16 bytes.
            unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), _mm256_castsi256_si128(bytes)) };
        });
    }

    /// [`QSoftmax::row`] with AVX2, for rows of a multiple of 16 scores.
    /// Only call when [`available`].
    pub(super) fn softmax_row(
        softmax: &QSoftmax,
        scores: &[u8],
        exps: &mut [f32],
        out: &mut [i16],
    ) {
        assert!(available() && scores.len().is_multiple_of(16));
        assert!(exps.len() == scores.len() && out.len() == scores.len());
        // SAFETY: the CPU has AVX2 (the caller checked `available`).
        unsafe { softmax_row_compiled_for_avx2(softmax, scores, exps, out) }
    }

    /// [`QSoftmax::row_bytes`] with AVX2, for rows of a multiple of 16
    /// scores. Only call when [`available`].
    pub(super) fn softmax_bytes(
        softmax: &QSoftmax,
        scores: &[u8],
        exps: &mut [f32],
        out: &mut [u8],
    ) {
        assert!(available() && scores.len().is_multiple_of(16));
        assert!(exps.len() == scores.len() && out.len() == scores.len());
        // SAFETY: the CPU has AVX2 (the caller checked `available`).
        unsafe { softmax_bytes_compiled_for_avx2(softmax, scores, exps, out) }
    }
}

/// `QLinearSoftmax` over rows of uint8 scores, as MLAS's AVX2 kernel.
#[derive(Debug, Clone)]
pub(crate) struct QSoftmax {
    /// `exp((i - 255 + shift) * scale)` for each byte `i`, then zeros: a
    /// byte plus a shift below 256 is an index the compiler can see is in
    /// bounds.
    table: [f32; 512],
    /// onnxruntime passes `floor(1 / output_scale)`, not `1 / output_scale`.
    inverse_output_scale: f32,
    zero_point: f32,
}

impl QSoftmax {
    /// For rows of `len` scores quantised with `input_scale`, output with
    /// `output_scale` and `zero_point`.
    pub(crate) fn new(len: usize, input_scale: f32, output_scale: f32, zero_point: u8) -> QSoftmax {
        // Keep the sum of a row's exponentials below f32::MAX, with 5 bits
        // to spare, as onnxruntime does.
        let shift = (f64::from(f32::MAX / len as f32).ln() - 5.0).max(0.0) / f64::from(input_scale);
        let table = std::array::from_fn(|i| {
            if i < 256 {
                ((i as f64 - 255.0 + shift) * f64::from(input_scale)).exp() as f32
            } else {
                0.0
            }
        });
        QSoftmax {
            table,
            inverse_output_scale: (1.0 / output_scale).floor(),
            zero_point: f32::from(zero_point),
        }
    }

    /// The softmax of `scores` (a multiple of 8 of them) into `out`, as
    /// uint8 minus the output's zero point, through `exps` (scratch of the
    /// same length).
    pub(crate) fn row(&self, scores: &[u8], exps: &mut [f32], out: &mut [i16]) {
        #[cfg(target_arch = "x86_64")]
        if scores.len().is_multiple_of(16) && avx2::available() {
            avx2::softmax_row(self, scores, exps, out);
            return;
        }
        self.row_scalar(scores, exps, out);
    }

    /// [`row`](QSoftmax::row) with the output bytes themselves, uint8.
    pub(crate) fn row_bytes(&self, scores: &[u8], exps: &mut [f32], out: &mut [u8]) {
        #[cfg(target_arch = "x86_64")]
        if scores.len().is_multiple_of(16) && avx2::available() {
            avx2::softmax_bytes(self, scores, exps, out);
            return;
        }
        self.row_bytes_scalar(scores, exps, out);
    }

    fn row_scalar(&self, scores: &[u8], exps: &mut [f32], out: &mut [i16]) {
        let scale = self.exponentials(scores, exps);
        for (e, out) in exps.iter().zip(out.iter_mut()) {
            *out = (self.quantum(*e, scale) - self.zero_point) as i16;
        }
    }

    fn row_bytes_scalar(&self, scores: &[u8], exps: &mut [f32], out: &mut [u8]) {
        let scale = self.exponentials(scores, exps);
        for (e, out) in exps.iter().zip(out.iter_mut()) {
            *out = self.quantum(*e, scale) as u8;
        }
    }

    /// An exponential's output byte, as a float.
    #[inline(always)]
    fn quantum(&self, exp: f32, scale: f32) -> f32 {
        (exp * scale + self.zero_point)
            .round_ties_even()
            .clamp(0.0, 255.0)
    }

    /// Each score's exponential into `exps`; returns the factor that turns
    /// them into output quanta (`floor(1 / output_scale)` over their sum).
    #[inline(always)]
    fn exponentials(&self, scores: &[u8], exps: &mut [f32]) -> f32 {
        debug_assert!(scores.len().is_multiple_of(8));
        let max = scores.iter().copied().max().unwrap_or(255);
        // The row's maximum to the table's last value (no score passes it).
        let shift = usize::from(255 - max);
        for (s, e) in scores.iter().zip(exps.iter_mut()) {
            *e = self.table[usize::from(*s) + shift];
        }
        // Eight lanes, each summing every eighth value in order, then the
        // lanes in order: the kernel's float rounding.
        let mut lanes = [0.0f32; 8];
        for chunk in exps.chunks_exact(8) {
            for (lane, e) in lanes.iter_mut().zip(chunk) {
                *lane += e;
            }
        }
        let total = lanes.iter().fold(0.0f32, |sum, lane| sum + lane);
        (1.0 / total) * self.inverse_output_scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value in [-255, 255] from `i` (a hash, not a pattern).
    fn centred(i: usize) -> i16 {
        (i.wrapping_mul(2_654_435_761) >> 7) as i16 % 256
    }

    #[test]
    fn the_vector_product_matches_the_plain_loop() {
        for (m, k, n, stride) in [(8, 64, 32, 40), (4, 400, 64, 64), (12, 6, 16, 16)] {
            let a: Vec<i16> = (0..m * k).map(centred).collect();
            let mut b = vec![0; n * k];
            pack(n, k, |c, i| centred(c * 7919 + i * 31 + 5), &mut b);
            let requant = Requant {
                scale: 0.004,
                zero_point: 128,
            };
            let mut fast = vec![0; m * stride];
            let mut plain = vec![0; m * stride];
            product(&a, k, &b, n, requant, &mut fast, stride);
            product_scalar(&a, k, &b, n, requant, &mut plain, stride);
            assert_eq!(fast, plain, "m {m} k {k} n {n}");
            assert!(plain.iter().any(|v| *v != plain[0]), "a degenerate test");
            // One value by hand: row 1, column 5.
            let sum: i32 = (0..k)
                .map(|i| i32::from(a[k + i]) * i32::from(centred(5 * 7919 + i * 31 + 5)))
                .sum();
            assert_eq!(plain[stride + 5], requantize(sum, 0.004, 128));
        }
    }

    #[test]
    fn the_sparse_product_matches_the_plain_loop() {
        // Mostly zeros, as the softmax's probabilities are: whole zero
        // pairs, pairs with one zero, and rows of zeros only.
        for (m, k) in [(5, 400), (3, 16), (4, 64)] {
            let a: Vec<i16> = (0..m * k)
                .map(|i| {
                    if centred(i * 3 + 1) % 4 == 0 && i / k != 1 {
                        centred(i)
                    } else {
                        0
                    }
                })
                .collect();
            let mut b = vec![0; 64 * k];
            pack(64, k, |c, i| centred(c * 7919 + i * 31 + 5), &mut b);
            let requant = Requant {
                scale: 0.02,
                zero_point: 120,
            };
            let stride = 70;
            let mut sparse = vec![0; m * stride];
            let mut plain = vec![0; m * stride];
            sparse_product(&a, k, &b, 64, requant, &mut sparse, stride);
            product_scalar(&a, k, &b, 64, requant, &mut plain, stride);
            assert_eq!(sparse, plain, "m {m} k {k}");
            assert!(plain.iter().any(|v| *v != plain[0]), "a degenerate test");
            assert!(plain[stride..stride + 64].iter().all(|v| *v == 120));
        }
    }

    #[test]
    fn the_vector_softmax_matches_the_plain_loop() {
        let softmax = QSoftmax::new(400, 0.11, 1.0 / 256.0, 3);
        let scores: Vec<u8> = (0..400).map(|i| (centred(i) / 3 + 128) as u8).collect();
        let mut exps = vec![0.0; 400];
        let (mut fast, mut plain) = (vec![0; 400], vec![0; 400]);
        softmax.row(&scores, &mut exps, &mut fast);
        softmax.row_scalar(&scores, &mut exps, &mut plain);
        assert_eq!(fast, plain);
        assert!(plain.iter().any(|v| *v > 0), "a degenerate test");
        let (mut fast_bytes, mut plain_bytes) = (vec![0; 400], vec![0; 400]);
        softmax.row_bytes(&scores, &mut exps, &mut fast_bytes);
        softmax.row_bytes_scalar(&scores, &mut exps, &mut plain_bytes);
        assert_eq!(fast_bytes, plain_bytes);
        // The same quanta, without the zero point taken off.
        assert!(
            plain
                .iter()
                .zip(&plain_bytes)
                .all(|(q, b)| *q + 3 == i16::from(*b))
        );
    }

    #[test]
    fn softmax_sums_to_one_in_quanta_and_keeps_the_order() {
        let softmax = QSoftmax::new(16, 0.2, 1.0 / 256.0, 0);
        let scores: Vec<u8> = (0..16).map(|i| 100 + i * 3).collect();
        let mut exps = vec![0.0; 16];
        let mut out = vec![0; 16];
        softmax.row(&scores, &mut exps, &mut out);
        let total: i32 = out.iter().map(|v| i32::from(*v)).sum();
        assert!((250..=262).contains(&total), "{total}");
        assert!(out.windows(2).all(|w| w[0] <= w[1]), "{out:?}");
    }
}
