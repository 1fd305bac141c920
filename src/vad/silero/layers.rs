//! The layers of the network with their weights laid out for the kernels
//! (`kernels.rs`): in blocks of output channels, each block in the order
//! the kernel reads it, once, front to back.
//!
//! The kernels compute outer products: an input value, broadcast, times a
//! vector of eight output channels' weights, added to those channels'
//! sums. A block is as many output channels as [`ACCUMULATORS`] vector
//! registers hold for every output time step, so a block's sums stay in
//! registers from the first input to the last, and no sum ever needs
//! adding across lanes.

/// Width of the encoder output and of the LSTM state.
pub(crate) const HIDDEN: usize = 128;

/// Floats in one AVX register; the portable build computes the same
/// eight lanes in two SSE2 or NEON registers.
pub(crate) const LANES: usize = 8;

/// Vector sums a kernel keeps in registers: with a fused multiply-add's
/// latency of four cycles and two issued per cycle, eight independent
/// sums keep both units busy (AVX2 has sixteen registers; the rest hold
/// inputs).
pub(crate) const ACCUMULATORS: usize = 8;

/// Eight output channels' weights, aligned so that a vector load never
/// straddles two cache lines.
#[derive(Clone, Copy, Default)]
#[repr(align(32))]
pub(crate) struct Lanes(pub(crate) [f32; LANES]);

/// One `Conv1d` of the encoder: kernel 3, padding 1, stride `STRIDE`, on
/// an input of `STEPS_IN` time steps. Activations are time-major:
/// `[step][channel]`.
pub(crate) struct Conv<const STEPS_IN: usize, const STRIDE: usize> {
    pub(crate) in_channels: usize,
    pub(crate) out_channels: usize,
    /// `[out block][in channel][live tap][BLOCK]`, output channels past
    /// `out_channels` zero. Taps that only ever see padding are left out:
    /// the last two layers (inputs of two steps and one) keep two taps
    /// and one, a third of the encoder's memory traffic.
    pub(crate) weight: Vec<Lanes>,
    /// `[out block][BLOCK]`.
    pub(crate) bias: Vec<Lanes>,
}

impl<const STEPS_IN: usize, const STRIDE: usize> Conv<STEPS_IN, STRIDE> {
    /// Time steps of the output.
    pub(crate) const STEPS_OUT: usize = (STEPS_IN - 1) / STRIDE + 1;

    /// Vectors of output channels per block: one sum per output step each.
    pub(crate) const BLOCK: usize = ACCUMULATORS / Self::STEPS_OUT;

    /// For each tap of the kernel, its place among the live taps, or
    /// `None` if it only ever sees padding.
    pub(crate) const LIVE_TAPS: [Option<usize>; 3] = {
        let mut live = [None; 3];
        let (mut k, mut count) = (0, 0);
        while k < 3 {
            let mut step = 0;
            while step < STEPS_IN {
                if Self::step_fed(step, k).is_some() && live[k].is_none() {
                    live[k] = Some(count);
                    count += 1;
                }
                step += 1;
            }
            k += 1;
        }
        live
    };

    /// How many taps are live.
    pub(crate) const TAPS: usize = {
        let mut count = 0;
        let mut k = 0;
        while k < 3 {
            if Self::LIVE_TAPS[k].is_some() {
                count += 1;
            }
            k += 1;
        }
        count
    };

    /// The output step to which tap `k` carries input step `step`: tap `k`
    /// of output step `t` reads input step `t * STRIDE + k - 1`.
    pub(crate) const fn step_fed(step: usize, k: usize) -> Option<usize> {
        if step + 1 < k {
            return None;
        }
        let offset = step + 1 - k;
        if offset.is_multiple_of(STRIDE) && offset / STRIDE < Self::STEPS_OUT {
            Some(offset / STRIDE)
        } else {
            None
        }
    }

    /// Floats of the output.
    pub(crate) fn output_len(&self) -> usize {
        Self::STEPS_OUT * self.out_channels
    }

