//! [`ModelResets`]: Pipecat 1.14's resets of Silero's recurrent state in
//! clear non-speech (`pipecat.audio.vad.silero`, `_maybe_reset_model`).
//!
//! Non-speech (music; long silence or noise, strongly at 8 kHz) shifts the
//! LSTM's state so that the model under-reports the speech that follows. A
//! reset becomes due after 2 s of audio since the last one, and happens
//! after the first chunk where the analyzer is quiet (its state before the
//! chunk) and the latest 5 chunks (160 ms) all scored below 0.1, far below
//! any speech threshold. Time counts chunks of audio, never the clock.

/// Audio between resets.
const INTERVAL_SECS: f64 = 2.0;
/// A chunk below this confidence is clear non-speech.
const MAX_CONFIDENCE: f32 = 0.1;
/// Clear non-speech chunks in a row before a reset.
const LOW_CONFIDENCE_CHUNKS: u32 = 5;

/// When to reset a model's state. See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct ModelResets {
    chunk: u64,
    rate: f64,
    chunks_since_reset: u64,
    low_confidence_chunks: u32,
}

impl ModelResets {
    /// Resets for a model scoring chunks of `chunk` samples at `rate`.
    pub(crate) fn new(rate: u32, chunk: usize) -> Self {
        ModelResets {
            chunk: chunk as u64,
            rate: f64::from(rate),
            chunks_since_reset: 0,
            low_confidence_chunks: 0,
        }
    }

    /// After a chunk scored `confidence`, with the analyzer `quiet` before
    /// it: whether to reset the model now (before the next chunk).
    pub(crate) fn after_chunk(&mut self, confidence: f32, quiet: bool) -> bool {
        self.chunks_since_reset += 1;
        if confidence < MAX_CONFIDENCE {
            self.low_confidence_chunks += 1;
        } else {
            self.low_confidence_chunks = 0;
        }
        // Pipecat compares `windows * chunk_samples >= 2.0 * rate`.
        let due = (self.chunks_since_reset * self.chunk) as f64 >= INTERVAL_SECS * self.rate;
        if due && quiet && self.low_confidence_chunks >= LOW_CONFIDENCE_CHUNKS {
            self.chunks_since_reset = 0;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_after_two_seconds_and_only_in_clear_quiet() {
        let mut resets = ModelResets::new(16_000, 512);
        // 62 chunks are 1.984 s: not due yet.
        for _ in 0..62 {
            assert!(!resets.after_chunk(0.0, true));
        }
        // Due, but the analyzer is not quiet.
        assert!(!resets.after_chunk(0.0, false));
        assert!(resets.after_chunk(0.0, true));
        // Due again 2 s later, but a chunk at 0.1 breaks the run of five.
        for _ in 0..62 {
            assert!(!resets.after_chunk(0.0, true));
        }
        assert!(!resets.after_chunk(0.1, true));
        for _ in 0..4 {
            assert!(!resets.after_chunk(0.05, true));
        }
        assert!(resets.after_chunk(0.05, true));
    }
}
