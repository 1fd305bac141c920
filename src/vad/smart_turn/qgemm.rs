//! The int8 matrix product of the encoder's linear layers and
//! convolutions: uint8 activations times int8 weights, summed **exactly**
//! in int32, and requantised in float with round-half-even, as the model's
//! `QLinearConv`, `QLinearMatMul` and `QGemm` define it.
//!
//! Exactly, because onnxruntime's answer depends on the CPU. Its AVX2 kernel
//! (MLAS U8S8, `vpmaddubsw`) sums each pair of neighbouring products into
//! an int16 **with saturation**, so with this model's full-range weights
//! (±127) and activations around their zero point (about 130) a pair's sum
//! is clipped now and then; with AVX-512 VNNI (`vpdpbusd`, Intel servers
//! since 2019 and AMD Zen 4) the sums are exact. The two disagree on the
//! decision for 13 of the 80 reference clips, and the exact sums are right
//! more often (53 of 80 against 40: `docs/architecture.md`), so voxpipe
//! computes them on every CPU.
//!
//! [`QLinear::run`] computes `out[m][n] = requant(dot(a[m], w[n]) +
//! offset[n])` with the fastest kernel the CPU has (detected at load):
//!
//! - **VNNI** (AVX-512 VNNI with VL): `vpdpbusd`, four products a lane
//!   summed into int32 in one instruction;
//! - **AVX2**: `vpmaddubsw` then `vpmaddwd`, where a group of 4 inputs'
//!   weights for the 16 columns cannot saturate a pair (in every lane, the
//!   positive weights of a pair sum to at most 128, and the negative ones:
//!   255 × 128 fits an int16), and otherwise twice, over the weights split
//!   into two halves of at most 64 each, which cannot (about 7 groups in
//!   10 need one pass on this model);
//! - plain Rust otherwise.

use std::ops::Range;

use super::lut::ColumnLut;

/// Output rows the vector kernels compute at once.
const ROWS: usize = 4;
/// Output columns the vector kernels compute at once (two vectors of 8).
const COLUMNS: usize = 16;
/// The most a pair's same-signed weights may sum to for `vpmaddubsw` never
/// to saturate: 255 times it fits an int16.
const PAIR_MASS: i32 = i16::MAX as i32 / 255;

/// The product's kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) enum Kernel {
    /// Plain Rust.
    Scalar,
    /// AVX2, each group in one or two passes of `vpmaddubsw`.
    Avx2,
    /// AVX-512 VNNI: `vpdpbusd` on 256-bit vectors.
    Vnni,
}

impl Kernel {
    /// The fastest this CPU runs.
    pub(crate) fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if vnni::available() {
                return Kernel::Vnni;
            }
            if avx2::available() {
                return Kernel::Avx2;
            }
        }
        Kernel::Scalar
    }
}

