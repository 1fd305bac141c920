//! Streaming sample-rate conversion for mono 16-bit audio.
//!
//! Doubling or halving the rate (8 ↔ 16 kHz for phone calls) takes a
//! dedicated half-band filter ([`half_band`](super::half_band)): no blocks,
//! each input sample (pair going down) gives its output at once, a delay of
//! 6 ms, a fraction of the FFT resampler's cost. What follows is about
//! the other pairs.
//!
//! [`StreamResampler`] wraps rubato's synchronous FFT resampler
//! ([`rubato::Fft`] with [`FixedSync::Both`]): every 20 ms block of input
//! becomes exactly one 20 ms block of output, so the output count never
//! drifts from `input * to / from` and block edges join by overlap-add, with
//! no clicks. Callers may pass any number of samples per call; input is
//! gathered into 20 ms blocks internally, so the output is identical however
//! the input is split.
//!
//! # Delay
//!
//! The FFT stage delays the signal by half a block, reported by
//! [`StreamResampler::delay_samples`] in output samples (10 ms for 8, 16, 24
//! and 48 kHz in any direction). Because output only appears once a whole
//! block is in, a caller feeding less than 20 ms per call additionally waits
//! for the block to fill. [`StreamResampler::flush`] pads the last partial
//! block with silence and emits everything still owed, so that over a whole
//! stream the output is exactly `delay_samples() + round(input * to / from)`
//! samples long, the input delayed by `delay_samples()`. [`resample_all`]
//! trims that delay for whole buffers.
//!
//! # Rates
//!
//! Any rates from 1 kHz to 384 kHz are accepted. The block is the shortest
//! whole number of rubato's minimum blocks (`rate / gcd(from, to)`) that
//! holds 20 ms: exactly 20 ms for 8, 16, 24, 32, 44.1 and 48 kHz pairs,
//! longer (with proportionally more delay) for pairs with a small common
//! divisor, up to one second for coprime rates. Equal rates are an identity
//! that copies its input and costs nothing else.
//!
//! # Allocation
//!
//! All scratch space (the f32 block buffers and rubato's FFT buffers) is
//! allocated in [`StreamResampler::new`]. `process` and `flush` only push
//! onto the caller's `Vec`, after reserving the room they need: reuse one
//! output `Vec` and the steady path does not allocate.

use audioadapter_buffers::direct::SequentialSlice;
use rubato::{Fft, FixedSync, Resampler};

use super::error::AudioError;
use super::half_band::{Direction, HalfBand};
use super::pcm::f32_sample_to_i16;

/// Lowest sample rate [`StreamResampler`] accepts, in Hz.
pub const MIN_RATE_HZ: u32 = 1_000;
/// Highest sample rate [`StreamResampler`] accepts, in Hz.
pub const MAX_RATE_HZ: u32 = 384_000;

/// Blocks per second the resampler aims for: 20 ms blocks.
const BLOCKS_PER_SECOND: u32 = 50;

/// Stateful mono resampler for a continuous stream of 16-bit samples.
///
/// See the [module docs](self) for the delay, the block size and allocation.
///
/// ```
/// use voxpipe::audio::StreamResampler;
///
/// let mut to_16k = StreamResampler::new(8_000, 16_000)?;
/// let mut out = Vec::new();
/// for frame in [[0i16; 160]; 3] {
///     out.clear();
///     to_16k.process(&frame, &mut out); // 20 ms in, 20 ms out
///     assert_eq!(out.len(), 320);
/// }
/// out.clear();
/// to_16k.flush(&mut out); // end of stream: the 10 ms still in the delay line
/// assert_eq!(out.len(), to_16k.delay_samples());
/// # Ok::<(), voxpipe::audio::AudioError>(())
/// ```
#[derive(Debug)]
pub struct StreamResampler {
    from_hz: u32,
    to_hz: u32,
    /// `None` when the rates are equal.
    stage: Option<Stage>,
}

/// How the rate is converted.
#[derive(Debug)]
enum Stage {
    /// Any pair of rates.
    Fft(Box<FftStage>),
    /// Exactly twice or half the rate.
    HalfBand(Box<HalfBand>),
}

