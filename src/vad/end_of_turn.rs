//! A learned end-of-turn model: given the audio of the user's turn so far,
//! how likely the user is done speaking.
//!
//! The VAD's short stop says the user went quiet; a model like Smart Turn
//! says whether the quiet ends the turn or is a hesitation. The decision
//! that combines the two (and the transcript) lives with the turn logic;
//! this trait is only the model, sans-IO and clock-free like
//! [`VoiceModel`](super::VoiceModel).

/// Scores a turn's audio for completeness.
pub trait EndOfTurnModel: Send {
    /// The rate, in Hz, of the audio [`end_of_turn_probability`] expects
    /// (Smart Turn: 16 kHz).
    ///
    /// [`end_of_turn_probability`]: EndOfTurnModel::end_of_turn_probability
    fn sample_rate(&self) -> u32;

    /// The probability, from 0 to 1, that the turn whose audio is `turn`
    /// (mono PCM at [`sample_rate`](EndOfTurnModel::sample_rate), oldest
    /// first, ending at the moment of the decision) is complete. A model
    /// reads as much of the end as its window holds (Smart Turn: the last
    /// 8 s) and pads a shorter turn as it was trained to.
    ///
    /// Takes tens of milliseconds: callers run it off the audio path.
    fn end_of_turn_probability(&mut self, turn: &[i16]) -> f32;
}
