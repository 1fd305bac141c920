//! [`VoiceModel`]: what the VAD needs from a voice activity model.

/// A model that scores fixed-size chunks of one audio stream for speech.
///
/// A model keeps state from chunk to chunk (Silero's LSTM, Earshot's
/// feature history), so one instance serves one stream; [`reset`] starts a
/// new one.
///
/// [`reset`]: VoiceModel::reset
pub trait VoiceModel: Send {
    /// The rate the model's audio must have, in Hz.
    fn sample_rate(&self) -> u32;

    /// Samples per chunk.
    fn chunk_samples(&self) -> usize;

    /// The probability, in `[0, 1]`, that the next chunk of the stream holds
    /// speech. `chunk` should be exactly [`chunk_samples`] long; a shorter
    /// one is padded with silence and extra samples are ignored.
    ///
    /// [`chunk_samples`]: VoiceModel::chunk_samples
    fn voice_confidence(&mut self, chunk: &[i16]) -> f32;

    /// Forgets the stream, as if no audio had been seen.
    fn reset(&mut self);

    /// Switches to audio at `rate`, forgetting the stream; false, and
    /// nothing changed, when the model cannot run at `rate`. By default a
    /// model runs at its one rate.
    fn set_sample_rate(&mut self, rate: u32) -> bool {
        rate == self.sample_rate()
    }

    /// Whether the analyzer should [`reset`] the model in stretches of
    /// clear non-speech, as Pipecat 1.14 does for Silero's recurrent state
    /// (see `model_reset`). Off by default.
    ///
    /// [`reset`]: VoiceModel::reset
    fn resets_in_clear_silence(&self) -> bool {
        false
    }
}