    /// The layer from PyTorch's `weight` (`[out][in][3]`) and `bias`.
    pub(crate) fn new(
        in_channels: usize,
        out_channels: usize,
        weight: &[f32],
        bias: &[f32],
    ) -> Self {
        const { assert!(ACCUMULATORS.is_multiple_of(Self::STEPS_OUT)) };
        let block = Self::BLOCK * LANES;
        let blocks = out_channels.div_ceil(block);
        let mut laid_out = vec![Lanes::default(); blocks * in_channels * Self::TAPS * Self::BLOCK];
        let vectors = laid_out.chunks_exact_mut(Self::BLOCK);
        let places = (0..blocks).flat_map(|b| {
            (0..in_channels).flat_map(move |c| {
                Self::LIVE_TAPS
                    .iter()
                    .enumerate()
                    .filter_map(move |(k, live)| live.map(|_| (b, c, k)))
            })
        });
        for (vectors, (b, c, k)) in vectors.zip(places) {
            for (v, lanes) in vectors.iter_mut().enumerate() {
                for (lane, w) in lanes.0.iter_mut().enumerate() {
                    let out = b * block + v * LANES + lane;
                    if out < out_channels {
                        *w = weight[(out * in_channels + c) * 3 + k];
                    }
                }
            }
        }
        Conv {
            in_channels,
            out_channels,
            weight: laid_out,
            bias: lanes_of(bias, blocks * block),
        }
    }
}

/// Hidden units whose four gates one block of [`Lstm`] computes.
pub(crate) const LSTM_UNITS_PER_BLOCK: usize = ACCUMULATORS * LANES / 4;

/// The decoder's LSTM cell, its gate rows in blocks: each block holds the
/// input, forget, cell and output gates of [`LSTM_UNITS_PER_BLOCK`] hidden
/// units, so that a block's sums are all its units need to update their
/// state.
pub(crate) struct Lstm {
    /// `[block][input][gate][unit]`: the inputs are the cell's input
    /// then its previous `h`; `gate` in PyTorch's order (input, forget,
    /// cell, output); `unit` the block's hidden units, eight to a vector.
    pub(crate) weight: Vec<Lanes>,
    /// `bias_ih + bias_hh`, `[block][gate][unit]`.
    pub(crate) bias: Vec<Lanes>,
}

impl Lstm {
    /// The cell of [`HIDDEN`] units from PyTorch's `weight_ih` (`[4 *
    /// HIDDEN][inputs]`), `weight_hh` (`[4 * HIDDEN][HIDDEN]`), gates in
    /// PyTorch's order, and the summed biases (`[4 * HIDDEN]`).
    pub(crate) fn new(weight_ih: &[f32], weight_hh: &[f32], bias: &[f32]) -> Self {
        const { assert!(HIDDEN.is_multiple_of(LSTM_UNITS_PER_BLOCK)) };
        let hidden = HIDDEN;
        let inputs = weight_ih.len() / (4 * hidden);
        let width = inputs + hidden;
        let blocks = hidden / LSTM_UNITS_PER_BLOCK;
        // The gate row lane `lane` of vector `v` of block `b` computes.
        let row = |b: usize, v: usize, lane: usize| {
            let gate = v * LANES / LSTM_UNITS_PER_BLOCK;
            let unit = b * LSTM_UNITS_PER_BLOCK + v * LANES % LSTM_UNITS_PER_BLOCK + lane;
            gate * hidden + unit
        };
        let mut weight = vec![Lanes::default(); blocks * width * ACCUMULATORS];
        let mut laid_out_bias = vec![Lanes::default(); blocks * ACCUMULATORS];
        for b in 0..blocks {
            for (v, lanes) in laid_out_bias[b * ACCUMULATORS..][..ACCUMULATORS]
                .iter_mut()
                .enumerate()
            {
                for (lane, w) in lanes.0.iter_mut().enumerate() {
                    *w = bias[row(b, v, lane)];
                }
            }
            for i in 0..width {
                let vectors = &mut weight[(b * width + i) * ACCUMULATORS..][..ACCUMULATORS];
                for (v, lanes) in vectors.iter_mut().enumerate() {
                    for (lane, w) in lanes.0.iter_mut().enumerate() {
                        let r = row(b, v, lane);
                        *w = if i < inputs {
                            weight_ih[r * inputs + i]
                        } else {
                            weight_hh[r * hidden + i - inputs]
                        };
                    }
                }
            }
        }
        Lstm {
            weight,
            bias: laid_out_bias,
        }
    }
}

/// `values` in vectors, zero past the end up to `len` floats.
fn lanes_of(values: &[f32], len: usize) -> Vec<Lanes> {
    let mut lanes = vec![Lanes::default(); len.div_ceil(LANES)];
    for (i, v) in values.iter().enumerate() {
        lanes[i / LANES].0[i % LANES] = *v;
    }
    lanes
}
