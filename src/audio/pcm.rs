//! 16-bit PCM helpers: format conversion, channel mixdown, level and gain.
//!
//! voxpipe carries audio as signed 16-bit samples (`i16`), mono unless a
//! function says otherwise. The float convention is the usual one:
//! `f32 = i16 / 32768`, so `-32768` maps to exactly `-1.0` and `32767` to just
//! under `1.0`; converting back scales by 32768, rounds to nearest and
//! saturates.
//!
//! Functions that take `&mut Vec<_>` as output **append** to it and never
//! clear it; reuse one `Vec` (with `clear()` between calls) to stay
//! allocation-free on a hot path.

use bytes::Bytes;

/// Scale between `i16` samples and `f32` samples in `-1.0..1.0`.
const SCALE: f32 = 32768.0;

/// The level [`dbfs`] reports for digital silence (and anything quieter).
pub const DBFS_FLOOR: f32 = -100.0;

/// Converts one float sample to `i16`: scaled by 32768, rounded to nearest,
/// saturated to the `i16` range; NaN becomes 0.
#[inline]
pub fn f32_sample_to_i16(x: f32) -> i16 {
    // `as` saturates and maps NaN to 0.
    (x * SCALE).round() as i16
}

/// Appends `input` converted to floats in `-1.0..1.0` (`x / 32768`) to `out`.
pub fn i16_to_f32(input: &[i16], out: &mut Vec<f32>) {
    out.extend(input.iter().map(|&s| f32::from(s) / SCALE));
}

/// Appends `input` converted to `i16` (`x * 32768`, rounded, saturating;
/// NaN becomes 0) to `out`.
pub fn f32_to_i16(input: &[f32], out: &mut Vec<i16>) {
    out.extend(input.iter().map(|&x| f32_sample_to_i16(x)));
}

/// Averages interleaved multi-channel audio down to mono.
///
/// Each output sample is the mean of one frame's channels, rounded to
/// nearest (so a mixdown never clips). `channels == 1` returns a copy;
/// `channels == 0` returns an empty vector; a trailing partial frame is
/// dropped.
pub fn mixdown_to_mono(interleaved: &[i16], channels: u16) -> Vec<i16> {
    match channels {
        0 => Vec::new(),
        1 => interleaved.to_vec(),
        2 => interleaved
            .chunks_exact(2)
            .map(|f| round_div(i32::from(f[0]) + i32::from(f[1]), 2))
            .collect(),
        n => {
            let n = usize::from(n);
            interleaved
                .chunks_exact(n)
                .map(|f| round_div(f.iter().map(|&s| i32::from(s)).sum(), n as i32))
                .collect()
        }
    }
}

/// `sum / n` rounded to nearest, halves away from zero. `n > 0`, and the
/// mean of `i16` values always fits an `i16`.
#[inline]
fn round_div(sum: i32, n: i32) -> i16 {
    let half = n / 2;
    let q = if sum >= 0 {
        (sum + half) / n
    } else {
        (sum - half) / n
    };
    q as i16
}

/// Root-mean-square level, normalised so that a full-scale square wave is
/// `1.0` (a full-scale sine is about `0.707`). Empty input is `0.0`.
pub fn rms(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    // Exact in i64: each square is at most 2^30, so overflow would take more
    // than 2^33 samples (16 GiB of audio).
    let sum_sq: i64 = samples.iter().map(|&s| i64::from(s) * i64::from(s)).sum();
    let mean = sum_sq as f64 / samples.len() as f64;
    (mean.sqrt() / f64::from(SCALE)) as f32
}

/// RMS level in dB relative to full scale (`20 * log10(rms)`), so a
/// full-scale square wave is 0 dBFS and a full-scale sine about -3 dBFS.
///
/// Silence (and empty input) reads [`DBFS_FLOOR`], `-100.0`, never `-inf`:
/// the value stays finite for comparisons, averages and JSON.
pub fn dbfs(samples: &[i16]) -> f32 {
    let level = rms(samples);
    if level <= 0.0 {
        return DBFS_FLOOR;
    }
    (20.0 * level.log10()).max(DBFS_FLOOR)
}

