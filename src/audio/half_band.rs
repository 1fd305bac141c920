//! Streaming 1:2 and 2:1 sample-rate conversion (8 ↔ 16 kHz, 16 ↔ 32 kHz,
//! 24 ↔ 48 kHz) with one half-band low-pass filter, for `StreamResampler`
//! (`resample.rs`, which uses it: a link back would be an import cycle).
//!
//! A half-band filter's response is symmetric about a quarter of the high
//! rate, so every other tap is zero but the centre one (½). Doubling the
//! rate then copies each input sample and computes the sample between two
//! inputs as one dot product of the odd taps with the inputs around it;
//! halving the rate is the same dot product over the odd-numbered inputs
//! plus half the even one at the centre. There are no blocks: each input
//! sample (or pair, going down) gives its output at once.
//!
//! # Filter
//!
//! 96 odd taps (a 191-tap filter at the high rate), a Kaiser-windowed sinc
//! with β = 9, scaled for a gain of exactly 1 at DC. At 8 ↔ 16 kHz: flat
//! within 0.001 dB up to 3.75 kHz, at least 88 dB down from 4.25 kHz (the
//! unit tests check the response). The transition is that narrow because
//! the VAD's narrowband detector tells an upsampled 8 kHz call from a
//! 16 kHz microphone by the energy above 4.25 kHz (under -60 dB of the
//! whole), and mu-law's quantisation noise fills the band up to 4 kHz.
//!
//! Sixteen outputs are computed at once, one per vector lane, eight lanes
//! wide with fused multiply-adds where the CPU has AVX2 and FMA (detected
//! at run time; fused products round once, so an output sample may differ
//! by one step from the portable build's), four otherwise.
//!
//! # Delay
//!
//! The filter is centred [`TAPS`]` / 2` low-rate samples back: 96 output
//! samples going up (6 ms at 16 kHz), 47 going down (5.9 ms at 8 kHz).

/// Odd taps of the filter.
pub(super) const TAPS: usize = 96;
/// Kaiser window's β: about 89 dB of stop-band rejection.
const KAISER_BETA: f64 = 9.0;
/// Outputs computed together, one per vector lane (two AVX registers, or
/// four SSE ones).
const GROUP: usize = 16;

/// Which way the rate goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    /// Doubles the rate.
    Up,
    /// Halves the rate.
    Down,
}

/// A 1:2 or 2:1 streaming resampler; see the [module docs](self).
#[derive(Debug, Clone)]
pub(super) struct HalfBand {
    direction: Direction,
    /// The odd taps, symmetric (doubled going up, for the zeros between
    /// the inputs).
    taps: [f32; TAPS],
    /// Going up: the input. Going down: the odd-numbered inputs. The
    /// `TAPS - 1` before the new ones (zeros before the stream), then the
    /// new ones.
    odd: Vec<f32>,
    /// Going down: the even-numbered inputs, aligned with `odd`.
    even: Vec<f32>,
    /// Going down: an even-numbered input waiting for its odd partner.
    pending: Option<f32>,
    /// The filter's output for the new samples.
    filtered: Vec<f32>,
}

impl HalfBand {
    /// A filter whose buffers hold `frame` input samples a call without
    /// growing (a call's frames never allocate in the steady state).
    pub(super) fn new(direction: Direction, frame: usize) -> Self {
        let taps = design(if direction == Direction::Up { 2.0 } else { 1.0 });
        let mut filter = HalfBand {
            direction,
            taps,
            odd: Vec::with_capacity(TAPS + frame),
            even: Vec::with_capacity(TAPS + frame),
            pending: None,
            filtered: Vec::with_capacity(frame),
        };
        filter.reset();
        filter
    }

    /// Input samples waiting for the next output: a lone sample going down.
    pub(super) fn pending_samples(&self) -> usize {
        usize::from(self.pending.is_some())
    }

    /// Output samples by which the signal is late.
    pub(super) fn delay_samples(&self) -> usize {
        match self.direction {
            Direction::Up => TAPS,
            Direction::Down => TAPS / 2 - 1,
        }
    }