/// The FFT resampler and its preallocated block buffers.
#[derive(Debug)]
struct FftStage {
    fft: Fft<f32>,
    /// Input samples per block.
    block_in: usize,
    /// Output samples per block.
    block_out: usize,
    /// The block being gathered, as floats; `filled` of them are valid.
    input: Vec<f32>,
    filled: usize,
    /// One block of output, as floats.
    output: Vec<f32>,
}

impl StreamResampler {
    /// Creates a resampler from `from_hz` to `to_hz`.
    ///
    /// # Errors
    ///
    /// [`AudioError::UnsupportedSampleRate`] if either rate is outside
    /// [`MIN_RATE_HZ`]`..=`[`MAX_RATE_HZ`]; [`AudioError::ResamplerInit`] if
    /// rubato rejects the pair.
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self, AudioError> {
        check_rate(from_hz)?;
        check_rate(to_hz)?;
        if from_hz == to_hz {
            return Ok(Self {
                from_hz,
                to_hz,
                stage: None,
            });
        }
        let direction = if u64::from(to_hz) == 2 * u64::from(from_hz) {
            Some(Direction::Up)
        } else if u64::from(from_hz) == 2 * u64::from(to_hz) {
            Some(Direction::Down)
        } else {
            None
        };
        if let Some(direction) = direction {
            let frame = (from_hz / BLOCKS_PER_SECOND).max(1) as usize;
            return Ok(Self {
                from_hz,
                to_hz,
                stage: Some(Stage::HalfBand(Box::new(HalfBand::new(direction, frame)))),
            });
        }
        let init_err = |source| AudioError::ResamplerInit {
            from_hz,
            to_hz,
            source,
        };
        let chunk = (from_hz / BLOCKS_PER_SECOND).max(1) as usize;
        let fft = Fft::<f32>::new(from_hz as usize, to_hz as usize, chunk, 1, FixedSync::Both)
            .map_err(init_err)?;
        let block_in = fft.input_frames_next();
        let block_out = fft.output_frames_next();
        Ok(Self {
            from_hz,
            to_hz,
            stage: Some(Stage::Fft(Box::new(FftStage {
                fft,
                block_in,
                block_out,
                input: vec![0.0; block_in],
                filled: 0,
                output: vec![0.0; block_out],
            }))),
        })
    }

    /// Input rate in Hz.
    pub fn from_hz(&self) -> u32 {
        self.from_hz
    }

    /// Output rate in Hz.
    pub fn to_hz(&self) -> u32 {
        self.to_hz
    }

