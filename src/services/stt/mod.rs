//! The STT service: `[[processor]] type = "stt"`.
//!
//! - `provider = "deepgram"`: live transcription over a WebSocket
//!   ([`StreamingStt`]), interim and final results as the user speaks,
//!   reconnection that keeps the utterance in flight.
//! - `provider = "openai"`: OpenAI-compatible `/audio/transcriptions`
//!   ([`SegmentedStt`]), one request per VAD-bounded utterance.
//!
//! Both push `InterimTranscription` and `Transcription` frames downstream
//! (the `interim_transcription` and `transcription` events) and forward
//! every frame they receive, inbound audio included.

mod connection;
mod connection_task;
mod deepgram;
mod openai;
mod segmented;
mod speech;
mod streaming;

pub use deepgram::DeepgramSttConfig;
pub use openai::OpenAiSttConfig;
pub use segmented::{SegmentedStt, UNTRANSCRIBED};
pub use streaming::StreamingStt;

// A provider's wire protocol, for the fuzz targets (`fuzz/`).
pub(crate) use deepgram::DeepgramListen;
pub(crate) use speech::StreamingSpeech;
