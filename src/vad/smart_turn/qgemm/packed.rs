//! A layer as the kernels read it: its shape, its weights packed in the
//! kernel's panels, and the requantisation of its sums.

/// Output rows the vector kernels compute at once.
pub(super) const ROWS: usize = 4;
/// Output columns the vector kernels compute at once (two vectors of 8).
pub(super) const COLUMNS: usize = 16;
/// The most a pair's same-signed weights may sum to for `vpmaddubsw` never
/// to saturate: 255 times it fits an int16.
pub(super) const PAIR_MASS: i32 = i16::MAX as i32 / 255;

/// The product's kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) enum Kernel {
    /// Plain Rust.
    Scalar,
    /// AVX2: each group on bytes (`vpmaddubsw`) or on int16 (`vpmaddwd`).
    Avx2,
    /// AVX-512 VNNI: `vpdpbusd` on 256-bit vectors.
    Vnni,
}

/// What the kernels read of a linear map from `k` uint8 inputs to `n`
/// uint8 outputs.
#[derive(Debug, Clone)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) struct PackedLayer {
    pub(super) k: usize,
    pub(super) n: usize,
    /// The kernel that runs the map, whose layout `panels` holds.
    pub(super) kernel: Kernel,
    /// The weights in the kernel's panels: for each block of 16 columns,
    /// for each group of 4 inputs in `schedule`'s order, the 4 bytes of
    /// column 0, then column 1, and so on; for the AVX2 kernel a group it
    /// multiplies on int16 has its weights as int16 pairs instead, twice
    /// the bytes (`QLinear::with_kernel` gives their order; empty for the
    /// plain kernel, or when `n` or `k` do not fit).
    pub(super) panels: Vec<i8>,
    /// The AVX2 kernel's order of each block's groups (`k / 4`): those it
    /// multiplies on bytes (chained pairs first), then those on int16
    /// (`schedule`).
    pub(super) schedule: Vec<u16>,
    /// How many groups of each block the AVX2 kernel multiplies on bytes.
    pub(super) byte_groups: Vec<usize>,
    /// How many pairs of those it chains (`schedule` has the pairs first).
    pub(super) chained: Vec<usize>,
    /// Added to each column's int32 sum: the bias (if any) minus the input
    /// zero point times the column's weight sum.
    pub(super) offset: Vec<i32>,
    /// `input_scale * weight_scale[n] / output_scale`, as onnxruntime
    /// computes it.
    pub(super) scale: Vec<f32>,
    pub(super) zero_point: u8,
}

/// `Σ a·w`, exactly.
pub(super) fn dot(a: &[u8], w: &[i8]) -> i32 {
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