/// A linear map from `k` uint8 inputs to `n` uint8 outputs.
#[derive(Debug, Clone)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct QLinear {
    pub(crate) k: usize,
    pub(crate) n: usize,
    /// The weights, `[n][k]`.
    weights: Vec<i8>,
    kernel: Kernel,
    /// The weights in the kernel's panels: for each block of 16 columns,
    /// for each group of 4 inputs in `schedule`'s order, the 4 bytes of
    /// column 0, then column 1, and so on; for the AVX2 kernel a group
    /// that needs two passes has two such sets, each weight's two halves
    /// (empty for the plain kernel, or when `n` or `k` do not fit).
    panels: Vec<i8>,
    /// The AVX2 kernel's order of each block's groups (`k / 4`): those it
    /// takes in one pass, then those in two.
    schedule: Vec<u16>,
    /// How many groups of each block the AVX2 kernel takes in one pass.
    one_pass: Vec<usize>,
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
    /// `input_scale * weight_scale[n]`; run with the fastest kernel this
    /// CPU has.
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
        let plain = QLinear {
            k,
            n,
            kernel: Kernel::Scalar,
            panels: Vec::new(),
            schedule: Vec::new(),
            one_pass: Vec::new(),
            weights,
            offset,
            scale,
            zero_point: output.1,
        };
        plain.with_kernel(Kernel::detect())
    }

    /// The same map run by `kernel` (which the CPU must have), or by the
    /// plain one where the shape does not fit the vector kernels: the
    /// weights packed as that kernel reads them.
    pub(crate) fn with_kernel(mut self, kernel: Kernel) -> QLinear {
        let (k, n) = (self.k, self.n);
        let fits =
            n.is_multiple_of(COLUMNS) && k.is_multiple_of(4) && k / 4 <= usize::from(u16::MAX);
        self.kernel = if fits { kernel } else { Kernel::Scalar };
        let (mut panels, mut schedule, mut one_pass) = (Vec::new(), Vec::new(), Vec::new());
        let weights = &self.weights;
        let mut pack = |group: usize, columns: Range<usize>, split: Option<bool>| {
            for c in columns {
                for &w in &weights[c * k + 4 * group..][..4] {
                    // Two halves of at most 64 each: `w / 2` rounds toward
                    // zero, so -128 is -64 and -64, 127 is 63 and 64.
                    panels.push(match split {
                        None => w,
                        Some(false) => w / 2,
                        Some(true) => w - w / 2,
                    });
                }
            }
        };
        match self.kernel {
            Kernel::Scalar => {}
            Kernel::Vnni => {
                for block in (0..n).step_by(COLUMNS) {
                    for group in 0..k / 4 {
                        pack(group, block..block + COLUMNS, None);
                    }
                }
            }
            Kernel::Avx2 => {
                for block in (0..n).step_by(COLUMNS) {
                    let (order, single) = two_pass_order(weights, k, block..block + COLUMNS);
                    for (at, &group) in order.iter().enumerate() {
                        let group = usize::from(group);
                        if at < single {
                            pack(group, block..block + COLUMNS, None);
                        } else {
                            pack(group, block..block + COLUMNS, Some(false));
                            pack(group, block..block + COLUMNS, Some(true));
                        }
                    }
                    schedule.extend(order);
                    one_pass.push(single);
                }
            }
        }
        self.panels = panels;
        self.schedule = schedule;
        self.one_pass = one_pass;
        self
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
        let whole = m / ROWS * ROWS;
        #[cfg(target_arch = "x86_64")]
        if whole > 0 && self.kernel != Kernel::Scalar {
            let (vector, rest) = out.split_at_mut(whole * self.n);
            let vector_input = &input[..whole * self.k];
            match self.kernel {
                Kernel::Vnni => vnni::run(self, vector_input, vector, lut),
                _ => avx2::run(self, vector_input, vector, lut),
            }
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
                let sum = dot(row, &self.weights[c * self.k..(c + 1) * self.k]);
                *out = requantize(sum + self.offset[c], self.scale[c], self.zero_point);
            }
        }
    }
}

/// The order in which the AVX2 kernel takes the groups of 4 inputs for
/// the `columns` of `weights` (`[n][k]`), and how many of them lead it that
/// need one pass: those whose weights cannot saturate a pair in any of
/// `vpmaddubsw`'s lanes (see the [module docs](self)).
fn two_pass_order(weights: &[i8], k: usize, columns: Range<usize>) -> (Vec<u16>, usize) {
    let one_pass = |group: usize| {
        columns.clone().all(|c| {
            weights[c * k + 4 * group..][..4]
                .chunks_exact(2)
                .all(|pair| {
                    let (mut positive, mut negative) = (0, 0);
                    for w in pair {
                        let w = i32::from(*w);
                        if w > 0 {
                            positive += w;
                        } else {
                            negative -= w;
                        }
                    }
                    positive <= PAIR_MASS && negative <= PAIR_MASS
                })
        })
    };
    let (single, double): (Vec<usize>, Vec<usize>) = (0..k / 4).partition(|g| one_pass(*g));
    let count = single.len();
    // `k / 4` fits a u16: `QLinear::with_kernel` checked.
    let order = single.into_iter().chain(double).map(|g| g as u16).collect();
    (order, count)
}

