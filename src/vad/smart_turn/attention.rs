//! Self-attention's two products and its softmax, as onnxruntime computes
//! them for this model: `QLinearMatMul` of uint8 by uint8 (exact int32
//! sums of zero-point-corrected products, no saturation: MLAS widens both
//! sides to int16) and the contrib `QLinearSoftmax` (a table of
//! exponentials over the 256 input bytes).
//!
//! The products run in f32: every operand is a small integer and every
//! partial sum stays below 2^24 (queries by keys: 64 products of at most
//! 255² each; probabilities by values: the probabilities of a row sum to
//! about 1 / 0.0039 = 258 quanta, times at most 255), so f32 arithmetic is
//! exact and the int32 results are bit-identical, at the speed of FMA.

/// `c[m][n] = Σ_k a[m][k] · b[k][n]`, exact for the integer-valued inputs
/// described above.
pub(crate) fn matmul(a: &[f32], b: &[f32], k: usize, n: usize, c: &mut [f32]) {
    let m = a.len() / k;
    #[cfg(target_arch = "x86_64")]
    if m.is_multiple_of(4) && n.is_multiple_of(16) && fma::available() {
        fma::matmul(a, b, k, n, c);
        return;
    }
    matmul_scalar(a, b, k, n, c);
}

fn matmul_scalar(a: &[f32], b: &[f32], k: usize, n: usize, c: &mut [f32]) {
    for (a, c) in a.chunks_exact(k).zip(c.chunks_exact_mut(n)) {
        c.fill(0.0);
        for (a, b) in a.iter().zip(b.chunks_exact(n)) {
            for (c, b) in c.iter_mut().zip(b) {
                *c += a * b;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod fma {
    use std::arch::x86_64::*;

    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    /// The product, if the CPU has AVX2 and FMA (the caller checked
    /// [`available`]) and `m` is a multiple of 4 and `n` of 16.
    pub(super) fn matmul(a: &[f32], b: &[f32], k: usize, n: usize, c: &mut [f32]) {
        let m = a.len() / k;
        assert!(available() && m.is_multiple_of(4) && n.is_multiple_of(16));
        assert!(a.len() == m * k && b.len() >= k * n && c.len() >= m * n);
        // SAFETY: the CPU has the features and the shapes are as `kernel`
        // needs.
        unsafe { kernel(a, b, k, n, c) }
    }

    /// Blocks of 4 rows by 16 columns in 8 accumulators.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `a` is `[m][k]`, `b` `[k][n]`, `c`
    /// `[m][n]`, `m` a multiple of 4 and `n` of 16.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn kernel(a: &[f32], b: &[f32], k: usize, n: usize, c: &mut [f32]) {
        let m = a.len() / k;
        for row in (0..m).step_by(4) {
            for column in (0..n).step_by(16) {
                let mut acc = [[_mm256_setzero_ps(); 2]; 4];
                for i in 0..k {
                    // SAFETY: in bounds by the assertion and the shapes.
                    unsafe {
                        let b0 = _mm256_loadu_ps(b.as_ptr().add(i * n + column));
                        let b1 = _mm256_loadu_ps(b.as_ptr().add(i * n + column + 8));
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let x = _mm256_broadcast_ss(&*a.as_ptr().add((row + r) * k + i));
                            acc[0] = _mm256_fmadd_ps(x, b0, acc[0]);
                            acc[1] = _mm256_fmadd_ps(x, b1, acc[1]);
                        }
                    }
                }
                for (r, acc) in acc.iter().enumerate() {
                    let at = (row + r) * n + column;
                    // SAFETY: in bounds by the assertion.
                    unsafe {
                        _mm256_storeu_ps(c.as_mut_ptr().add(at), acc[0]);
                        _mm256_storeu_ps(c.as_mut_ptr().add(at + 8), acc[1]);
                    }
                }
            }
        }
    }
}

/// `QLinearSoftmax` over rows of uint8 scores, as MLAS's AVX2 kernel.
#[derive(Debug, Clone)]
pub(crate) struct QSoftmax {
    /// `exp((i - 255 + shift) * scale)` for each byte `i`.
    table: [f32; 256],
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
            ((i as f64 - 255.0 + shift) * f64::from(input_scale)).exp() as f32
        });
        QSoftmax {
            table,
            inverse_output_scale: (1.0 / output_scale).floor(),
            zero_point: f32::from(zero_point),
        }
    }

    /// The softmax of `scores` into `out` as uint8, through `exps` (scratch
    /// of the same length).
    pub(crate) fn row(&self, scores: &[u8], exps: &mut [f32], out: &mut [u8]) {
        let max = scores.iter().copied().max().unwrap_or(255);
        let shifted = &self.table[usize::from(255 - max)..];
        // Eight lanes, each summing every eighth value in order, then the
        // lanes in order: the kernel's float rounding.
        let mut lanes = [0.0f32; 8];
        for (i, (s, e)) in scores.iter().zip(exps.iter_mut()).enumerate() {
            *e = shifted[usize::from(*s)];
            lanes[i % 8] += *e;
        }
        let total = lanes.iter().fold(0.0f32, |sum, lane| sum + lane);
        let scale = (1.0 / total) * self.inverse_output_scale;
        for (e, out) in exps.iter().zip(out.iter_mut()) {
            *out = (e * scale + self.zero_point)
                .round_ties_even()
                .clamp(0.0, 255.0) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fma_kernel_matches_the_plain_loop() {
        let (m, k, n) = (8, 64, 32);
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 37) % 255) as f32 - 127.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 91) % 255) as f32 - 128.0)
            .collect();
        let mut fast = vec![0.0; m * n];
        let mut plain = vec![0.0; m * n];
        matmul(&a, &b, k, n, &mut fast);
        matmul_scalar(&a, &b, k, n, &mut plain);
        assert_eq!(fast, plain);
        let direct: f32 = (0..k).map(|i| a[3 * k + i] * b[i * n + 5]).sum();
        assert_eq!(plain[3 * n + 5], direct);
    }

    #[test]
    fn softmax_sums_to_one_in_quanta_and_keeps_the_order() {
        let softmax = QSoftmax::new(16, 0.2, 1.0 / 256.0, 0);
        let scores: Vec<u8> = (0..16).map(|i| 100 + i * 3).collect();
        let mut exps = vec![0.0; 16];
        let mut out = vec![0; 16];
        softmax.row(&scores, &mut exps, &mut out);
        let total: u32 = out.iter().map(|v| u32::from(*v)).sum();
        assert!((250..=262).contains(&total), "{total}");
        assert!(out.windows(2).all(|w| w[0] <= w[1]), "{out:?}");
    }
}
