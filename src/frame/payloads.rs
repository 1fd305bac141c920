//! The structured payloads of [`FrameBody`](super::FrameBody) variants,
//! other than audio.

use std::sync::Arc;
use std::time::Duration;

/// Session parameters every processor learns at start.
#[derive(Debug, Clone, PartialEq)]
pub struct StartFrame {
    /// The pipeline's internal sample rate.
    pub sample_rate: u32,
    /// Whether the user may interrupt the bot.
    pub allow_interruptions: bool,
    /// The session's id (the call id).
    pub session_id: Arc<str>,
}

/// An error raised by a processor or a service.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorFrame {
    /// The processor that raised it.
    pub processor: Arc<str>,
    /// What went wrong, for people.
    pub message: String,
    /// True when the session cannot go on; the session then ends.
    pub fatal: bool,
    /// The remote service involved, e.g. `openai`, if any.
    pub provider: Option<String>,
    /// The HTTP (or WebSocket close) status, if any.
    pub status: Option<u16>,
}

/// A transcription of user speech.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptionFrame {
    /// The text.
    pub text: String,
    /// The user who spoke, if known.
    pub user_id: Option<String>,
    /// Language code, if the service reports one.
    pub language: Option<String>,
    /// Session time at which the transcript arrived.
    pub at: Duration,
}

/// Text the bot is speaking, placed in the audio the TTS produces: what the
/// assistant aggregator keeps of a turn, and (with word timing) how much of
/// it an interruption let through.
#[derive(Debug, Clone, PartialEq)]
pub struct SpokenText {
    /// One word, or a whole sentence when the provider gives no word timing.
    pub text: String,
    /// Where its audio starts, from the start of the response's audio.
    pub start: Duration,
    /// How `text` relates to the audio.
    pub timing: SpokenTiming,
}

/// How precisely a [`SpokenText`] is placed in the audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpokenTiming {
    /// A word the provider timed: it starts at `start`.
    Word,
    /// A sentence: it starts at `start` and spreads over the audio until the
    /// next spoken text (or the end of the response).
    Sentence,
}

/// A measurement reported by the engine or a service.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "metric", rename_all = "snake_case")]
#[non_exhaustive]
pub enum MetricsData {
    /// Time a processor spent in `process`, per frame, over the session
    /// (the percentiles of a sample: one call in eight is timed).
    ProcessingTime {
        /// Processor name.
        processor: String,
        /// Frames processed.
        frames: u64,
        /// Median, microseconds.
        p50_us: f64,
        /// 99th percentile, microseconds.
        p99_us: f64,
    },
    /// Time from the transport input to the transport output, per frame.
    Transit {
        /// Frames measured.
        frames: u64,
        /// Median, microseconds.
        p50_us: f64,
        /// 99th percentile, microseconds.
        p99_us: f64,
    },
    /// Time to first byte (or token) of a service response.
    Ttfb {
        /// Processor name.
        processor: String,
        /// Milliseconds.
        value_ms: f64,
    },
}

/// A request from the client app (an RTVI `client-message`): a type the
/// app chose and its data. The transport answers it with an error when no
/// processor has within its deadline.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRequest {
    /// The client's message id, which the answer carries back.
    pub id: Arc<str>,
    /// What is asked (RTVI's `t`).
    pub kind: String,
    /// Its data (RTVI's `d`), `null` when none.
    pub data: Arc<serde_json::Value>,
}

/// The answer to a [`ClientRequest`].
#[derive(Debug, Clone, PartialEq)]
pub struct ClientResponse {
    /// The request's id.
    pub id: Arc<str>,
    /// The request's type (RTVI's `t`).
    pub kind: String,
    /// The data to return (RTVI `server-response`), or why the request
    /// failed (RTVI `error-response`).
    pub result: Result<Arc<serde_json::Value>, String>,
}

impl ClientResponse {
    /// Answers `request` with `data`.
    pub fn answer(request: &ClientRequest, data: serde_json::Value) -> Self {
        ClientResponse {
            id: Arc::clone(&request.id),
            kind: request.kind.clone(),
            result: Ok(Arc::new(data)),
        }
    }
}
