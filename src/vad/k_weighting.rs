//! BS.1770's K-weighting filter with libloudness's (libebur128's) design,
//! and the energy `Σ y²` of its output, for `volume.rs` (which uses it).
//!
//! # Cost
//!
//! A recursive filter is one long chain of dependent multiplies and adds:
//! run sample by sample it waits on the adder's latency at every step (the
//! volume's filtering was 6 to 10% of a Twilio parrot server's CPU). So
//! [`KWeighting::energy`] cuts the samples into blocks of four lanes and
//! runs the four lanes side by side, as vectors: the first from the
//! filter's true state, the others from rest. The filter is linear, so a
//! lane's true output is its output from rest plus the response, with no
//! input, to the true state it starts in; that response is a mix of four
//! fixed responses (one per state variable), so its effect on the energy
//! (`2 Σ y r` and `Σ r²`) and on the final state are a few products per
//! block, with the cross sums `Σ y r_k` accumulated beside the filter.
//! The sums differ from the sample-by-sample ones in the last bits only
//! (the tests hold them to 1e-9 of the energy: in a quiet lane after a
//! loud one the correction cancels most of the lane's energy), far below libloudness's 0.1 LU steps.

use std::f64::consts::PI;

/// Lanes run side by side.
const LANES: usize = 4;
/// Samples per lane of a block.
const LANE_LEN: usize = 64;
/// Samples per block.
const BLOCK: usize = LANES * LANE_LEN;
/// Samples per lane of the short block that takes what is left after the
/// blocks, when it is long enough: a VAD chunk of 256 samples at 8 kHz
/// leaves a window head of 896, and its last 128 samples, run one at a
/// time, took as long as a whole block.
const SHORT_LANE_LEN: usize = 32;
/// Samples per short block.
const SHORT_BLOCK: usize = LANES * SHORT_LANE_LEN;
/// The filter's state variables: two per stage.
const STATES: usize = 4;

/// The filter's memory: the high shelf's two state variables, then the high
/// pass's. Zero for a filter at rest.
pub(super) type KState = [f64; STATES];

/// A biquad with `a0` normalised to 1, run in direct form II transposed.
#[derive(Debug, Clone, Copy)]
struct Biquad {
    b: [f64; 3],
    a: [f64; 3],
}

impl Biquad {
    /// Filters the next input sample; `state` starts at zero for a new
    /// signal.
    #[inline(always)]
    fn step(&self, state: &mut [f64; 2], input: f64) -> f64 {
        let output = state[0] + self.b[0] * input;
        state[0] = state[1] + input * self.b[1] - output * self.a[1];
        state[1] = input * self.b[2] - output * self.a[2];
        output
    }

    /// [`Biquad::step`] in each lane; `state[v]` holds state variable `v`
    /// of every lane.
    #[inline(always)]
    fn step_lanes(&self, state: &mut [[f64; LANES]; 2], input: [f64; LANES]) -> [f64; LANES] {
        let mut output = [0.0; LANES];
        for l in 0..LANES {
            output[l] = state[0][l] + self.b[0] * input[l];
            state[0][l] = state[1][l] + input[l] * self.b[1] - output[l] * self.a[1];
            state[1][l] = input[l] * self.b[2] - output[l] * self.a[2];
        }
        output
    }
}

/// BS.1770's K-weighting with libloudness's (libebur128's) design.
#[derive(Debug, Clone)]
pub(super) struct KWeighting {
    high_shelf: Biquad,
    high_pass: Biquad,
    /// `response[n][k]`: the output at step `n` with no input, from the
    /// state that is 1 in variable `k` and 0 elsewhere.
    response: Box<[[f64; STATES]; LANE_LEN]>,
    /// For lanes of `LANE_LEN` samples.
    long: LaneTables,
    /// For lanes of `SHORT_LANE_LEN` samples.
    short: LaneTables,
}

/// What correcting a lane of a given length takes.
#[derive(Debug, Clone, Default)]
struct LaneTables {
    /// `Σ_n response[n][k] response[n][j]` over the lane.
    gram: [[f64; STATES]; STATES],
    /// `transition[k]`: the state after the lane's steps with no input,
    /// from the state that is 1 in variable `k`.
    transition: [KState; STATES],
}

impl LaneTables {
    /// Made from `filter`'s biquads and `response`, the first `len` rows.
    fn new(filter: &KWeighting, len: usize) -> Self {
        let mut tables = LaneTables::default();
        for k in 0..STATES {
            let mut state = [0.0; STATES];
            state[k] = 1.0;
            for _ in 0..len {
                filter.step(&mut state, 0.0);
            }
            tables.transition[k] = state;
        }
        for r in &filter.response[..len] {
            for k in 0..STATES {
                for j in 0..STATES {
                    tables.gram[k][j] += r[k] * r[j];
                }
            }
        }
        tables
    }
}

