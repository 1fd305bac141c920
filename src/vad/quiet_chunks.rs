//! [`QuietChunks`]: the chunks the analyzer has not scored yet because
//! their volume alone decided them.
//!
//! A chunk is speaking only if the model is confident **and** the smoothed
//! volume reaches `min_volume`; while the volume is below that, the chunk
//! is not speaking whatever the model would say, and the analyzer's state
//! moves as it would for any non-speaking chunk. Running the model then
//! only advances its recurrent state (and, for Pipecat 1.14's resets, says
//! whether the chunk was clear non-speech). So the analyzer keeps such
//! chunks here instead, with whether it was quiet before each, and
//! scores them in order, with the model's state resets, the moment a chunk
//! comes that the model must decide. The model then sees exactly the
//! stream it would have seen, and every decision is the one it would have
//! made, at a fraction of the cost in a call's pauses (a caller is quiet
//! most of the time the bot speaks).
//!
//! Only the latest [`KEPT_SECS`] are kept: after a longer quiet stretch the
//! older chunks are never scored, the model starts from a fresh state
//! before the kept ones (as Pipecat 1.14 resets it in clear non-speech,
//! see `model_reset`), and only then can a decision differ from scoring
//! every chunk. Scoring never exceeds one run of the model per chunk.

use std::collections::VecDeque;

/// How much quiet audio is kept to score later: as far back as an onset is
/// ever placed (`MAX_ONSET_LOOKBACK_SECS`), so the chunks that can move a
/// start are always scored.
pub(crate) const KEPT_SECS: f64 = super::onsets::MAX_ONSET_LOOKBACK_SECS;

/// Quiet chunks not scored yet, oldest first. See the module docs.
#[derive(Debug)]
pub(crate) struct QuietChunks {
    chunk: usize,
    capacity: usize,
    samples: VecDeque<i16>,
    /// For each kept chunk: whether the analyzer was quiet before it.
    quiet_before: VecDeque<bool>,
    /// Position of the oldest kept chunk.
    first: u64,
    /// Whether older chunks of this stretch were let go unscored.
    overflowed: bool,
}

/// A stretch of quiet chunks to score, handed back by [`QuietChunks::take`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QuietStretch {
    /// Position of its first kept chunk.
    pub(crate) first: u64,
    /// Chunks before it were let go: the model must start afresh.
    pub(crate) overflowed: bool,
}

impl QuietChunks {
    /// Room for the latest [`KEPT_SECS`] of chunks of `chunk` samples at
    /// `rate`.
    pub(crate) fn new(rate: u32, chunk: usize) -> Self {
        let chunk = chunk.max(1);
        let capacity = (KEPT_SECS * f64::from(rate) / chunk as f64).ceil() as usize;
        QuietChunks {
            chunk,
            capacity: capacity.max(1),
            samples: VecDeque::new(),
            quiet_before: VecDeque::new(),
            first: 0,
            overflowed: false,
        }
    }

    /// Whether nothing waits to be scored.
    pub(crate) fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Keeps `chunk`, which starts at `start`, the analyzer `quiet_before`
    /// it or not. Returns whether the analyzer was quiet before the oldest
    /// kept chunk when that had to go (it will never be scored).
    pub(crate) fn push(&mut self, start: u64, chunk: &[i16], quiet_before: bool) -> Option<bool> {
        if self.samples.is_empty() {
            self.first = start;
        }
        self.samples.extend(chunk.iter().copied());
        // Chunks are whole; a short one is padded as the model pads it.
        let padding = self.chunk.saturating_sub(chunk.len());
        self.samples.extend(std::iter::repeat_n(0, padding));
        self.quiet_before.push_back(quiet_before);
        if self.quiet_before.len() > self.capacity {
            self.samples.drain(..self.chunk);
            self.first += self.chunk as u64;
            self.overflowed = true;
            return self.quiet_before.pop_front();
        }
        None
    }

    /// Moves the kept chunks' samples into `samples` and whether the
    /// analyzer was quiet before each into `quiet_before` (both cleared
    /// first), and forgets them.
    pub(crate) fn take(
        &mut self,
        samples: &mut Vec<i16>,
        quiet_before: &mut Vec<bool>,
    ) -> QuietStretch {
        samples.clear();
        samples.extend(self.samples.drain(..));
        quiet_before.clear();
        quiet_before.extend(self.quiet_before.drain(..));
        let stretch = QuietStretch {
            first: self.first,
            overflowed: self.overflowed,
        };
        self.overflowed = false;
        stretch
    }

    /// Forgets everything kept.
    pub(crate) fn clear(&mut self) {
        self.samples.clear();
        self.quiet_before.clear();
        self.overflowed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_half_second_in_order() {
        // 16 chunks of 512 samples at 16 kHz are 0.512 s.
        let mut quiet = QuietChunks::new(16_000, 512);
        let (mut out, mut quiet_before) = (Vec::new(), Vec::new());
        for i in 0..16u64 {
            assert_eq!(quiet.push(i * 512, &[i as i16; 512], i > 0), None);
        }
        assert_eq!(quiet.push(16 * 512, &[16; 512], true), Some(false));
        let stretch = quiet.take(&mut out, &mut quiet_before);
        assert_eq!(
            stretch,
            QuietStretch {
                first: 512,
                overflowed: true
            }
        );
        assert_eq!(out.len(), 16 * 512);
        assert_eq!((out[0], out[out.len() - 1]), (1, 16));
        assert_eq!(quiet_before, [true; 16]);
        assert!(quiet.is_empty());
        // A new stretch starts clean.
        assert_eq!(quiet.push(40 * 512, &[7; 100], false), None);
        let stretch = quiet.take(&mut out, &mut quiet_before);
        assert_eq!(
            stretch,
            QuietStretch {
                first: 40 * 512,
                overflowed: false
            }
        );
        assert_eq!(out.len(), 512, "a short chunk is padded");
        assert_eq!(quiet_before, [false]);
    }
}
