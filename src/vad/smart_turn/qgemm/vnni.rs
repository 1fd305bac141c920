//! The kernel for CPUs with AVX-512 VNNI: `vpdpbusd` sums four uint8 ×
//! int8 products a lane into int32, exactly, in one instruction.

use std::arch::x86_64::*;

use super::avx2::{Requantizer, broadcast, load_pair, store_rows};
use super::packed::{COLUMNS, Kernel, PackedLayer, ROWS};
use crate::vad::smart_turn::lut::ColumnLut;

/// Rows at once where there are enough: 16 accumulators (AVX-512 gives
/// 32 vector registers) hide `vpdpbusd`'s latency, where 8 do not.
const WIDE_ROWS: usize = 8;

pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
}

/// The product for whole blocks of 4 rows, if the CPU has AVX-512
/// VNNI (the caller checked [`available`]).
pub(super) fn run(q: &PackedLayer, input: &[u8], out: &mut [u8], lut: Option<&ColumnLut>) {
    assert!(available() && input.len().is_multiple_of(q.k));
    assert!((input.len() / q.k).is_multiple_of(ROWS));
    assert!(out.len() == input.len() / q.k * q.n && q.panels.len() == q.k * q.n);
    // The AVX2 layout can have the same length and another order.
    assert_eq!(q.kernel, Kernel::Vnni);
    // SAFETY: the CPU has the features and the shapes are as `kernel`
    // needs.
    unsafe { kernel(q, input, out, lut) }
}

/// # Safety
/// The CPU must have AVX2 and AVX-512 VNNI with VL; `input` is `[m][k]`
/// and `out` `[m][n]` with `m` a multiple of 4; `q.panels` is filled for
/// the VNNI kernel (each block's groups in order).
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
unsafe fn kernel(q: &PackedLayer, input: &[u8], out: &mut [u8], lut: Option<&ColumnLut>) {
    let (k, n) = (q.k, q.n);
    let m = input.len() / k;
    let wide = m / WIDE_ROWS * WIDE_ROWS;
    let mut deferred = lut.map(|lut| Deferred {
        lut,
        bytes: [[0; COLUMNS]; WIDE_ROWS],
        at: [0; WIDE_ROWS],
        column: 0,
        rows: 0,
        next: 0,
    });
    for block in 0..n / COLUMNS {
        let column = block * COLUMNS;
        let panel = &q.panels[column * k..(column + COLUMNS) * k];
        for row in (0..wide).step_by(WIDE_ROWS) {
            let block = Block { panel, column, row };
            // SAFETY: as this function's.
            unsafe { rows::<WIDE_ROWS>(q, input, out, deferred.as_mut(), block) }
        }
        for row in (wide..m).step_by(ROWS) {
            let block = Block { panel, column, row };
            // SAFETY: as this function's.
            unsafe { rows::<ROWS>(q, input, out, deferred.as_mut(), block) }
        }
    }
    if let Some(deferred) = deferred.as_mut() {
        deferred.finish(out);
    }
}

/// The 16 columns from `column`, whose weights are `panel`, for the
/// rows from `row`.
struct Block<'a> {
    panel: &'a [i8],
    column: usize,
    row: usize,
}

/// A block's requantised rows still to go through the columns' tables:
/// looked up a row at a time between the next block's products, whose
/// vector pipes leave the general-purpose ones free (done after the
/// products instead, the lookups of 8 rows are more than the core's
/// window of reordered instructions holds, and the pipes stand idle in
/// turn).
struct Deferred<'a> {
    lut: &'a ColumnLut,
    bytes: [[u8; COLUMNS]; WIDE_ROWS],
    /// Where each row goes in `out`.
    at: [usize; WIDE_ROWS],
    column: usize,
    rows: usize,
    next: usize,
}