    /// Converts `input` and appends the output ready to `out`: two samples
    /// per input going up, one per pair going down.
    pub(super) fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        match self.direction {
            Direction::Up => self.odd.extend(input.iter().map(|&x| f32::from(x))),
            Direction::Down => {
                let mut rest = input;
                if let Some(even) = self.pending.take() {
                    let Some((&odd, later)) = rest.split_first() else {
                        self.pending = Some(even);
                        return;
                    };
                    self.even.push(even);
                    self.odd.push(f32::from(odd));
                    rest = later;
                }
                let (pairs, lone) = rest.as_chunks::<2>();
                self.even
                    .extend(pairs.iter().map(|[even, _]| f32::from(*even)));
                self.odd
                    .extend(pairs.iter().map(|[_, odd]| f32::from(*odd)));
                self.pending = lone.first().map(|&x| f32::from(x));
            }
        }
        let new = self.odd.len() - (TAPS - 1);
        if new == 0 {
            return;
        }
        // Grown, never cleared: the convolution writes every output, and
        // zeroing the buffer first was a `memset` call per frame.
        if self.filtered.len() < new {
            self.filtered.resize(new, 0.0);
        }
        let filtered = &mut self.filtered[..new];
        convolve(&self.taps, &self.odd, filtered);
        let filtered = &*filtered;
        match self.direction {
            Direction::Up => {
                // Each input as it is, then the filter's sample after it,
                // written into place rather than pushed, so the loop
                // vectorises.
                let start = out.len();
                out.resize(start + 2 * new, 0);
                let inputs = &self.odd[TAPS / 2 - 1..][..new];
                for ((pair, &input), &between) in out[start..]
                    .as_chunks_mut::<2>()
                    .0
                    .iter_mut()
                    .zip(inputs)
                    .zip(filtered)
                {
                    *pair = [to_i16(input), to_i16(between)];
                }
            }
            Direction::Down => {
                // Slices zipped have an exact length: `extend` writes in
                // place without a capacity check per sample.
                let even = &self.even[TAPS / 2..][..new];
                out.extend(
                    even.iter()
                        .zip(filtered)
                        .map(|(&even, &odd_part)| to_i16(0.5 * even + odd_part)),
                );
                self.even.drain(..new);
            }
        }
        self.odd.drain(..new);
    }

    /// Ends the stream: appends `owed` more samples (the delay line and
    /// the converted rest of the input), then resets.
    pub(super) fn flush(&mut self, owed: usize, out: &mut Vec<i16>) {
        let target = out.len() + owed;
        let zeros = match self.direction {
            Direction::Up => owed.div_ceil(2),
            Direction::Down => 2 * owed,
        };
        self.process(&vec![0; zeros], out);
        out.truncate(target);
        self.reset();
    }

    /// Forgets the stream.
    pub(super) fn reset(&mut self) {
        for buffer in [&mut self.odd, &mut self.even] {
            buffer.clear();
            buffer.resize(TAPS - 1, 0.0);
        }
        self.pending = None;
    }
}

/// `out[i] = Σ_k taps[k] samples[i + k]` for each `i` (`samples` holds
/// `out.len() + TAPS - 1`), eight lanes wide with fused multiply-adds where
/// the CPU has AVX2 and FMA.
fn convolve(taps: &[f32; TAPS], samples: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if x86::has_avx2_fma() {
        return x86::convolve_avx2_fma(taps, samples, out);
    }
    convolve_lanes::<false>(taps, samples, out);
}

/// [`convolve`], [`GROUP`] outputs at a time, one per lane: each tap is one
/// multiply-add across the lanes, and the even and odd taps add into two
/// sets of accumulators to hide the adder's latency.
#[inline(always)]
fn convolve_lanes<const FUSED: bool>(taps: &[f32; TAPS], samples: &[f32], out: &mut [f32]) {
    let (groups, rest) = out.as_chunks_mut::<GROUP>();
    let (tap_pairs, _) = taps.as_chunks::<2>();
    for (g, out) in groups.iter_mut().enumerate() {
        let window = &samples[g * GROUP..][..GROUP + TAPS - 1];
        let mut even = [0.0f32; GROUP];
        let mut odd = [0.0f32; GROUP];
        for (k, &[t0, t1]) in tap_pairs.iter().enumerate() {
            let x0 = &window[2 * k..][..GROUP];
            let x1 = &window[2 * k + 1..][..GROUP];
            for l in 0..GROUP {
                even[l] = multiply_add::<FUSED>(t0, x0[l], even[l]);
                odd[l] = multiply_add::<FUSED>(t1, x1[l], odd[l]);
            }
        }
        for l in 0..GROUP {
            out[l] = even[l] + odd[l];
        }
    }
    let done = groups.len() * GROUP;
    for (i, out) in rest.iter_mut().enumerate() {
        let window = &samples[done + i..][..TAPS];
        *out = window
            .iter()
            .zip(taps)
            .fold(0.0, |acc, (&x, &t)| multiply_add::<FUSED>(t, x, acc));
    }
}

#[inline(always)]
fn multiply_add<const FUSED: bool>(a: f32, b: f32, acc: f32) -> f32 {
    if FUSED {
        a.mul_add(b, acc)
    } else {
        acc + a * b
    }
}

/// The AVX2 and FMA build of [`convolve`].
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use crate::audio::half_band::TAPS;

    /// Whether this CPU has AVX2 and FMA (std caches the answer).
    #[inline(always)]
    pub(super) fn has_avx2_fma() -> bool {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }

    #[target_feature(enable = "avx2,fma")]
    fn convolve_compiled_for_avx2_fma(taps: &[f32; TAPS], samples: &[f32], out: &mut [f32]) {
        crate::audio::half_band::convolve_lanes::<true>(taps, samples, out);
    }

    /// Only call when [`has_avx2_fma`].
    #[inline(always)]
    pub(super) fn convolve_avx2_fma(taps: &[f32; TAPS], samples: &[f32], out: &mut [f32]) {
        // SAFETY: safe Rust compiled for AVX2 and FMA, called only after
        // `has_avx2_fma` found both on this CPU.
        unsafe { convolve_compiled_for_avx2_fma(taps, samples, out) }
    }
}