impl KWeighting {
    pub(super) fn new(rate: f64) -> Self {
        const SHELF_HZ: f64 = 1681.974450955533;
        const SHELF_GAIN_DB: f64 = 3.999843853973347;
        const SHELF_Q: f64 = 0.7071752369554196;
        const SHELF_VB_EXPONENT: f64 = 0.4996667741545416;
        const PASS_HZ: f64 = 38.13547087602444;
        const PASS_Q: f64 = 0.5003270373238773;
        let vh = 10f64.powf(SHELF_GAIN_DB / 20.0);
        let vb = vh.powf(SHELF_VB_EXPONENT);
        let k = (PI * SHELF_HZ / rate).tan();
        let a0 = 1.0 + k / SHELF_Q + k * k;
        let high_shelf = Biquad {
            b: [
                (vh + vb * k / SHELF_Q + k * k) / a0,
                2.0 * (k * k - vh) / a0,
                (vh - vb * k / SHELF_Q + k * k) / a0,
            ],
            a: [
                1.0,
                2.0 * (k * k - 1.0) / a0,
                (1.0 - k / SHELF_Q + k * k) / a0,
            ],
        };
        let k = (PI * PASS_HZ / rate).tan();
        let a0 = 1.0 + k / PASS_Q + k * k;
        let high_pass = Biquad {
            b: [1.0, -2.0, 1.0],
            a: [
                1.0,
                2.0 * (k * k - 1.0) / a0,
                (1.0 - k / PASS_Q + k * k) / a0,
            ],
        };
        // The tables are made from the filter's own response, below.
        let mut filter = KWeighting {
            high_shelf,
            high_pass,
            response: Box::new([[0.0; STATES]; LANE_LEN]),
            long: LaneTables::default(),
            short: LaneTables::default(),
        };
        for k in 0..STATES {
            let mut state = [0.0; STATES];
            state[k] = 1.0;
            for n in 0..LANE_LEN {
                filter.response[n][k] = filter.step(&mut state, 0.0);
            }
        }
        filter.long = LaneTables::new(&filter, LANE_LEN);
        filter.short = LaneTables::new(&filter, SHORT_LANE_LEN);
        filter
    }

    /// Filters one sample.
    #[inline(always)]
    fn step(&self, state: &mut KState, input: f64) -> f64 {
        let [s0, s1, p0, p1] = state;
        let mut shelf = [*s0, *s1];
        let mut pass = [*p0, *p1];
        let shelved = self.high_shelf.step(&mut shelf, input);
        let output = self.high_pass.step(&mut pass, shelved);
        *state = [shelf[0], shelf[1], pass[0], pass[1]];
        output
    }

    /// `Σ y²` of the filtered `samples`, the filter carried in `state`.
    pub(super) fn energy(&self, state: &mut KState, samples: &[i16]) -> f64 {
        let (blocks, rest) = samples.as_chunks::<BLOCK>();
        let mut energy = 0.0;
        for block in blocks {
            energy += self.block_energy::<LANE_LEN>(state, block);
        }
        let rest = match rest.split_first_chunk::<SHORT_BLOCK>() {
            Some((short, rest)) => {
                energy += self.block_energy::<SHORT_LANE_LEN>(state, short);
                rest
            }
            None => rest,
        };
        for &sample in rest {
            let y = self.step(state, f64::from(sample));
            energy += y * y;
        }
        energy
    }

    /// [`KWeighting::energy`] of one block of `LANES` lanes of `L` samples
    /// (`L` is `LANE_LEN` or `SHORT_LANE_LEN`), its lanes side by side
    /// (see the module docs).
    fn block_energy<const L: usize>(&self, state: &mut KState, block: &[i16]) -> f64 {
        #[cfg(target_arch = "x86_64")]
        if crate::vad::silero::has_avx2_fma() {
            let lanes = x86::run_lanes_avx::<L>(self, state, block);
            return self.combine::<L>(&lanes, state);
        }
        let lanes = self.run_lanes::<L>(state, block);
        self.combine::<L>(&lanes, state)
    }

    /// The tables for lanes of `L` samples.
    fn tables<const L: usize>(&self) -> &LaneTables {
        const { assert!(L == LANE_LEN || L == SHORT_LANE_LEN) };
        if L == SHORT_LANE_LEN {
            &self.short
        } else {
            &self.long
        }
    }