    /// Resamples `input` (any length, including zero) and appends the output
    /// that is ready to `out`.
    ///
    /// Output comes in whole blocks: a call that does not complete a block
    /// appends nothing, and a long call appends several blocks.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let stage = match &mut self.stage {
            None => {
                out.extend_from_slice(input);
                return;
            }
            Some(Stage::HalfBand(half_band)) => {
                half_band.process(input, out);
                return;
            }
            Some(Stage::Fft(stage)) => stage,
        };
        let blocks = (stage.filled + input.len()) / stage.block_in;
        out.reserve(blocks * stage.block_out);
        let mut rest = input;
        while !rest.is_empty() {
            let take = (stage.block_in - stage.filled).min(rest.len());
            let (now, later) = rest.split_at(take);
            let dst = &mut stage.input[stage.filled..stage.filled + take];
            for (d, &s) in dst.iter_mut().zip(now) {
                *d = f32::from(s) / 32768.0;
            }
            stage.filled += take;
            rest = later;
            if stage.filled == stage.block_in {
                stage.run_block();
                out.extend(stage.output.iter().map(|&x| f32_sample_to_i16(x)));
            }
        }
    }

    /// Ends the stream: pads the buffered partial block with silence,
    /// appends everything still owed to `out` (the buffered input and the
    /// delay line), then [resets](Self::reset) for a new stream.
    ///
    /// After `flush` the stream's total output is exactly
    /// `delay_samples() + round(total_input * to / from)` samples.
    pub fn flush(&mut self, out: &mut Vec<i16>) {
        let (from, to) = (u64::from(self.from_hz), u64::from(self.to_hz));
        let delay = self.delay_samples();
        let stage = match &mut self.stage {
            None => return,
            Some(Stage::HalfBand(half_band)) => {
                // Only a lone sample going down is waiting (and owes one).
                let tail = (half_band.pending_samples() as u64 * to + from / 2) / from;
                half_band.flush(delay + tail as usize, out);
                return;
            }
            Some(Stage::Fft(stage)) => stage,
        };
        // Whole blocks map exactly, so only the partial block and the delay
        // are owed.
        let tail = (stage.filled as u64 * to + from / 2) / from;
        let mut owed = delay + tail as usize;
        out.reserve(owed);
        while owed > 0 {
            stage.input[stage.filled..].fill(0.0);
            stage.filled = stage.block_in;
            stage.run_block();
            let n = owed.min(stage.block_out);
            out.extend(stage.output[..n].iter().map(|&x| f32_sample_to_i16(x)));
            owed -= n;
        }
        self.reset();
    }

    /// Algorithmic delay in output samples: an input sample at time `t`
    /// comes out at `t * to / from + delay_samples()`. Zero for equal rates.
    pub fn delay_samples(&self) -> usize {
        match &self.stage {
            None => 0,
            Some(Stage::HalfBand(half_band)) => half_band.delay_samples(),
            Some(Stage::Fft(stage)) => stage.fft.output_delay(),
        }
    }

    /// Input samples per internal block (20 ms for the usual rates; one
    /// sample, or a pair going down, for a half or double rate).
    /// Equal rates have no block and report 0.
    pub fn block_input_samples(&self) -> usize {
        match &self.stage {
            None => 0,
            Some(Stage::HalfBand(_)) => (self.from_hz / self.to_hz.min(self.from_hz)) as usize,
            Some(Stage::Fft(stage)) => stage.block_in,
        }
    }

    /// Output samples per internal block; see [`Self::block_input_samples`].
    pub fn block_output_samples(&self) -> usize {
        match &self.stage {
            None => 0,
            Some(Stage::HalfBand(_)) => (self.to_hz / self.to_hz.min(self.from_hz)) as usize,
            Some(Stage::Fft(stage)) => stage.block_out,
        }
    }

    /// Forgets all buffered input and filter state, as if newly created.
    pub fn reset(&mut self) {
        match &mut self.stage {
            None => {}
            Some(Stage::HalfBand(half_band)) => half_band.reset(),
            Some(Stage::Fft(stage)) => {
                stage.fft.reset();
                stage.filled = 0;
            }
        }
    }
}

impl FftStage {
    /// Resamples the full input block into `output`.
    fn run_block(&mut self) {
        self.filled = 0;
        // Both adapters are built from buffers sized for one block in `new`,
        // and a `FixedSync::Both` resampler always wants exactly one block,
        // so neither this nor `process_into_buffer` can fail. Should that
        // ever change, emit silence rather than stall or panic the stream.
        let (Ok(input), Ok(mut output)) = (
            SequentialSlice::new(&self.input[..], 1, self.block_in),
            SequentialSlice::new_mut(&mut self.output[..], 1, self.block_out),
        ) else {
            debug_assert!(false, "resampler block buffers have the wrong size");
            self.output.fill(0.0);
            return;
        };
        if let Err(e) = self.fft.process_into_buffer(&input, &mut output, None) {
            debug_assert!(false, "rubato rejected a full block: {e}");
            self.output.fill(0.0);
        }
    }
}

fn check_rate(rate_hz: u32) -> Result<(), AudioError> {
    if (MIN_RATE_HZ..=MAX_RATE_HZ).contains(&rate_hz) {
        Ok(())
    } else {
        Err(AudioError::UnsupportedSampleRate {
            rate_hz,
            min_hz: MIN_RATE_HZ,
            max_hz: MAX_RATE_HZ,
        })
    }
}

