//! [`TtsWire`]: what the TTS driver needs from a provider's connection.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::frame::SpokenTiming;
use crate::services::ServiceError;

/// Something a provider connection reports.
#[derive(Debug)]
pub(crate) enum WireEvent {
    /// 16-bit little-endian mono PCM of `context`, at the wire's rate.
    Audio { context: String, pcm: Bytes },
    /// Text being spoken in `context`: at `start` from the start of the
    /// context's audio, or (`None`) where its audio now stands.
    Text {
        context: String,
        text: String,
        start: Option<Duration>,
        timing: SpokenTiming,
    },
    /// `context` has produced all its audio.
    Done { context: String },
    /// Something failed: in `context`, or (`None`) the whole connection.
    /// Contexts that cannot go on are reported `Done` as well.
    Failed {
        context: Option<String>,
        error: ServiceError,
    },
}

/// A provider connection that turns text into audio, in contexts (one per
/// response). HTTP providers run one request per sentence; WebSocket
/// providers stream every sentence of a context on one socket.
#[async_trait]
pub(crate) trait TtsWire: Send {
    /// The provider's name, for errors and logs.
    fn provider(&self) -> &'static str;

    /// The rate of the audio it returns, in Hz.
    fn sample_rate(&self) -> u32;

    /// Whether the provider ends a context once its audio pauses (Cartesia's
    /// expire a second after their last audio), so that text coming after
    /// a tool call needs a context of its own. Others keep one context per
    /// response: ElevenLabs' sockets allow only five open contexts.
    fn contexts_expire(&self) -> bool {
        false
    }

    /// Gets ready before the first text (opens a socket, for instance), so
    /// that the first answer does not wait for it.
    async fn warm_up(&mut self) -> Result<(), ServiceError> {
        Ok(())
    }

    /// Queues a sentence of `context` for synthesis.
    async fn send_text(&mut self, context: &str, text: &str) -> Result<(), ServiceError>;

    /// No more text is coming for `context`; it reports `Done` once all its
    /// audio has come.
    async fn finish(&mut self, context: &str) -> Result<(), ServiceError>;

    /// Nothing more of `context` is wanted (an interruption).
    async fn cancel(&mut self, context: &str);

    /// The next event; pending for ever when there is nothing to do.
    ///
    /// # Cancel safety
    /// Must be cancel safe: the driver polls it in a `select!`.
    async fn next_event(&mut self) -> WireEvent;

    /// The session ends: close politely.
    async fn close(&mut self) {}
}