/// `Σ a·w`, exactly.
pub(crate) fn dot(a: &[u8], w: &[i8]) -> i32 {
    a.iter()
        .zip(w)
        .map(|(a, w)| i32::from(*a) * i32::from(*w))
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
        let groups = q.k / 4;
        let blocks = q.n / COLUMNS;
        let two_pass: usize = q.one_pass.iter().map(|single| groups - single).sum();
        assert!(available() && input.len().is_multiple_of(q.k));
        assert!(out.len() == input.len() / q.k * q.n);
        assert!(q.schedule.len() == blocks * groups && q.one_pass.len() == blocks);
        assert!(q.panels.len() == (blocks * groups + two_pass) * 4 * COLUMNS);
        // `broadcast` reads a row's bytes at `4 * group` unchecked.
        assert!(q.schedule.iter().all(|g| usize::from(*g) < groups));
        // SAFETY: the CPU has AVX2 and the shapes are as `kernel` needs.
        unsafe { kernel(q, input, out, lut) }
    }

    /// The product for whole blocks of 4 rows, 16 columns at a time (their
    /// weights, a few KB, stay in cache over the rows): the groups that
    /// need one pass, then those that need two.
    ///
    /// # Safety
    /// The CPU must have AVX2; `input` is `[m][k]` and `out` `[m][n]` with
    /// `m` a multiple of 4; `q.panels`, `q.schedule` and `q.one_pass` are
    /// filled for the AVX2 kernel.
    #[target_feature(enable = "avx2")]
    unsafe fn kernel(q: &QLinear, input: &[u8], out: &mut [u8], lut: Option<&ColumnLut>) {
        let (k, n) = (q.k, q.n);
        let (m, groups) = (input.len() / k, k / 4);
        let ones = _mm256_set1_epi16(1);
        let mut panel_at = 0;
        for block in 0..n / COLUMNS {
            let column = block * COLUMNS;
            let order = &q.schedule[block * groups..(block + 1) * groups];
            let (single, double) = order.split_at(q.one_pass[block]);
            let size = (single.len() + 2 * double.len()) * 4 * COLUMNS;
            let panel = &q.panels[panel_at..panel_at + size];
            panel_at += size;
            let (single_weights, double_weights) = panel.split_at(single.len() * 4 * COLUMNS);
            for row in (0..m).step_by(ROWS) {
                let rows: [*const u8; ROWS] =
                    std::array::from_fn(|r| input[(row + r) * k..(row + r + 1) * k].as_ptr());
                let mut acc = [[_mm256_setzero_si256(); 2]; ROWS];
                for (&group, w) in single.iter().zip(single_weights.chunks_exact(64)) {
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
                for (&group, w) in double.iter().zip(double_weights.chunks_exact(128)) {
                    // SAFETY: `w` holds 128 bytes: both halves' vectors.
                    let (low, high) =
                        unsafe { (load_pair(w.as_ptr()), load_pair(w.as_ptr().add(64))) };
                    for (acc, row) in acc.iter_mut().zip(rows) {
                        // SAFETY: as above.
                        let a = unsafe { broadcast(row, group) };
                        for v in 0..2 {
                            let low = _mm256_madd_epi16(_mm256_maddubs_epi16(a, low[v]), ones);
                            let high = _mm256_madd_epi16(_mm256_maddubs_epi16(a, high[v]), ones);
                            acc[v] = _mm256_add_epi32(acc[v], _mm256_add_epi32(low, high));
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
        pub(super) fn new(q: &QLinear, column: usize) -> Requantizer {
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
        q: &QLinear,
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

/// The kernel for CPUs with AVX-512 VNNI: `vpdpbusd` sums four uint8 ×
/// int8 products a lane into int32, exactly, in one instruction.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
pub(crate) mod vnni {
    use std::arch::x86_64::*;

    use crate::vad::smart_turn::lut::ColumnLut;
    use crate::vad::smart_turn::qgemm::avx2::{Requantizer, broadcast, load_pair, store_rows};
    use crate::vad::smart_turn::qgemm::{COLUMNS, Kernel, QLinear, ROWS};

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
    pub(super) fn run(q: &QLinear, input: &[u8], out: &mut [u8], lut: Option<&ColumnLut>) {
        assert!(available() && input.len().is_multiple_of(q.k));
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
    unsafe fn kernel(q: &QLinear, input: &[u8], out: &mut [u8], lut: Option<&ColumnLut>) {
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
        q: &QLinear,
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
        let mut acc = [[_mm256_setzero_si256(); 2]; R];
        for (group, w) in panel.chunks_exact(64).enumerate() {
            // SAFETY: `w` holds 64 bytes.
            let w = unsafe { load_pair(w.as_ptr()) };
            for (acc, row) in acc.iter_mut().zip(rows) {
                // SAFETY: `group < k / 4` and each row holds `k` bytes.
                let a = unsafe { broadcast(row, group as u16) };
                for v in 0..2 {
                    acc[v] = _mm256_dpbusd_epi32(acc[v], a, w[v]);
                }
            }
            countdown -= 1;
            if countdown == 0 {
                countdown = spacing;
                if let Some(deferred) = deferred.as_deref_mut() {
                    deferred.map_next(out);
                }
            }
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer run by `kernel`, with weights and inputs from `seed`: every
    /// fourth column's weights full range, the others a sixth of it, so
    /// that both of the AVX2 kernel's passes are taken; inputs at 0 and
    /// 255 as well as between.
    fn layer_with(kernel: Kernel, k: usize, n: usize, seed: u32) -> (QLinear, Vec<u8>) {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 16) as u8
        };
        let weights: Vec<i8> = (0..k * n)
            .map(|i| {
                let w = next() as i8;
                if (i / k) % 4 == 3 { w } else { w / 6 }
            })
            .collect();
        let scales: Vec<f32> = (0..n).map(|c| 0.001 + c as f32 * 1e-5).collect();
        let bias: Vec<i32> = (0..n).map(|c| c as i32 * 37 - 500).collect();
        let input: Vec<u8> = (0..9 * k)
            .map(|i| match i % 7 {
                0 => 255,
                1 => 0,
                _ => next(),
            })
            .collect();
        let q = QLinear::new(k, n, weights, &scales, Some(&bias), (0.05, 131), (0.9, 120))
            .with_kernel(kernel);
        (q, input)
    }

    fn layer(k: usize, n: usize, seed: u32) -> (QLinear, Vec<u8>) {
        layer_with(Kernel::detect(), k, n, seed)
    }

    /// The vector kernels this CPU runs.
    fn vector_kernels() -> Vec<Kernel> {
        let mut kernels = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if avx2::available() {
                kernels.push(Kernel::Avx2);
            }
            if vnni::available() {
                kernels.push(Kernel::Vnni);
            }
        }
        kernels
    }

    #[test]
    fn sums_are_exact_where_vpmaddubsw_would_saturate() {
        // 255 * 127 * 2 = 64,770 a pair, which onnxruntime's AVX2 kernel
        // clips to 32,767.
        assert_eq!(dot(&[255, 255, 255, 255], &[127, 127, 127, 127]), 129_540);
        assert_eq!(dot(&[255, 255], &[-128, -128]), -65_280);
        assert_eq!(dot(&[1, 2, 3], &[4, 5, 6]), 32);
    }

    #[test]
    fn the_extremes_sum_exactly_in_every_kernel() {
        // Inputs all 255 against weights all -128, then all 127: every pair
        // at its largest, twice what `vpmaddubsw` can hold.
        let (k, n) = (64, 16);
        for weight in [-128_i8, 127] {
            let weights = vec![weight; k * n];
            let want: Vec<i32> = weights
                .chunks_exact(k)
                .map(|w| dot(&[255; 64], w))
                .collect();
            assert!(
                want.iter().any(|s| s.abs() > 32_767 * (k as i32 / 2)),
                "{want:?}"
            );
            for kernel in vector_kernels().into_iter().chain([Kernel::Scalar]) {
                // A scale that keeps each sum's bits: out = sum / 2^16 + 128.
                let q = QLinear::new(
                    k,
                    n,
                    weights.clone(),
                    &[1.0 / 65_536.0; 16],
                    None,
                    (1.0, 0),
                    (1.0, 128),
                )
                .with_kernel(kernel);
                let mut out = vec![0; 4 * n];
                q.run(&[255; 4 * 64], &mut out);
                let expected: Vec<u8> = want
                    .iter()
                    .map(|s| requantize(*s, 1.0 / 65_536.0, 128))
                    .collect();
                for row in out.chunks_exact(n) {
                    assert_eq!(row, expected, "{kernel:?}");
                }
            }
        }
    }

    #[test]
    fn groups_take_two_passes_only_where_a_pair_could_saturate() {
        // One column (of 16) with 2 groups: group 0's first pair weighs 64
        // + 64 (one pass), group 1's 64 + 65 (two).
        let mut w = vec![0_i8; 16 * 8];
        w[..8].copy_from_slice(&[64, 64, 0, 0, 64, 65, 0, 0]);
        assert_eq!(two_pass_order(&w, 8, 0..16), (vec![0, 1], 1));
        // Negative weights count apart from positive ones.
        w[..8].copy_from_slice(&[-128, 127, 0, 0, -64, -65, 0, 0]);
        assert_eq!(two_pass_order(&w, 8, 0..16), (vec![0, 1], 1));
        w[..8].copy_from_slice(&[-65, -64, 0, 0, 0, 0, 1, 1]);
        assert_eq!(two_pass_order(&w, 8, 0..16), (vec![1, 0], 1));
    }

    #[test]
    fn requantization_rounds_half_to_even_and_clamps() {
        assert_eq!(requantize(5, 0.5, 10), 12); // 2.5 -> 2
        assert_eq!(requantize(7, 0.5, 10), 14); // 3.5 -> 4
        assert_eq!(requantize(-1000, 1.0, 10), 0);
        assert_eq!(requantize(1000, 1.0, 10), 255);
    }

    #[test]
    fn the_vector_kernels_match_the_scalar_arithmetic() {
        for kernel in vector_kernels() {
            for (k, n) in [(384, 32), (240, 16), (8, 48)] {
                let (q, input) = layer_with(kernel, k, n, k as u32);
                assert_eq!(q.kernel, kernel);
                if kernel == Kernel::Avx2 && k == 384 {
                    // Both passes are exercised.
                    assert!(q.one_pass.iter().all(|one| *one > 0 && *one < k / 4));
                }
                let mut fast = vec![0; 9 * n];
                let mut plain = vec![0; 9 * n];
                q.run(&input, &mut fast);
                q.run_scalar(&input, &mut plain);
                assert_eq!(fast, plain, "{kernel:?}, k {k}, n {n}");
                assert!(plain.iter().any(|v| *v != plain[0]), "a degenerate test");
                // With a table per column, applied in the kernel.
                let lut = ColumnLut::new(n, |c, v| v.wrapping_mul(3).wrapping_add(c as u8));
                q.run_mapped(&input, &mut fast, &lut);
                lut.apply(&mut plain);
                assert_eq!(fast, plain, "{kernel:?}, k {k}, n {n}, mapped");
            }
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
