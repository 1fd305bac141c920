//! [`RecentChunks`]: what the analyzer remembers of its latest chunks, to
//! place where speech began (see the analyzer's "Boundaries").

use std::collections::VecDeque;

/// How far before the first speaking chunk a start may be placed.
pub const MAX_ONSET_LOOKBACK_SECS: f64 = 0.5;
/// The longest gap inside the speech before a start.
pub const MAX_ONSET_GAP_SECS: f64 = 0.1;

/// One recent chunk.
#[derive(Debug, Clone, Copy)]
struct RecentChunk {
    start: u64,
    /// Scored as voice, or loud.
    onset_like: bool,
}

/// The chunks of the last [`MAX_ONSET_LOOKBACK_SECS`], oldest first.
#[derive(Debug)]
pub(crate) struct RecentChunks {
    recent: VecDeque<RecentChunk>,
    max_recent: usize,
    max_gap_chunks: usize,
}

impl RecentChunks {
    /// Room for chunks of `chunk` samples at `rate`.
    pub(crate) fn new(rate: u32, chunk: usize) -> Self {
        let chunk = chunk.max(1) as f64;
        let rate = f64::from(rate);
        RecentChunks {
            recent: VecDeque::new(),
            max_recent: (MAX_ONSET_LOOKBACK_SECS * rate / chunk).ceil() as usize + 1,
            max_gap_chunks: (MAX_ONSET_GAP_SECS * rate / chunk).ceil() as usize,
        }
    }

    /// Remembers the chunk starting at `start`, onset-like or not.
    pub(crate) fn remember(&mut self, start: u64, onset_like: bool) {
        if self.recent.len() == self.max_recent {
            self.recent.pop_front();
        }
        self.recent.push_back(RecentChunk { start, onset_like });
    }

    /// The chunk starting at `start`, if remembered, was scored as voice
    /// after all (a quiet chunk scored late).
    pub(crate) fn voiced(&mut self, start: u64) {
        if let Some(chunk) = self.recent.iter_mut().find(|c| c.start == start) {
            chunk.onset_like = true;
        }
    }

    /// Forgets every chunk.
    pub(crate) fn clear(&mut self) {
        self.recent.clear();
    }

    /// The earliest onset-like chunk reached from the chunk starting at
    /// `first_speaking` (the latest one remembered) by walking back over
    /// onset-like chunks and short gaps.
    pub(crate) fn onset_before(&self, first_speaking: u64) -> u64 {
        let mut onset = first_speaking;
        let mut gap = 0;
        for chunk in self.recent.iter().rev() {
            if chunk.onset_like {
                onset = chunk.start.min(onset);
                gap = 0;
            } else {
                gap += 1;
                if gap > self.max_gap_chunks {
                    break;
                }
            }
        }
        onset
    }
}