impl Deferred<'_> {
    /// Looks up the next row still to map, if any.
    #[inline(always)]
    fn map_next(&mut self, out: &mut [u8]) {
        if self.next < self.rows {
            let r = self.next;
            let out = &mut out[self.at[r]..self.at[r] + COLUMNS];
            for (half, (bytes, out)) in self.bytes[r]
                .chunks_exact(8)
                .zip(out.chunks_exact_mut(8))
                .enumerate()
            {
                let mut word = [0; 8];
                word.copy_from_slice(bytes);
                let mapped = self
                    .lut
                    .map_word(self.column + 8 * half, u64::from_le_bytes(word));
                out.copy_from_slice(&mapped.to_le_bytes());
            }
            self.next += 1;
        }
    }

    /// Maps every row still waiting.
    fn finish(&mut self, out: &mut [u8]) {
        while self.next < self.rows {
            self.map_next(out);
        }
    }
}

/// Rows `block.row..block.row + R` of the block's 16 columns, into
/// `out`, or into `deferred` when they go through tables.
///
/// # Safety
/// As [`kernel`]'s, and `block.row + R <= m`.
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
#[inline]
unsafe fn rows<const R: usize>(
    q: &PackedLayer,
    input: &[u8],
    out: &mut [u8],
    mut deferred: Option<&mut Deferred<'_>>,
    block: Block<'_>,
) {
    const { assert!(R <= WIDE_ROWS) };
    let Block { panel, column, row } = block;
    let k = q.k;
    let rows: [*const u8; R] =
        std::array::from_fn(|r| input[(row + r) * k..(row + r + 1) * k].as_ptr());
    // The previous block's rows are mapped every `spacing` groups.
    let spacing = (k / 4 / (WIDE_ROWS + 1)).max(1);
    let mut countdown = spacing;
    // SAFETY: each row holds `k` bytes, the panel's groups are `k / 4`.
    let acc = unsafe {
        block_sums(rows, panel, || {
            countdown -= 1;
            if countdown == 0 {
                countdown = spacing;
                if let Some(deferred) = deferred.as_deref_mut() {
                    deferred.map_next(out);
                }
            }
        })
    };
    let Some(deferred) = deferred else {
        store_rows(q, column, row, &acc, out, None);
        return;
    };
    deferred.finish(out);
    let requantizer = Requantizer::new(q, column);
    for (r, acc) in acc.into_iter().enumerate() {
        let bytes = requantizer.bytes(acc);
        // SAFETY: a row holds 16 bytes.
        unsafe { _mm_storeu_si128(deferred.bytes[r].as_mut_ptr().cast(), bytes) };
        deferred.at[r] = (row + r) * q.n + column;
    }
    (deferred.column, deferred.rows, deferred.next) = (column, R, 0);
}

/// The int32 sums of 16 columns for `R` rows over `panel` (for each group
/// of 4 inputs, the 16 columns' 4 weights), calling `between` after each
/// group: scalar work the caller slips in beside the multiplies.
///
/// # Safety
/// The CPU must have AVX2 and AVX-512 VNNI with VL; each of `rows` points
/// at `panel.len() / 16` readable bytes.
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
#[inline]
pub(crate) unsafe fn block_sums<const R: usize>(
    rows: [*const u8; R],
    panel: &[i8],
    mut between: impl FnMut(),
) -> [[__m256i; 2]; R] {
    let mut acc = [[_mm256_setzero_si256(); 2]; R];
    for (group, w) in panel.chunks_exact(64).enumerate() {
        // SAFETY: `w` holds 64 bytes.
        let w = unsafe { load_pair(w.as_ptr()) };
        for (acc, row) in acc.iter_mut().zip(rows) {
            // SAFETY: `group < panel.len() / 64`, and each row holds 4
            // bytes a group.
            let a = unsafe { broadcast(row, group as u16) };
            for v in 0..2 {
                acc[v] = _mm256_dpbusd_epi32(acc[v], a, w[v]);
            }
        }
        between();
    }
    acc
}
