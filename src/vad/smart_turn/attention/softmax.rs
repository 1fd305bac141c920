//! The contrib `QLinearSoftmax` over rows of uint8 scores, as onnxruntime
//! computes it: from a table of exponentials over the 256 input bytes.

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

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx2 {
    use std::arch::x86_64::*;

    use super::QSoftmax;

    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx2")
    }

    /// [`QSoftmax::exponentials`] for a multiple of 16 scores: the row's
    /// maximum 16 bytes at a time, the table read by scalar loads, summed
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A value in [-255, 255] from `i` (a hash, not a pattern).
    fn centred(i: usize) -> i16 {
        (i.wrapping_mul(2_654_435_761) >> 7) as i16 % 256
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
