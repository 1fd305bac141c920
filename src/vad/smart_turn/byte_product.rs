//! Self-attention's two products (queries by keys, probabilities by
//! values) with AVX-512 VNNI: `vpdpbusd` sums 32 products an instruction,
//! where the int16 kernels in `attention` sum 16.
//!
//! Both operands are uint8 with zero points, and `vpdpbusd` multiplies
//! uint8 by int8, so the right operand goes in as `b - 128` (every byte
//! fits an int8) and the sum is corrected after:
//!
//! `Σ (a - za)(b - zb) = Σ a·(b - 128) + (128 - zb)·Σ a - za·Σ (b - zb)`
//!
//! The middle term is a row's, the last a column's; every term is an exact
//! int32 (at most 400 products of 255 by 128), so the results are the
//! bytes `attention::product` gives, and onnxruntime's.

use super::attention::Requant;

/// Output columns at once: two vectors of 8 int32 sums.
const COLUMNS: usize = 16;

/// The right operand as the kernel reads it: for each block of 16 columns,
/// for each group of 4 inputs, the 4 bytes minus 128 of column 0, then
/// column 1, and so on; and each column's sum of its bytes minus their zero
/// point.
#[derive(Debug, Clone, Default)]
pub(crate) struct PackedColumns {
    k: usize,
    n: usize,
    zero_point: u8,
    panels: Vec<i8>,
    sums: Vec<i32>,
}

impl PackedColumns {
    /// Packs `n` columns of `k` bytes whose zero point is `zero_point`,
    /// column `c` being `data[c · stride..][..k]` (a head's keys);
    /// `n` a multiple of 16 and `k` of 4.
    pub(crate) fn pack_rows(
        &mut self,
        data: &[u8],
        stride: usize,
        n: usize,
        k: usize,
        zero_point: u8,
    ) {
        self.start(n, k, zero_point);
        let columns =
            |block: usize| (block..block + COLUMNS).map(move |c| &data[c * stride..][..k]);
        let mut at = 0;
        for block in (0..n).step_by(COLUMNS) {
            for group in (0..k).step_by(4) {
                for column in columns(block) {
                    for (slot, byte) in self.panels[at..at + 4]
                        .iter_mut()
                        .zip(&column[group..group + 4])
                    {
                        // `byte - 128` as an int8: the top bit flipped.
                        *slot = (byte ^ 0x80) as i8;
                    }
                    at += 4;
                }
            }
            for (sum, column) in self.sums[block..].iter_mut().zip(columns(block)) {
                *sum = column.iter().map(|b| i32::from(*b)).sum::<i32>()
                    - k as i32 * i32::from(zero_point);
            }
        }
    }

    /// Packs `n` columns of `k` bytes whose zero point is `zero_point`,
    /// byte `i` of column `c` being `data[i · stride + c]` (a head's
    /// values); `n` a multiple of 16 and `k` of 4.
    pub(crate) fn pack_columns(
        &mut self,
        data: &[u8],
        stride: usize,
        n: usize,
        k: usize,
        zero_point: u8,
    ) {
        self.start(n, k, zero_point);
        let mut at = 0;
        for block in (0..n).step_by(COLUMNS) {
            for group in (0..k).step_by(4) {
                let rows: [&[u8]; 4] =
                    std::array::from_fn(|j| &data[(group + j) * stride + block..][..COLUMNS]);
                let panel = &mut self.panels[at..at + 4 * COLUMNS];
                #[cfg(target_arch = "x86_64")]
                sse2::interleave(rows, panel);
                #[cfg(not(target_arch = "x86_64"))]
                for (c, column) in panel.chunks_exact_mut(4).enumerate() {
                    for (slot, row) in column.iter_mut().zip(rows) {
                        *slot = (row[c] ^ 0x80) as i8;
                    }
                }
                at += 4 * COLUMNS;
            }
        }
        for i in 0..k {
            for (sum, byte) in self.sums.iter_mut().zip(&data[i * stride..][..n]) {
                *sum += i32::from(*byte);
            }
        }
        for sum in &mut self.sums {
            *sum -= k as i32 * i32::from(zero_point);
        }
    }

