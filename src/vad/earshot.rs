//! Earshot: a small pure-Rust voice activity model (crate `earshot`), about
//! a tenth of Silero's cost, for deployments where every microsecond
//! counts. It runs on 16 ms chunks at 16 kHz only; the `vad` processor
//! resamples other rates.

use super::VoiceModel;

/// Samples per Earshot chunk: 16 ms at 16 kHz.
const CHUNK: usize = 256;

/// Earshot for one audio stream.
pub struct EarshotVad {
    detector: Box<earshot::Detector>,
}

impl std::fmt::Debug for EarshotVad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EarshotVad").finish_non_exhaustive()
    }
}

impl EarshotVad {
    /// The only rate Earshot runs at.
    pub const SAMPLE_RATE: u32 = 16_000;

    /// A detector for a new stream.
    pub fn new() -> Self {
        EarshotVad {
            // About 8 KiB of state: built on the heap, not the stack.
            detector: earshot::Detector::default_boxed(),
        }
    }
}

impl Default for EarshotVad {
    fn default() -> Self {
        Self::new()
    }
}

impl VoiceModel for EarshotVad {
    fn sample_rate(&self) -> u32 {
        Self::SAMPLE_RATE
    }

    fn chunk_samples(&self) -> usize {
        CHUNK
    }

    fn voice_confidence(&mut self, chunk: &[i16]) -> f32 {
        if chunk.len() == CHUNK {
            return self.detector.predict_i16(chunk);
        }
        let mut padded = [0i16; CHUNK];
        let n = chunk.len().min(CHUNK);
        padded[..n].copy_from_slice(&chunk[..n]);
        self.detector.predict_i16(&padded)
    }

    fn reset(&mut self) {
        self.detector.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_chunks_of_any_length_without_panicking() {
        let mut vad = EarshotVad::new();
        for len in [0, 100, CHUNK, 300] {
            let score = vad.voice_confidence(&vec![1000; len]);
            assert!((0.0..=1.0).contains(&score), "{score}");
        }
    }
}
