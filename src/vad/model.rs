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
}
