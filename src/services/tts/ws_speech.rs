//! [`WsSpeech`]: what a streaming TTS provider adapter says over its
//! socket (ElevenLabs multi-context, Cartesia contexts). Pure: messages in
//! and out as text, no socket, no clock.

use crate::services::ServiceError;
use crate::services::websocket::WsTarget;

use super::wire::WireEvent;

/// How a provider's streaming TTS socket is spoken. Pure: messages in and
/// out as text.
pub(crate) trait WsSpeech: Send + 'static {
    /// The provider's name.
    fn provider(&self) -> &'static str;

    /// The rate of the PCM it sends back.
    fn sample_rate(&self) -> u32;

    /// Whether a context expires when its audio pauses (see
    /// [`TtsWire::contexts_expire`](super::wire::TtsWire::contexts_expire)).
    fn contexts_expire(&self) -> bool {
        false
    }

    /// Whether the close of a finished context must wait until audio has
    /// come after its last text (a server that drops a context closed
    /// before its synthesis started: see `context_socket`, "Holding the
    /// close").
    fn close_waits_for_audio(&self) -> bool {
        false
    }

    /// How many characters (whitespace aside) of `context`'s text its
    /// audio so far was aligned with, when the provider says: the held
    /// close goes once audio of the last text came (see `context_socket`).
    /// `None` when no alignment came (then any audio after the last text
    /// releases it).
    fn aligned_chars(&self, _context: &str) -> Option<usize> {
        None
    }

    /// Where the socket goes.
    fn target(&self) -> WsTarget;

    /// The messages sending `text` to `context`; `first` when the context
    /// is new on this socket.
    fn text(&self, context: &str, text: &str, first: bool) -> Vec<String>;

    /// The messages saying no more text is coming for `context`.
    fn finish(&self, context: &str) -> Vec<String>;

    /// The messages dropping `context` at once.
    fn cancel(&self, context: &str) -> Vec<String>;

    /// The message closing the socket politely, if the provider has one.
    fn close(&self) -> Option<String>;

    /// What one text message from the provider says.
    fn parse(&mut self, message: &str) -> Result<Vec<WireEvent>, ServiceError>;

    /// A new socket: forget per-socket parsing state.
    fn reset(&mut self);
}

/// The characters of `text` an alignment counts: whitespace aside.
pub(crate) fn counted_chars(text: &str) -> usize {
    text.chars().filter(|c| !c.is_whitespace()).count()
}