/// Rounds half away from zero and saturates, as `f32::round` then `as i16`
/// would, without the C library's `roundf` call.
#[inline(always)]
fn to_i16(x: f32) -> i16 {
    (x + 0.5f32.copysign(x)) as i16
}

/// The odd taps `h[2k - TAPS + 1]`, `k < TAPS`, of the half-band filter,
/// times `gain`: a Kaiser-windowed sinc whose odd taps sum to `gain / 2`.
fn design(gain: f64) -> [f32; TAPS] {
    let half_length = TAPS as f64;
    let raw: [f64; TAPS] = std::array::from_fn(|k| {
        let i = 2.0 * k as f64 - half_length + 1.0;
        let sinc = (std::f64::consts::FRAC_PI_2 * i).sin() / (std::f64::consts::PI * i);
        let ratio = i / half_length;
        sinc * bessel_i0(KAISER_BETA * (1.0 - ratio * ratio).sqrt()) / bessel_i0(KAISER_BETA)
    });
    let sum: f64 = raw.iter().sum();
    raw.map(|h| (h * gain / (2.0 * sum)) as f32)
}

/// The modified Bessel function of the first kind, order 0, by its power
/// series (converges fast for the window's arguments, below 10).
fn bessel_i0(x: f64) -> f64 {
    let quarter_square = x * x / 4.0;
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..64 {
        term *= quarter_square / (k * k) as f64;
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The full filter's gain at `hz`, the high rate being `rate`.
    fn gain_at(hz: f64, rate: f64) -> f64 {
        let taps = design(1.0);
        let w = 2.0 * std::f64::consts::PI * hz / rate;
        0.5 + taps
            .iter()
            .enumerate()
            .map(|(k, &h)| f64::from(h) * (w * (2.0 * k as f64 - TAPS as f64 + 1.0)).cos())
            .sum::<f64>()
    }

    fn db(gain: f64) -> f64 {
        20.0 * gain.abs().log10()
    }

    #[test]
    fn flat_in_the_telephone_band_and_rejects_above_it() {
        for hz in (0..=3_750).step_by(25) {
            let g = db(gain_at(f64::from(hz), 16_000.0));
            assert!(g.abs() < 0.001, "{hz} Hz: {g} dB");
        }
        for hz in (4_250..=8_000).step_by(10) {
            let g = db(gain_at(f64::from(hz), 16_000.0));
            assert!(g < -88.0, "{hz} Hz: {g} dB");
        }
    }

    fn tone(hz: f64, rate: f64, len: usize, amplitude: f64) -> Vec<i16> {
        (0..len)
            .map(|i| {
                (amplitude * (2.0 * std::f64::consts::PI * hz * i as f64 / rate).sin()).round()
                    as i16
            })
            .collect()
    }

    fn rms(samples: &[i16]) -> f64 {
        (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt()
    }

    #[test]
    fn up_then_down_gives_the_input_back_delayed() {
        let input = tone(1_000.0, 8_000.0, 1_600, 10_000.0);
        let mut up = HalfBand::new(Direction::Up, 160);
        let mut down = HalfBand::new(Direction::Down, 320);
        let mut high = Vec::new();
        // In uneven pieces: the output does not depend on how input comes.
        for piece in input.chunks(37) {
            up.process(piece, &mut high);
        }
        assert_eq!(high.len(), 2 * input.len());
        let mut low = Vec::new();
        for piece in high.chunks(41) {
            down.process(piece, &mut low);
        }
        assert_eq!(low.len(), input.len());
        // 96 samples at 16 kHz and then 47 at 8 kHz: 95 at 8 kHz.
        let delay = up.delay_samples() / 2 + down.delay_samples();
        assert_eq!(delay, 95);
        let error: Vec<i16> = low[delay + TAPS..]
            .iter()
            .zip(&input[TAPS..])
            .map(|(a, b)| a - b)
            .collect();
        assert!(rms(&error) < 1.0, "{}", rms(&error));
    }

    #[test]
    fn downsampling_removes_what_the_low_rate_cannot_hold() {
        let mut down = HalfBand::new(Direction::Down, 320);
        let mut out = Vec::new();
        down.process(&tone(5_000.0, 16_000.0, 3_200, 30_000.0), &mut out);
        // 30,000 (90 dB above 1) down by at least 88 dB: rounding noise.
        assert!(rms(&out[TAPS..]) < 1.0, "{}", rms(&out[TAPS..]));
    }

    #[test]
    fn flush_emits_what_is_owed_and_resets() {
        let mut up = HalfBand::new(Direction::Up, 160);
        let mut first = Vec::new();
        up.process(&[1_000; 10], &mut first);
        up.flush(up.delay_samples(), &mut first);
        assert_eq!(first.len(), 20 + TAPS);
        let mut again = Vec::new();
        up.process(&[1_000; 10], &mut again);
        assert_eq!(again[..], first[..20]);
    }
}