    /// Sized for `n` columns of `k` bytes, the sums at zero.
    fn start(&mut self, n: usize, k: usize, zero_point: u8) {
        // A group's index fits the kernel's u16, and 255 · 128 · k an i32.
        assert!(n.is_multiple_of(COLUMNS) && k.is_multiple_of(4) && k / 4 <= usize::from(u16::MAX));
        (self.k, self.n, self.zero_point) = (k, n, zero_point);
        self.panels.resize(n * k, 0);
        self.sums.clear();
        self.sums.resize(n, 0);
    }

    /// The byte `i` of `column`, as packed.
    #[cfg(test)]
    fn value(&self, column: usize, i: usize) -> u8 {
        let block = column / COLUMNS * COLUMNS * self.k;
        let at = block + (i / 4) * 4 * COLUMNS + (column % COLUMNS) * 4 + i % 4;
        (self.panels[at] as u8) ^ 0x80
    }
}

/// Whether this CPU runs [`product`].
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::qgemm::vnni::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `out[t · out_stride + c] = requantize(Σ_i (a[t][i] - a_zero)(b[c][i] -
/// zb))` for the `m` rows of `a` (row `t` at `t · a_stride`, `b.k` bytes)
/// and the columns of `b`. Only call when [`available`].
#[allow(clippy::too_many_arguments)] // two matrices with their layouts
pub(crate) fn product(
    a: &[u8],
    a_stride: usize,
    m: usize,
    a_zero: u8,
    b: &PackedColumns,
    requant: Requant,
    out: &mut [u8],
    out_stride: usize,
) {
    assert!(available() && b.k <= a_stride && b.n <= out_stride);
    assert!(b.panels.len() == b.n * b.k);
    #[cfg(target_arch = "x86_64")]
    assert!(m <= vnni::MAX_ROWS);
    assert!(
        m == 0 || (a.len() >= (m - 1) * a_stride + b.k && out.len() >= (m - 1) * out_stride + b.n)
    );
    #[cfg(target_arch = "x86_64")]
    vnni::run(a, a_stride, m, a_zero, b, requant, out, out_stride);
}

