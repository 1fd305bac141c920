//! [`StreamingSpeech`]: what a live-transcription provider adapter says
//! (where its socket goes, its control messages, how its results parse),
//! and [`SttEvent`], what one result says. Pure: no socket, no clock.

use std::time::Duration;

use crate::services::ServiceError;
use crate::services::websocket::WsTarget;

/// What a result message says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SttEvent {
    /// A transcript of the audio up to `end` (in the socket's stream time).
    Transcript {
        text: String,
        is_final: bool,
        speech_final: bool,
        end: Duration,
    },
}

/// How a provider's live transcription socket is spoken. Pure.
pub(crate) trait StreamingSpeech: Send + Sync + 'static {
    /// The provider's name.
    fn provider(&self) -> &'static str;

    /// Where the socket goes, for 16-bit mono audio at `sample_rate`.
    fn target(&self, sample_rate: u32) -> WsTarget;

    /// The keep-alive message.
    fn keepalive(&self) -> String;

    /// The message asking for final results now, if the provider has one.
    fn finalize(&self) -> Option<String>;

    /// The message asking the provider to finish and close.
    fn close_stream(&self) -> String;

    /// What one text message says.
    fn parse(&self, text: &str) -> Result<Option<SttEvent>, ServiceError>;
}
