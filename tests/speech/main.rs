//! The tests on synthesised speech (espeak-ng and sox): the VAD, the turn
//! ends and Smart Turn, in one binary. They run the models on audio as fast
//! as it computes, not in real time, so they may share the machine.

#[path = "../support/mod.rs"]
mod support;

mod smart_turn;
mod turn_end_speech;
mod vad_fidelity;
mod vad_pauses;
mod vad_silero;
mod vad_turns;
