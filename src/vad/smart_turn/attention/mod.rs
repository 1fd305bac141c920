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
//! to its requantised byte. On CPUs with AVX-512 VNNI the encoder runs the
//! same products on the bytes themselves instead (`byte_product`).
//!
//! The softmax, [`QSoftmax`], is in `softmax`.

mod softmax;

use super::qgemm::requantize;
pub(crate) use softmax::QSoftmax;

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

    use super::{PANEL, Requant};
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
}