    /// Runs the block's lanes of `L` samples: the first from `state`, the
    /// others from rest.
    fn run_lanes<const L: usize>(&self, state: &KState, block: &[i16]) -> Lanes {
        let block = &block[..LANES * L];
        let mut lanes = Lanes::starting_from(state);
        for n in 0..L {
            let input: [f64; LANES] = std::array::from_fn(|l| f64::from(block[l * L + n]));
            let shelved = self.high_shelf.step_lanes(&mut lanes.shelf, input);
            let y = self.high_pass.step_lanes(&mut lanes.pass, shelved);
            let r = &self.response[n];
            for (l, &y) in y.iter().enumerate() {
                lanes.energy[l] += y * y;
                for (cross, &r) in lanes.cross.iter_mut().zip(r) {
                    cross[l] += y * r;
                }
            }
        }
        lanes
    }

    /// The block's energy from its lanes of `L` samples; leaves the
    /// filter's state at the block's end in `state`.
    fn combine<const L: usize>(&self, lanes: &Lanes, state: &mut KState) -> f64 {
        let LaneTables { gram, transition } = self.tables::<L>();
        // Lane 0 was exact; each later lane is corrected by the response
        // to the true state it starts in, which is where the lane before
        // ended.
        let end_of = |l: usize| {
            [
                lanes.shelf[0][l],
                lanes.shelf[1][l],
                lanes.pass[0][l],
                lanes.pass[1][l],
            ]
        };
        let mut total = lanes.energy[0];
        let mut start = end_of(0);
        for l in 1..LANES {
            let mut correction = 0.0;
            let mut end = end_of(l);
            for k in 0..STATES {
                let mut gram_start = 0.0;
                for j in 0..STATES {
                    gram_start += gram[k][j] * start[j];
                    end[j] += transition[k][j] * start[k];
                }
                correction += start[k] * (2.0 * lanes.cross[k][l] + gram_start);
            }
            total += lanes.energy[l] + correction;
            start = end;
        }
        *state = start;
        total
    }
}

/// What a block's lanes leave: `[v][l]` is variable `v` of lane `l`.
#[derive(Debug, Default)]
struct Lanes {
    shelf: [[f64; LANES]; 2],
    pass: [[f64; LANES]; 2],
    /// `Σ y²` per lane.
    energy: [f64; LANES],
    /// `cross[k][l]`: `Σ y r_k` in lane `l`.
    cross: [[f64; LANES]; STATES],
}

impl Lanes {
    /// Lane 0 in `state`, the others at rest.
    fn starting_from(state: &KState) -> Self {
        let mut lanes = Lanes::default();
        lanes.shelf[0][0] = state[0];
        lanes.shelf[1][0] = state[1];
        lanes.pass[0][0] = state[2];
        lanes.pass[1][0] = state[3];
        lanes
    }
}

