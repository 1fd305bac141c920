//! [`QLinear`], an int8 linear layer: packing its weights for the kernel
//! this CPU runs, and the plain loop.

use std::ops::Range;

use super::packed::{COLUMNS, Kernel, PackedLayer, ROWS, dot, requantize};
use super::schedule;
#[cfg(target_arch = "x86_64")]
use super::{avx2, vnni};
use crate::vad::smart_turn::lut::ColumnLut;

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
pub(crate) struct QLinear {
    /// The weights, `[n][k]`.
    weights: Vec<i8>,
    /// The shape, the kernel, the weights in its panels and the
    /// requantisation: what the kernels read.
    packed: PackedLayer,
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
            weights,
            packed: PackedLayer {
                k,
                n,
                kernel: Kernel::Scalar,
                panels: Vec::new(),
                schedule: Vec::new(),
                byte_groups: Vec::new(),
                chained: Vec::new(),
                offset,
                scale,
                zero_point: output.1,
            },
        };
        plain.with_kernel(Kernel::detect())
    }

    /// The same map run by `kernel` (which the CPU must have), or by the
    /// plain one where the shape does not fit the vector kernels: the
    /// weights packed as that kernel reads them.
    pub(crate) fn with_kernel(mut self, kernel: Kernel) -> QLinear {
        let (k, n) = (self.packed.k, self.packed.n);
        let fits =
            n.is_multiple_of(COLUMNS) && k.is_multiple_of(4) && k / 4 <= usize::from(u16::MAX);
        self.packed.kernel = if fits { kernel } else { Kernel::Scalar };
        let (mut panels, mut order, mut byte_groups, mut chained) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let weights = &self.weights;
        let group_of = |c: usize, group: usize| &weights[c * k + 4 * group..][..4];
        // A group's 4 bytes for each of the columns, in turn.
        let pack = |panels: &mut Vec<i8>, group: usize, columns: Range<usize>| {
            for c in columns {
                panels.extend_from_slice(group_of(c, group));
            }
        };
        // A group as int16 pairs, for `vpmaddwd`: for inputs 0 and 2, then
        // for inputs 1 and 3, the pairs of columns 0 to 7, then 8 to 15
        // (the order of the kernel's even and odd input vectors).
        let pack_words = |panels: &mut Vec<i8>, group: usize, block: usize| {
            for first in [0, 1] {
                for half in [block, block + COLUMNS / 2] {
                    for c in half..half + COLUMNS / 2 {
                        let w = group_of(c, group);
                        for word in [w[first], w[first + 2]] {
                            let bytes = i16::from(word).to_le_bytes();
                            panels.extend(bytes.map(|b| b as i8));
                        }
                    }
                }
            }
        };
        match self.packed.kernel {
            Kernel::Scalar => {}
            Kernel::Vnni => {
                for block in (0..n).step_by(COLUMNS) {
                    for group in 0..k / 4 {
                        pack(&mut panels, group, block..block + COLUMNS);
                    }
                }
            }
            Kernel::Avx2 => {
                for block in (0..n).step_by(COLUMNS) {
                    let plan = schedule::schedule(weights, k, block..block + COLUMNS);
                    for (at, &group) in plan.order.iter().enumerate() {
                        let group = usize::from(group);
                        if at < plan.bytes {
                            pack(&mut panels, group, block..block + COLUMNS);
                        } else {
                            pack_words(&mut panels, group, block);
                        }
                    }
                    order.extend(plan.order);
                    byte_groups.push(plan.bytes);
                    chained.push(plan.chained);
                }
            }
        }
        self.packed.panels = panels;
        self.packed.schedule = order;
        self.packed.byte_groups = byte_groups;
        self.packed.chained = chained;
        self
    }

    /// The number of outputs.
    pub(crate) fn n(&self) -> usize {
        self.packed.n
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
        let (k, n) = (self.packed.k, self.packed.n);
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
        let m = input.len() / self.packed.k;
        debug_assert_eq!(out.len(), m * self.packed.n);
        let whole = m / ROWS * ROWS;
        #[cfg(target_arch = "x86_64")]
        if whole > 0 && self.packed.kernel != Kernel::Scalar {
            let (vector, rest) = out.split_at_mut(whole * self.packed.n);
            let vector_input = &input[..whole * self.packed.k];
            match self.packed.kernel {
                Kernel::Vnni => vnni::run(&self.packed, vector_input, vector, lut),
                _ => avx2::run(&self.packed, vector_input, vector, lut),
            }
            self.run_scalar(&input[whole * self.packed.k..], rest);
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
        let layer = &self.packed;
        for (row, out) in input
            .chunks_exact(layer.k)
            .zip(out.chunks_exact_mut(layer.n))
        {
            for (c, out) in out.iter_mut().enumerate() {
                let sum = dot(row, &self.weights[c * layer.k..(c + 1) * layer.k]);
                *out = requantize(sum + layer.offset[c], layer.scale[c], layer.zero_point);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of the test inputs: for the VNNI kernel two blocks of 8, one
    /// of 4 (a block's table lookups carried to the next, from 8 rows to
    /// 4), and one row for the plain loop.
    const TEST_ROWS: usize = 21;

    /// A layer run by `kernel`, with weights and inputs from `seed`: every
    /// fourth column's weights full range, the others a sixth of it, so
    /// that the AVX2 kernel's groups go both on bytes and on int16; inputs
    /// at 0 and 255 as well as between.
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
        let input: Vec<u8> = (0..TEST_ROWS * k)
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
                // out = sum / 2^16 + 128: coarse, but every pair clipped
                // to 32,767 would take half of each sum, which shows (the
                // limits, to within 1: the next test).
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
    fn groups_at_the_limit_of_bytes_and_of_chaining_sum_exactly() {
        // Each case: the groups of 4 weights every column has, summing to
        // 0 against inputs of 255 so that the output (scale 1, zero point
        // 128) shows any error of 1; and, for the AVX2 kernel, how many
        // groups go on bytes and how many pairs of them are chained.
        let cases: [(&[[i8; 4]], usize, usize); 3] = [
            // A pair's positive mass 127 + 1 and negative 128: the limit
            // of a chain (255 × 128 fits an int16).
            (&[[127, 0, -128, 0], [1, 0, 0, 0]], 2, 1),
            // A single group's limit (128) on bytes; 129 on int16.
            (&[[127, 1, -128, 0], [127, 2, -128, -1]], 1, 0),
            // Negative masses 128 + 1 must not chain: the first group
            // alone, the other two chained.
            (&[[127, 1, -128, 0], [0, 0, -1, 0], [1, 0, 0, 0]], 3, 1),
        ];
        let n = 16;
        for (groups, on_bytes, chained) in cases {
            let k = 4 * groups.len();
            let weights: Vec<i8> = (0..n).flat_map(|_| groups.concat()).collect();
            for kernel in vector_kernels().into_iter().chain([Kernel::Scalar]) {
                let q = QLinear::new(
                    k,
                    n,
                    weights.clone(),
                    &[1.0; 16],
                    None,
                    (1.0, 0),
                    (1.0, 128),
                )
                .with_kernel(kernel);
                if kernel == Kernel::Avx2 {
                    assert_eq!(q.packed.byte_groups, [on_bytes], "{groups:?}");
                    assert_eq!(q.packed.chained, [chained], "{groups:?}");
                }
                let mut out = vec![0; 4 * n];
                q.run(&vec![255; 4 * k], &mut out);
                assert!(
                    out.iter().all(|v| *v == 128),
                    "{kernel:?} {groups:?}: {out:?}"
                );
            }
        }
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
                assert_eq!(q.packed.kernel, kernel);
                if kernel == Kernel::Avx2 && k == 384 {
                    // Groups on int16 and on bytes are both exercised
                    // (chained ones by the model's weights, below).
                    let mut plans = q.packed.byte_groups.iter().zip(&q.packed.chained);
                    assert!(plans.all(|(bytes, pairs)| *bytes > 2 * pairs && *bytes < k / 4));
                }
                let mut fast = vec![0; TEST_ROWS * n];
                let mut plain = vec![0; TEST_ROWS * n];
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
    fn the_models_layers_give_the_same_bytes_with_every_kernel() {
        // The shipped weights, whose groups the AVX2 kernel splits between
        // bytes and int16, against the plain sums; inputs at 0 and 255
        // often, where `vpmaddubsw` would saturate.
        let model = crate::vad::smart_turn::weights::Weights::from_onnx(
            crate::vad::smart_turn::EMBEDDED_ONNX,
        );
        let Ok(model) = model else {
            panic!("the bundled model: {model:?}");
        };
        let layer = &model.layers[0];
        for (name, q) in [
            ("conv1", &model.conv1),
            ("conv2", &model.conv2),
            ("query", &layer.query),
            ("fc1", &layer.fc1),
            ("fc2", &layer.fc2),
        ] {
            let (k, n) = (q.packed.k, q.packed.n);
            let input: Vec<u8> = (0..TEST_ROWS * k)
                .map(|i| match ((i * 2_654_435_761) >> 13) & 7 {
                    0 | 1 => 255,
                    2 => 0,
                    _ => ((i * 40_503) >> 5) as u8,
                })
                .collect();
            let mut plain = vec![0; TEST_ROWS * n];
            q.run_scalar(&input, &mut plain);
            for kernel in vector_kernels() {
                let q = q.clone().with_kernel(kernel);
                if kernel == Kernel::Avx2 {
                    let groups = k / 4;
                    assert!(q.packed.byte_groups.iter().any(|b| *b < groups), "{name}");
                    assert!(q.packed.chained.iter().any(|pairs| *pairs > 0), "{name}");
                }
                let mut fast = vec![0; TEST_ROWS * n];
                q.run(&input, &mut fast);
                assert_eq!(fast, plain, "{name}, {kernel:?}");
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
        let mut copied = vec![0; TEST_ROWS * 32];
        let mut computed = vec![0; TEST_ROWS * 32];
        q.run_repeating(&input, &mut copied, Some(&lut), 4..8);
        q.run_mapped(&input, &mut computed, &lut);
        assert_eq!(copied, computed);
        q.run_repeating(&input, &mut copied, None, 4..8);
        q.run(&input, &mut computed);
        assert_eq!(copied, computed);
    }
}
