//! Voice activity detection: when the user speaks, and when the bot should
//! yield.
//!
//! - [`VoiceModel`]: a model scoring chunks of audio for speech, with two
//!   implementations: [`SileroVad`] (Silero VAD v6, a hand-written forward
//!   pass over the shipped ONNX weights) and [`EarshotVad`] (the pure-Rust
//!   `earshot` crate, about a tenth of the cost).
//! - [`VadAnalyzer`]: Pipecat 1.14's VAD state machine over a model
//!   (confidence, start and stop windows, a minimum volume measured as
//!   Pipecat measures it: the loudness of the last 400 ms, see
//!   [`RollingVolume`]), with Pipecat 1.14's resets of Silero's state in
//!   clear non-speech, timed by sample counts, reporting where speech began
//!   and ended.
//! - [`ModelInput`]: inbound frames converted to the model's rate, and
//!   positions mapped back to session time; [`FrameVad`] puts the two
//!   together and analyses audio from an 8 kHz source at 8 kHz
//!   ([`NarrowbandDetector`]).
//! - [`BargeIn`]: when the user's speech interrupts the bot.
//! - [`TurnEnd`]: when the user's turn is over, from the VAD's stop, the
//!   silence, the transcript and an [`EndOfTurnModel`]'s probability.
//!
//! All of it is sans-IO: audio in, decisions out, no clock read. The `vad`
//! processor wires it into a pipeline.
//!
//! # Where voxpipe differs from Pipecat 1.14
//!
//! - The default `stop_secs` is 0.8 s (Pipecat's is 0.2 s, which Pipecat
//!   pairs with its Smart Turn analyser); the other defaults are Pipecat's:
//!   `confidence` 0.7, `start_secs` 0.2, `min_volume` 0.6.
//! - Pipecat checks its start and stop counts once per buffer of audio,
//!   voxpipe once per chunk (the same with 20 ms frames and Silero, see
//!   [`VadAnalyzer`]).
//! - Pipecat's speaking frames carry no times; voxpipe's carry where the
//!   speech began and ended.
//! - Pipecat analyses at the transport's input rate; voxpipe also
//!   recognises 8 kHz audio a transport has upsampled ([`FrameVad`]).

//! # Cost
//!
//! A Silero chunk (32 ms of audio) takes tens of microseconds, so the
//! processor runs the model inline on the runtime: far below the
//! millisecond at which it would have to move to a thread of its own. And
//! it runs only on chunks it must decide: while the volume alone says "not
//! speaking", chunks wait unscored and are scored in order only when a
//! louder chunk comes, so every decision is unchanged (see
//! `quiet_chunks`); a caller who listens while the bot speaks costs little.

mod analyzer;
mod barge_in;
mod earshot;
mod end_of_turn;
mod error;
mod frames;
mod k_weighting;
mod model;
mod model_reset;
mod narrowband;
mod onnx;
mod onsets;
mod quiet_chunks;
mod silero;
mod smart_turn;
mod timeline;
mod turn_end;
mod volume;

/// The analyzer's parameters: plain data that frames carry, so it is
/// declared in the frame layer.
pub use crate::frame::VadParams;
pub use analyzer::{Speech, VadAnalyzer, VadEvent, VadState};
pub use barge_in::BargeIn;
pub use earshot::EarshotVad;
pub use end_of_turn::EndOfTurnModel;
pub use error::VadError;
pub use frames::FrameVad;
pub use model::VoiceModel;
pub use narrowband::{Band, NarrowbandDetector};
pub use onsets::{MAX_ONSET_GAP_SECS, MAX_ONSET_LOOKBACK_SECS};
pub use silero::{SileroModel, SileroVad};
pub use smart_turn::SmartTurnModel;
pub use timeline::ModelInput;
pub use turn_end::{TurnDecision, TurnEnd, TurnEndParams, ends_mid_phrase};
pub use volume::{RollingVolume, SmoothedVolume, VOLUME_WINDOW_SECS};