/// The AVX build of the lanes: the four lanes in one register, the same
/// operations in the same order as the portable build (unfused), so the
/// same sums.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use std::arch::x86_64::{
        __m256d, _mm256_add_pd, _mm256_mul_pd, _mm256_set_pd, _mm256_set1_pd, _mm256_setzero_pd,
        _mm256_storeu_pd, _mm256_sub_pd,
    };

    use crate::vad::k_weighting::{KState, KWeighting, LANES, Lanes, STATES};

    /// `[a, b, c, d]` as lanes 0 to 3.
    #[target_feature(enable = "avx2,fma")]
    fn lanes_of(values: [f64; 4]) -> __m256d {
        _mm256_set_pd(values[3], values[2], values[1], values[0])
    }

    #[target_feature(enable = "avx2,fma")]
    fn to_array(vector: __m256d) -> [f64; 4] {
        let mut out = [0.0; 4];
        // SAFETY: `out` has room for the four lanes.
        unsafe { _mm256_storeu_pd(out.as_mut_ptr(), vector) };
        out
    }

    /// One biquad step in each lane (`Biquad::step`'s operations).
    #[target_feature(enable = "avx2,fma")]
    fn step(b: [__m256d; 3], a: [__m256d; 2], state: &mut [__m256d; 2], x: __m256d) -> __m256d {
        let output = _mm256_add_pd(state[0], _mm256_mul_pd(b[0], x));
        state[0] = _mm256_sub_pd(
            _mm256_add_pd(state[1], _mm256_mul_pd(x, b[1])),
            _mm256_mul_pd(output, a[0]),
        );
        state[1] = _mm256_sub_pd(_mm256_mul_pd(x, b[2]), _mm256_mul_pd(output, a[1]));
        output
    }

    #[target_feature(enable = "avx2,fma")]
    fn run_lanes_compiled_for_avx<const L: usize>(
        filter: &KWeighting,
        state: &KState,
        block: &[i16],
    ) -> Lanes {
        let block = &block[..LANES * L];
        let coefficients = |biquad: &crate::vad::k_weighting::Biquad| {
            (
                biquad.b.map(|b| _mm256_set1_pd(b)),
                [_mm256_set1_pd(biquad.a[1]), _mm256_set1_pd(biquad.a[2])],
            )
        };
        let (shelf_b, shelf_a) = coefficients(&filter.high_shelf);
        let (pass_b, pass_a) = coefficients(&filter.high_pass);
        let start = Lanes::starting_from(state);
        let mut shelf = start.shelf.map(|v| lanes_of(v));
        let mut pass = start.pass.map(|v| lanes_of(v));
        let mut energy = _mm256_setzero_pd();
        let mut cross = [_mm256_setzero_pd(); STATES];
        for n in 0..L {
            let x = lanes_of(std::array::from_fn(|l| f64::from(block[l * L + n])));
            let shelved = step(shelf_b, shelf_a, &mut shelf, x);
            let y = step(pass_b, pass_a, &mut pass, shelved);
            energy = _mm256_add_pd(energy, _mm256_mul_pd(y, y));
            let r = &filter.response[n];
            for k in 0..STATES {
                cross[k] = _mm256_add_pd(cross[k], _mm256_mul_pd(y, _mm256_set1_pd(r[k])));
            }
        }
        Lanes {
            shelf: shelf.map(|v| to_array(v)),
            pass: pass.map(|v| to_array(v)),
            energy: to_array(energy),
            cross: cross.map(|v| to_array(v)),
        }
    }

    /// Only call when the CPU has AVX2 and FMA.
    pub(super) fn run_lanes_avx<const L: usize>(
        filter: &KWeighting,
        state: &KState,
        block: &[i16],
    ) -> Lanes {
        // SAFETY: compiled for AVX2 and FMA, called only after
        // `has_avx2_fma` found both on this CPU.
        unsafe { run_lanes_compiled_for_avx::<L>(filter, state, block) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample-by-sample filter.
    fn serial_energy(filter: &KWeighting, state: &mut KState, samples: &[i16]) -> f64 {
        samples
            .iter()
            .map(|&s| {
                let y = filter.step(state, f64::from(s));
                y * y
            })
            .sum()
    }

    fn noise_and_tone(len: usize) -> Vec<i16> {
        let mut seed = 0x2545_f491_u32;
        (0..len)
            .map(|i| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let noise = f64::from(seed % 2001) - 1000.0;
                let tone = 12_000.0 * (2.0 * PI * 440.0 * i as f64 / 16_000.0).sin();
                // A loud stretch, then a quiet one: the state the quiet
                // lanes start in matters.
                (if i < len / 2 {
                    tone + noise
                } else {
                    noise / 50.0
                }) as i16
            })
            .collect()
    }

    #[test]
    fn lanes_side_by_side_match_the_sample_by_sample_filter() {
        for rate in [8_000.0, 16_000.0] {
            let filter = KWeighting::new(rate);
            let samples = noise_and_tone(5 * BLOCK + SHORT_BLOCK + 37);
            // Splits that leave a short block, or not, at the end of each
            // part.
            for split in [0, 1, BLOCK / 2, 3 * BLOCK, 2 * BLOCK + SHORT_BLOCK + 5] {
                let (first, second) = samples.split_at(split);
                let mut expected_state = [0.0; STATES];
                let mut state = [0.0; STATES];
                for part in [first, second] {
                    let expected = serial_energy(&filter, &mut expected_state, part);
                    let energy = filter.energy(&mut state, part);
                    assert!(
                        (energy - expected).abs() <= 1e-9 * expected.max(1.0),
                        "{rate} Hz, split {split}: {energy} vs {expected}"
                    );
                    for (s, e) in state.iter().zip(&expected_state) {
                        assert!((s - e).abs() <= 1e-9 * e.abs().max(1.0), "{s} vs {e}");
                    }
                }
            }
            // The portable build, which the test machine may not pick.
            check_portable_block::<LANE_LEN>(&filter, &samples);
            check_portable_block::<SHORT_LANE_LEN>(&filter, &samples);
        }
    }

    fn check_portable_block<const L: usize>(filter: &KWeighting, samples: &[i16]) {
        let block = &samples[..LANES * L];
        let mut state = [0.0; STATES];
        let lanes = filter.run_lanes::<L>(&state, block);
        let energy = filter.combine::<L>(&lanes, &mut state);
        #[cfg(target_arch = "x86_64")]
        if crate::vad::silero::has_avx2_fma() {
            // The same operations in the same order: the same sums.
            let avx = x86::run_lanes_avx::<L>(filter, &[0.0; STATES], block);
            assert_eq!(avx.energy, lanes.energy);
            assert_eq!(avx.cross, lanes.cross);
        }
        let mut expected_state = [0.0; STATES];
        let expected = serial_energy(filter, &mut expected_state, block);
        assert!(
            (energy - expected).abs() <= 1e-12 * expected,
            "{L}: {energy} vs {expected}"
        );
        for (s, e) in state.iter().zip(&expected_state) {
            assert!((s - e).abs() <= 1e-9 * e.abs().max(1.0), "{L}: {s} vs {e}");
        }
    }
}