/// Resamples a whole buffer with the delay removed: the result has
/// `round(input.len() * to / from)` samples and is aligned in time with the
/// input (sample `i` of the output is at time `i / to`).
///
/// # Errors
///
/// As [`StreamResampler::new`].
pub fn resample_all(input: &[i16], from_hz: u32, to_hz: u32) -> Result<Vec<i16>, AudioError> {
    let mut resampler = StreamResampler::new(from_hz, to_hz)?;
    let delay = resampler.delay_samples();
    let expected =
        (input.len() as u64 * u64::from(to_hz) + u64::from(from_hz) / 2) / u64::from(from_hz);
    let mut out = Vec::with_capacity(expected as usize + delay);
    resampler.process(input, &mut out);
    resampler.flush(&mut out);
    out.drain(..delay.min(out.len()));
    debug_assert_eq!(out.len() as u64, expected);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f32, rate: u32, len: usize, amp: f32) -> Vec<i16> {
        (0..len)
            .map(|i| {
                let t = i as f32 / rate as f32;
                (amp * (2.0 * std::f32::consts::PI * freq * t).sin()).round() as i16
            })
            .collect()
    }

    #[test]
    fn resampler_can_move_between_threads() {
        fn check<T: Send + 'static>() {}
        check::<StreamResampler>();
    }

    #[test]
    fn identity_copies_and_has_no_delay() {
        let mut r = StreamResampler::new(16_000, 16_000).unwrap();
        assert_eq!(r.delay_samples(), 0);
        let mut out = Vec::new();
        r.process(&[1, 2, 3], &mut out);
        r.flush(&mut out);
        assert_eq!(out, vec![1, 2, 3]);
    }

    #[test]
    fn usual_rates_use_20ms_blocks_and_10ms_delay() {
        for (from, to) in [
            (48_000, 16_000),
            (16_000, 48_000),
            (24_000, 16_000),
            (8_000, 48_000),
            (44_100, 16_000),
        ] {
            let r = StreamResampler::new(from, to).unwrap();
            assert_eq!(
                r.block_input_samples(),
                (from / 50) as usize,
                "{from}->{to}"
            );
            assert_eq!(r.block_output_samples(), (to / 50) as usize, "{from}->{to}");
            assert_eq!(r.delay_samples(), (to / 100) as usize, "{from}->{to}");
        }
    }

    #[test]
    fn double_and_half_rates_need_no_blocks_and_6ms_delay() {
        for (from, to, delay) in [
            (8_000, 16_000, 96),
            (16_000, 8_000, 47),
            (24_000, 48_000, 96),
        ] {
            let mut r = StreamResampler::new(from, to).unwrap();
            assert_eq!(r.delay_samples(), delay, "{from}->{to}");
            let mut out = Vec::new();
            r.process(&sine(440.0, from, 250, 10_000.0), &mut out);
            assert_eq!(out.len() as u32, 250 * to / from, "{from}->{to}");
            r.flush(&mut out);
            assert_eq!(out.len() as u32, 250 * to / from + delay as u32);
        }
    }

    #[test]
    fn rejects_out_of_range_rates() {
        for (from, to) in [(0, 16_000), (16_000, 0), (999, 16_000), (16_000, 400_000)] {
            let err = StreamResampler::new(from, to).unwrap_err();
            assert!(
                matches!(err, AudioError::UnsupportedSampleRate { .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn odd_rate_pairs_still_map_lengths_exactly() {
        for (from, to) in [
            (11_025, 16_000),
            (22_050, 8_000),
            (44_100, 48_000),
            (7_999, 8_000),
        ] {
            for len in [0, 1, 100, 12_345] {
                let out = resample_all(&sine(300.0, from, len, 8000.0), from, to).unwrap();
                let expected = ((len as u64 * to as u64) as f64 / from as f64).round() as usize;
                assert_eq!(out.len(), expected, "{from}->{to} len {len}");
            }
        }
    }

    #[test]
    fn flush_emits_delay_plus_tail_and_resets() {
        let mut r = StreamResampler::new(8_000, 24_000).unwrap();
        let mut out = Vec::new();
        r.process(&sine(440.0, 8_000, 250, 10_000.0), &mut out);
        assert_eq!(out.len(), 480); // one block out, 90 samples buffered
        r.flush(&mut out);
        assert_eq!(out.len(), 240 + 750);
        // Reset: a new stream starts from silence with the full delay again.
        let mut again = Vec::new();
        r.process(&sine(440.0, 8_000, 250, 10_000.0), &mut again);
        assert_eq!(&again[..], &out[..480]);
    }
}
