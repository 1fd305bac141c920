//! The AVX2 kernel, with the pieces other kernels share (loads,
//! broadcasts, requantisation: the VNNI kernel, `byte_product`'s and
//! `attention`'s), and the quantisation of activations `weights` uses.

use std::arch::x86_64::*;

use super::packed::{COLUMNS, PackedLayer, ROWS};
use crate::vad::smart_turn::lut::ColumnLut;

pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx2")
}

/// The product for whole blocks of 4 rows, if the CPU has AVX2 (the
/// caller checked [`available`]).
pub(super) fn run(q: &PackedLayer, input: &[u8], out: &mut [u8], lut: Option<&ColumnLut>) {
    let groups = q.k / 4;
    let blocks = q.n / COLUMNS;
    assert!(available() && input.len().is_multiple_of(q.k));
    assert!((input.len() / q.k).is_multiple_of(ROWS));
    assert!(out.len() == input.len() / q.k * q.n);
    assert!(q.schedule.len() == blocks * groups && q.byte_groups.len() == blocks);
    assert!(q.chained.len() == blocks);
    let mut plans = q.byte_groups.iter().zip(&q.chained);
    assert!(plans.all(|(bytes, pairs)| *bytes <= groups && 2 * pairs <= *bytes));
    let on_words: usize = q.byte_groups.iter().map(|bytes| groups - bytes).sum();
    // A group on int16 takes twice a group on bytes' 64.
    assert!(q.panels.len() == (blocks * groups + on_words) * 4 * COLUMNS);
    // `broadcast` reads a row's bytes at `4 * group` unchecked.
    assert!(q.schedule.iter().all(|g| usize::from(*g) < groups));
    // SAFETY: the CPU has AVX2 and the shapes are as `kernel` needs.
    unsafe { kernel(q, input, out, lut) }
}

/// The product for whole blocks of 4 rows, 16 columns at a time (their
/// weights, a few KB, stay in cache over the rows): the chained pairs of
/// groups, the other groups on bytes, then those on int16
/// (`super::schedule`).
///
/// # Safety
/// The CPU must have AVX2; `input` is `[m][k]` and `out` `[m][n]` with
/// `m` a multiple of 4; `q.panels`, `q.schedule`, `q.byte_groups` and
/// `q.chained` are filled for the AVX2 kernel.
#[target_feature(enable = "avx2")]
unsafe fn kernel(q: &PackedLayer, input: &[u8], out: &mut [u8], lut: Option<&ColumnLut>) {
    let (k, n) = (q.k, q.n);
    let (m, groups) = (input.len() / k, k / 4);
    let ones = _mm256_set1_epi16(1);
    // Bytes 0 and 2 of each 4, as int16.
    let even_bytes = _mm256_set1_epi32(0x00ff_00ff);
    let mut panel_at = 0;
    for block in 0..n / COLUMNS {
        let column = block * COLUMNS;
        let order = &q.schedule[block * groups..(block + 1) * groups];
        let (bytes, words) = order.split_at(q.byte_groups[block]);
        let size = (bytes.len() + 2 * words.len()) * 4 * COLUMNS;
        let panel = &q.panels[panel_at..panel_at + size];
        panel_at += size;
        let (byte_weights, word_weights) = panel.split_at(bytes.len() * 4 * COLUMNS);
        let (chained, bytes) = bytes.split_at(2 * q.chained[block]);
        let (chained_weights, byte_weights) = byte_weights.split_at(chained.len() * 4 * COLUMNS);
        for row in (0..m).step_by(ROWS) {
            let rows: [*const u8; ROWS] =
                std::array::from_fn(|r| input[(row + r) * k..(row + r + 1) * k].as_ptr());
            let mut acc = [[_mm256_setzero_si256(); 2]; ROWS];
            for (pair, w) in chained
                .chunks_exact(2)
                .zip(chained_weights.chunks_exact(128))
            {
                // SAFETY: `w` holds 128 bytes: both groups' 64.
                let (first, second) =
                    unsafe { (load_pair(w.as_ptr()), load_pair(w.as_ptr().add(64))) };
                for (acc, row) in acc.iter_mut().zip(rows) {
                    // SAFETY: as below.
                    let (a, b) = unsafe { (broadcast(row, pair[0]), broadcast(row, pair[1])) };
                    for v in 0..2 {
                        // The two groups' pairs added as int16: their
                        // weights together keep each within ±255 × 128.
                        let pairs = _mm256_add_epi16(
                            _mm256_maddubs_epi16(a, first[v]),
                            _mm256_maddubs_epi16(b, second[v]),
                        );
                        acc[v] = _mm256_add_epi32(acc[v], _mm256_madd_epi16(pairs, ones));
                    }
                }
            }
            for (&group, w) in bytes.iter().zip(byte_weights.chunks_exact(64)) {
                // SAFETY: `w` holds 64 bytes.
                let w = unsafe { load_pair(w.as_ptr()) };
                for (acc, row) in acc.iter_mut().zip(rows) {
                    // SAFETY: the schedule's groups are below `k / 4`,
                    // and each row holds `k` bytes.
                    let a = unsafe { broadcast(row, group) };
                    for v in 0..2 {
                        let pairs = _mm256_maddubs_epi16(a, w[v]);
                        acc[v] = _mm256_add_epi32(acc[v], _mm256_madd_epi16(pairs, ones));
                    }
                }
            }
            for (&group, w) in words.iter().zip(word_weights.chunks_exact(128)) {
                // SAFETY: `w` holds 128 bytes: the int16 pairs of inputs 0
                // and 2, then of 1 and 3, for columns 0 to 7, then 8 to 15.
                let (even, odd) = unsafe { (load_pair(w.as_ptr()), load_pair(w.as_ptr().add(64))) };
                for (acc, row) in acc.iter_mut().zip(rows) {
                    // SAFETY: as above.
                    let a = unsafe { broadcast(row, group) };
                    // Each lane's inputs 0 and 2, and 1 and 3, as int16
                    // pairs: a mask and a shift, off the multiply pipes.
                    let (a_even, a_odd) =
                        (_mm256_and_si256(a, even_bytes), _mm256_srli_epi16::<8>(a));
                    for v in 0..2 {
                        let sums = _mm256_add_epi32(
                            _mm256_madd_epi16(a_even, even[v]),
                            _mm256_madd_epi16(a_odd, odd[v]),
                        );
                        acc[v] = _mm256_add_epi32(acc[v], sums);
                    }
                }
            }
            store_rows(q, column, row, &acc, out, lut);
        }
    }
}