/// Decodes 16-bit little-endian PCM bytes into samples. A trailing odd
/// byte (half a sample) is ignored.
pub fn samples_from_le_bytes(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Appends interleaved 16-bit little-endian PCM bytes, mixed down to mono
/// as [`mixdown_to_mono`] does, to `out`: an audio frame's samples for a
/// mono consumer in one pass, with no buffer in between. A trailing partial
/// frame (or odd byte) is dropped; `channels == 0` appends nothing.
pub fn le_bytes_to_mono(bytes: &[u8], channels: u16, out: &mut Vec<i16>) {
    let sample = |b: &[u8]| i16::from_le_bytes([b[0], b[1]]);
    match channels {
        0 => {}
        1 => out.extend(bytes.chunks_exact(2).map(sample)),
        n => {
            let n = usize::from(n);
            out.extend(bytes.chunks_exact(2 * n).map(|frame| {
                let sum = frame.chunks_exact(2).map(|b| i32::from(sample(b))).sum();
                round_div(sum, n as i32)
            }));
        }
    }
}

/// Encodes samples as 16-bit little-endian PCM bytes.
pub fn samples_to_le_bytes(samples: &[i16]) -> Bytes {
    // Written in place rather than pushed sample by sample (`put_i16_le`
    // checks the room and copies two bytes per call: 4% of a Twilio
    // server's CPU); this loop compiles to a copy.
    let mut buf = vec![0u8; samples.len() * 2];
    for (bytes, s) in buf.as_chunks_mut::<2>().0.iter_mut().zip(samples) {
        *bytes = s.to_le_bytes();
    }
    Bytes::from(buf)
}

/// Multiplies `samples` in place by `db` decibels of gain
/// (`10^(db/20)`), rounding to nearest and saturating at the `i16` range.
///
/// `0.0` leaves the samples untouched; `-inf` gives silence; NaN is treated
/// as no change.
pub fn apply_gain_db(samples: &mut [i16], db: f32) {
    if db == 0.0 || db.is_nan() {
        return;
    }
    let factor = 10f32.powf(db / 20.0);
    for s in samples.iter_mut() {
        // `as` saturates; `0 * inf` is NaN, which `as` maps to 0.
        *s = (f32::from(*s) * factor).round() as i16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_conversion_round_trips_every_sample() {
        let all: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        let mut f = Vec::new();
        i16_to_f32(&all, &mut f);
        assert_eq!(f[0], -1.0);
        let mut back = Vec::new();
        f32_to_i16(&f, &mut back);
        assert_eq!(back, all);
    }

    #[test]
    fn float_to_i16_saturates_rounds_and_maps_nan_to_zero() {
        let mut out = vec![7];
        f32_to_i16(
            &[2.0, -2.0, f32::NAN, 0.5 / 32768.0, -1.0, f32::INFINITY],
            &mut out,
        );
        assert_eq!(out, vec![7, 32767, -32768, 0, 1, -32768, 32767]);
    }

    #[test]
    fn mixdown_averages_with_rounding() {
        assert_eq!(
            mixdown_to_mono(&[100, 200, -1, -2, 32767, 32767], 2),
            vec![150, -2, 32767]
        );
        assert_eq!(mixdown_to_mono(&[3, 3, 4, 9], 3), vec![3]); // partial frame dropped
        assert_eq!(mixdown_to_mono(&[1, 2, 3], 1), vec![1, 2, 3]);
        assert_eq!(mixdown_to_mono(&[1, 2, 3], 0), Vec::<i16>::new());
        assert_eq!(mixdown_to_mono(&[-32768; 6], 6), vec![-32768]);
    }

    #[test]
    fn rms_and_dbfs_levels() {
        assert_eq!(rms(&[]), 0.0);
        assert_eq!(rms(&[0; 10]), 0.0);
        assert!((rms(&[-32768, -32768]) - 1.0).abs() < 1e-6);
        assert_eq!(dbfs(&[0; 10]), DBFS_FLOOR);
        assert_eq!(dbfs(&[]), DBFS_FLOOR);
        assert!(dbfs(&[-32768; 4]).abs() < 1e-4);
        let sine: Vec<i16> = (0..8000)
            .map(|i| (32767.0 * (i as f32 * 0.05).sin()) as i16)
            .collect();
        assert!((dbfs(&sine) + 3.01).abs() < 0.05, "{}", dbfs(&sine));
        // One LSB of noise is far above the floor.
        assert!(dbfs(&[1, -1]) > -91.0 && dbfs(&[1, -1]) < -90.0);
    }

    #[test]
    fn le_bytes_round_trip() {
        let s = [0i16, 1, -1, 32767, -32768, 0x1234];
        let b = samples_to_le_bytes(&s);
        assert_eq!(&b[..4], &[0, 0, 1, 0]);
        assert_eq!(&b[10..], &[0x34, 0x12]);
        assert_eq!(samples_from_le_bytes(&b), s);
        assert_eq!(samples_from_le_bytes(&[1, 0, 9]), vec![1]);
    }

    #[test]
    fn le_bytes_to_mono_decodes_and_mixes_down_like_the_two_steps() {
        let interleaved = [100i16, 200, -1, -2, 32767, 32767, -32768, -32768, 5];
        let bytes = samples_to_le_bytes(&interleaved);
        for channels in 0..=4 {
            let mut out = vec![7];
            le_bytes_to_mono(&bytes, channels, &mut out);
            let mut expected = vec![7];
            expected.extend(mixdown_to_mono(&samples_from_le_bytes(&bytes), channels));
            assert_eq!(out, expected, "{channels} channels");
        }
        // An odd byte and a partial frame are dropped.
        let mut out = Vec::new();
        le_bytes_to_mono(&[1, 0, 3, 0, 9], 1, &mut out);
        le_bytes_to_mono(&[1, 0, 3, 0, 9], 2, &mut out);
        assert_eq!(out, [1, 3, 2]);
    }

    #[test]
    fn gain_saturates_and_rounds() {
        let mut s = [1000, -1000, 20000, -20000, 0];
        apply_gain_db(&mut s, 20.0 * 2f32.log10());
        assert_eq!(s, [2000, -2000, 32767, -32768, 0]);
        let mut s = [1000, -999];
        apply_gain_db(&mut s, -6.0206);
        assert_eq!(s, [500, -500]);
        let mut s = [1234];
        apply_gain_db(&mut s, 0.0);
        apply_gain_db(&mut s, f32::NAN);
        assert_eq!(s, [1234]);
        apply_gain_db(&mut s, f32::NEG_INFINITY);
        assert_eq!(s, [0]);
    }
}
