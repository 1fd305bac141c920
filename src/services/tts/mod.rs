//! The TTS service: `[[processor]] type = "tts"`, one driver for every
//! provider.
//!
//! - `provider = "openai"`: OpenAI-compatible `/audio/speech`, a streamed
//!   request per sentence (raw 24 kHz PCM, resampled to the pipeline).
//! - `provider = "elevenlabs"`: the multi-context WebSocket, with timed
//!   words.
//! - `provider = "cartesia"`: the context WebSocket, with timed words.
//!
//! The driver ([`TtsService`] and its engine) cuts LLM text into sentences
//! as it streams, speaks each at once, pushes `TtsStarted`, audio,
//! `TtsText` (the text actually spoken, timed where the provider times it),
//! a `Ttfb` metric and `TtsStopped` per response, and on an interruption
//! drops the response's queued text and cancels its context at the
//! provider. A failure never repeats audio already produced: a sentence
//! that failed after its audio began is reported, not retried.

mod cartesia;
mod context_socket;
mod elevenlabs;
mod engine;
mod http_wire;
mod openai;
mod responses;
mod sentences;
mod service;
mod wire;
mod ws_speech;
mod ws_wire;

pub use cartesia::CartesiaTtsConfig;
pub use elevenlabs::ElevenLabsTtsConfig;
pub use openai::OpenAiTtsConfig;
pub use sentences::{SentenceSplitter, ends_sentence};
pub use service::TtsService;

// The providers' wire protocols, for the fuzz targets (`fuzz/`).
pub(crate) use cartesia::CartesiaSpeech;
pub(crate) use elevenlabs::ElevenLabsSpeech;
pub(crate) use ws_speech::WsSpeech;