/// Two vectors of 32 bytes from `at`.
///
/// # Safety
/// The CPU must have AVX2; `at` points at 64 readable bytes.
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn load_pair(at: *const i8) -> [__m256i; 2] {
    // SAFETY: the caller gives 64 bytes.
    unsafe {
        [
            _mm256_loadu_si256(at.cast()),
            _mm256_loadu_si256(at.add(32).cast()),
        ]
    }
}

/// The 4 inputs of group `group` of `row`, in every lane.
///
/// # Safety
/// The CPU must have AVX2; `row` holds at least `4 * (group + 1)` bytes.
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn broadcast(row: *const u8, group: u16) -> __m256i {
    // SAFETY: the caller keeps the 4 bytes inside the row.
    let bytes = unsafe {
        row.add(4 * usize::from(group))
            .cast::<i32>()
            .read_unaligned()
    };
    _mm256_set1_epi32(bytes)
}

/// The requantisation of 16 columns' sums: their offsets and scales,
/// loaded once for all the rows of a block.
#[derive(Clone, Copy)]
pub(super) struct Requantizer {
    offset: [__m256i; 2],
    scale: [__m256; 2],
    zero_point: __m256i,
}

impl Requantizer {
    /// For the 16 columns of `q` from `column`.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(super) fn new(q: &PackedLayer, column: usize) -> Requantizer {
        let offsets = &q.offset[column..column + COLUMNS];
        let scales = &q.scale[column..column + COLUMNS];
        // SAFETY: 16 values each, read 8 at a time.
        let (offset, scale) = unsafe {
            (
                [0, 8].map(|v| _mm256_loadu_si256(offsets.as_ptr().add(v).cast())),
                [0, 8].map(|v| _mm256_loadu_ps(scales.as_ptr().add(v))),
            )
        };
        let zero_point = _mm256_set1_epi32(i32::from(q.zero_point));
        Requantizer {
            offset,
            scale,
            zero_point,
        }
    }

    /// One row's 16 sums, plus the offsets, requantised.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(super) fn bytes(&self, sums: [__m256i; 2]) -> __m128i {
        requantize_16(sums, self.offset, self.scale, self.zero_point)
    }
}

/// Rows `row..row + R`'s 16 sums from `column` on, plus the offsets,
/// requantised, through the columns' tables if any, into `out`
/// (`[m][n]`).
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn store_rows<const R: usize>(
    q: &PackedLayer,
    column: usize,
    row: usize,
    sums: &[[__m256i; 2]; R],
    out: &mut [u8],
    lut: Option<&ColumnLut>,
) {
    let requantizer = Requantizer::new(q, column);
    for (r, sums) in sums.iter().enumerate() {
        let at = (row + r) * q.n + column;
        let out = &mut out[at..at + COLUMNS];
        let bytes = requantizer.bytes(*sums);
        match lut {
            // The 16 columns' tables (4 KB) stay in cache over the
            // rows; the lookups run in general-purpose registers,
            // beside the next rows' products.
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
            let rounded = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x);
            // `max` first: it gives its second operand, 0, for a NaN,
            // as the plain clamp and cast do.
            let q = _mm256_add_ps(rounded, zero_point);
            let q = _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(q, _mm256_setzero_ps()), top));
            let words =
                _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256::<1>(q));
            _mm_storel_epi64(out.as_mut_ptr().cast(), _mm_packus_epi16(words, words));
        }
    }
}

/// Two vectors of 8 int32 sums plus `offset`, requantised as
/// [`requantize`](super::packed::requantize) does (times `scale` in float,
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