/// The packing's byte transposition, in SSE2 (every x86-64 CPU has it).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod sse2 {
    use std::arch::x86_64::*;

    use super::COLUMNS;

    /// Column `c`'s 4 bytes (one from each of `rows`) minus 128 at `out[4c..]`,
    /// for the 16 columns: a transposition in 8 unpacks.
    pub(super) fn interleave(rows: [&[u8]; 4], out: &mut [i8]) {
        assert!(rows.iter().all(|r| r.len() >= COLUMNS) && out.len() >= 4 * COLUMNS);
        // SAFETY: each row holds 16 bytes, `out` 64 (asserted); SSE2 is in
        // every x86-64 CPU.
        unsafe {
            let [r0, r1, r2, r3] = rows.map(|r| _mm_loadu_si128(r.as_ptr().cast()));
            let (low_01, high_01) = (_mm_unpacklo_epi8(r0, r1), _mm_unpackhi_epi8(r0, r1));
            let (low_23, high_23) = (_mm_unpacklo_epi8(r2, r3), _mm_unpackhi_epi8(r2, r3));
            let top_bit = _mm_set1_epi8(i8::MIN);
            let quarters = [
                _mm_unpacklo_epi16(low_01, low_23),
                _mm_unpackhi_epi16(low_01, low_23),
                _mm_unpacklo_epi16(high_01, high_23),
                _mm_unpackhi_epi16(high_01, high_23),
            ];
            for (at, quarter) in quarters.into_iter().enumerate() {
                let bytes = _mm_xor_si128(quarter, top_bit);
                _mm_storeu_si128(out.as_mut_ptr().add(16 * at).cast(), bytes);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod vnni {
    use std::arch::x86_64::*;

    use super::{COLUMNS, PackedColumns};
    use crate::vad::smart_turn::attention::Requant;
    use crate::vad::smart_turn::qgemm::avx2::requantize_16;
    use crate::vad::smart_turn::qgemm::vnni::block_sums;

    /// Rows at once: 16 accumulators, which hide `vpdpbusd`'s latency
    /// (AVX-512 has 32 vector registers).
    const BLOCK_ROWS: usize = 8;
    /// The most rows a product has (the attention's time steps).
    pub(super) const MAX_ROWS: usize = crate::vad::smart_turn::weights::STEPS;

    /// [`super::product`], whose checks it relies on.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run(
        a: &[u8],
        a_stride: usize,
        m: usize,
        a_zero: u8,
        b: &PackedColumns,
        requant: Requant,
        out: &mut [u8],
        out_stride: usize,
    ) {
        // SAFETY: the CPU has AVX-512 VNNI and the shapes are as `kernel`
        // needs (asserted in `product`).
        unsafe { kernel(a, a_stride, m, a_zero, b, requant, out, out_stride) }
    }

    /// # Safety
    /// The CPU must have AVX2 and AVX-512 VNNI with VL; the shapes are as
    /// [`super::product`] asserts.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
    unsafe fn kernel(
        a: &[u8],
        a_stride: usize,
        m: usize,
        a_zero: u8,
        b: &PackedColumns,
        requant: Requant,
        out: &mut [u8],
        out_stride: usize,
    ) {
        let k = b.k;
        let block_rows = m / BLOCK_ROWS * BLOCK_ROWS;
        let row_factor = 128 - i32::from(b.zero_point);
        let mut row_offsets = [0i32; MAX_ROWS];
        for (t, offset) in row_offsets[..m].iter_mut().enumerate() {
            let sum: i32 = a[t * a_stride..][..k].iter().map(|v| i32::from(*v)).sum();
            *offset = row_factor * sum;
        }
        let row_offset = |t: usize| row_offsets[t];
        let minus_a_zero = _mm256_set1_epi32(-i32::from(a_zero));
        let scale = [_mm256_set1_ps(requant.scale); 2];
        let zero_point = _mm256_set1_epi32(i32::from(requant.zero_point));
        for column in (0..b.n).step_by(COLUMNS) {
            let panel = &b.panels[column * k..(column + COLUMNS) * k];
            let sums = &b.sums[column..column + COLUMNS];
            // SAFETY: 16 sums, read 8 at a time.
            let column_offset = [0, 8].map(|v| unsafe {
                _mm256_mullo_epi32(
                    _mm256_loadu_si256(sums.as_ptr().add(v).cast()),
                    minus_a_zero,
                )
            });
            for row in (0..block_rows).step_by(BLOCK_ROWS) {
                let rows: [*const u8; BLOCK_ROWS] =
                    std::array::from_fn(|r| a[(row + r) * a_stride..][..k].as_ptr());
                // SAFETY: each row holds `k` bytes, the panel's groups are
                // `k / 4`.
                let acc = unsafe { block_sums(rows, panel, || {}) };
                for (r, acc) in acc.into_iter().enumerate() {
                    let offset = _mm256_set1_epi32(row_offset(row + r));
                    let acc = acc.map(|v| _mm256_add_epi32(v, offset));
                    let bytes = requantize_16(acc, column_offset, scale, zero_point);
                    let at = (row + r) * out_stride + column;
                    // SAFETY: `out` holds row `row + r`'s 16 columns from
                    // `column` (asserted in `product`).
                    unsafe { _mm_storeu_si128(out[at..at + COLUMNS].as_mut_ptr().cast(), bytes) };
                }
            }
        }
        // The last rows, fewer than a block: one sum at a time.
        for t in block_rows..m {
            let row = &a[t * a_stride..][..k];
            for c in 0..b.n {
                let block = &b.panels[c / COLUMNS * COLUMNS * k..][..COLUMNS * k];
                let lane = c % COLUMNS * 4;
                let dot: i32 = row
                    .chunks_exact(4)
                    .zip(block.chunks_exact(4 * COLUMNS))
                    .map(|(a, w)| {
                        a.iter()
                            .zip(&w[lane..lane + 4])
                            .map(|(a, w)| i32::from(*a) * i32::from(*w))
                            .sum::<i32>()
                    })
                    .sum();
                let sum = dot + row_offset(t) - i32::from(a_zero) * b.sums[c];
                out[t * out_stride + c] = crate::vad::smart_turn::qgemm::requantize(
                    sum,
                    requant.scale,
                    requant.zero_point,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vad::smart_turn::qgemm::requantize;

    /// A byte from `i` (a hash, not a pattern).
    fn byte(i: usize) -> u8 {
        (i.wrapping_mul(2_654_435_761) >> 11) as u8
    }

    #[test]
    fn the_product_is_the_exact_sum_of_centred_bytes() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512 VNNI");
            return;
        }
        // Rows in whole blocks and not, strides wider than a row, zero
        // points at both ends and between, bytes at 0 and 255.
        // `scale` puts the sums about 40 steps apart, and `zero_point`
        // their middle near 128 (with zero points at the ends, every
        // product has one sign).
        for (m, k, n, a_stride, out_stride, a_zero, b_zero, scale, zero_point) in [
            (400, 64, 400, 384, 400, 131, 127, 9e-4, 121),
            (13, 400, 64, 400, 384, 0, 255, 2.5e-5, 255),
            (8, 4, 16, 4, 16, 255, 0, 2e-3, 200),
        ] {
            let a: Vec<u8> = (0..m * a_stride)
                .map(|i| match i % 11 {
                    0 => 255,
                    1 => 0,
                    _ => byte(i),
                })
                .collect();
            let b_value = |c: usize, i: usize| match (c + i) % 13 {
                0 => 0,
                1 => 255,
                _ => byte(c * 7919 + i * 31 + 5),
            };
            // The columns as rows (keys), and as columns (values), with a
            // stride wider than the matrix.
            let as_rows: Vec<u8> = (0..n * (k + 3))
                .map(|i| b_value(i / (k + 3), i % (k + 3)))
                .collect();
            let as_columns: Vec<u8> = (0..k * (n + 5))
                .map(|i| b_value(i % (n + 5), i / (n + 5)))
                .collect();
            let mut b = PackedColumns::default();
            let mut by_columns = PackedColumns::default();
            b.pack_rows(&as_rows, k + 3, n, k, b_zero);
            by_columns.pack_columns(&as_columns, n + 5, n, k, b_zero);
            assert_eq!((&b.panels, &b.sums), (&by_columns.panels, &by_columns.sums));
            for c in 0..n {
                for i in 0..k {
                    assert_eq!(b.value(c, i), b_value(c, i));
                }
            }
            let requant = Requant { scale, zero_point };
            let mut out = vec![0; m * out_stride];
            product(&a, a_stride, m, a_zero, &b, requant, &mut out, out_stride);
            for t in 0..m {
                for c in 0..n {
                    let sum: i32 = (0..k)
                        .map(|i| {
                            (i32::from(a[t * a_stride + i]) - i32::from(a_zero))
                                * (i32::from(b_value(c, i)) - i32::from(b_zero))
                        })
                        .sum();
                    assert_eq!(
                        out[t * out_stride + c],
                        requantize(sum, requant.scale, requant.zero_point),
                        "m {m} k {k} n {n}: row {t} column {c}"
                    );
                }
            }
            let distinct: std::collections::BTreeSet<u8> = out.iter().copied().collect();
            assert!(distinct.len() > 20, "a degenerate test: {distinct:?}");
        }
    }
}
