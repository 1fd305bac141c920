//! Voice activity detection: when the user speaks, and when the bot should
//! yield.
//!
//! - [`VoiceModel`]: a model scoring chunks of audio for speech, with two
//!   implementations: [`SileroVad`] (Silero VAD v6, a hand-written forward
//!   pass over the shipped ONNX weights) and [`EarshotVad`] (the pure-Rust
//!   `earshot` crate, about a tenth of the cost).
//! - [`VadAnalyzer`]: Pipecat's VAD state machine over a model (confidence,
//!   start and stop windows, a minimum volume measured as Pipecat measures
//!   it), timed by sample counts, reporting where speech began and ended.
//! - [`ModelInput`]: inbound frames converted to the model's rate, and
//!   positions mapped back to session time.
//! - [`BargeIn`]: when the user's speech interrupts the bot.
//! - [`TurnEnd`]: when the user's turn is over, from the VAD's stop, the
//!   silence, the transcript and an [`EndOfTurnModel`]'s probability.
//!
//! All of it is sans-IO: audio in, decisions out, no clock read. The `vad`
//! processor wires it into a pipeline.
//!
//! # Where voxpipe differs from Pipecat
//!
//! - Pipecat's Silero analyzer resets the model's state every 5 s of wall
//!   time, on the belief that memory would grow otherwise. The state is a
//!   fixed `[2, 1, 128]`, so nothing grows; voxpipe resets it once per
//!   session (a fresh model per session), as Silero's own streaming code
//!   does, and never in the middle of an utterance.
//! - Pipecat checks its start and stop counts once per buffer of audio,
//!   voxpipe once per chunk (the same with 20 ms frames, see
//!   [`VadAnalyzer`]).
//! - Pipecat's speaking frames carry no times; voxpipe's carry where the
//!   speech began and ended.
//!
//! # Cost
//!
//! A Silero chunk (32 ms of audio) takes tens of microseconds, so the
//! processor runs the model inline on the runtime: far below the
//! millisecond at which it would have to move to a thread of its own.

mod analyzer;
mod barge_in;
mod earshot;
mod end_of_turn;
mod error;
mod model;
mod onnx;
mod silero;
mod smart_turn;
mod timeline;
mod turn_end;
mod volume;

/// The analyzer's parameters: plain data that frames carry, so it is
/// declared in the frame layer.
pub use crate::frame::VadParams;
pub use analyzer::{
    MAX_ONSET_GAP_SECS, MAX_ONSET_LOOKBACK_SECS, Speech, VadAnalyzer, VadEvent, VadState,
};
pub use barge_in::BargeIn;
pub use earshot::EarshotVad;
pub use end_of_turn::EndOfTurnModel;
pub use error::VadError;
pub use model::VoiceModel;
pub use silero::{SileroModel, SileroVad};
pub use smart_turn::SmartTurnModel;
pub use timeline::ModelInput;
pub use turn_end::{TurnDecision, TurnEnd, TurnEndParams, ends_mid_phrase};
pub use volume::{ChunkVolume, SmoothedVolume};
