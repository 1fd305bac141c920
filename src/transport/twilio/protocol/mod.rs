//! The Twilio Media Streams serializer: JSON text messages to typed values
//! and back, with no I/O. What each message means at a point of the stream
//! is the state machine's business (`stream`), not this module's.
//!
//! Twilio sends, in order: `connected`, `start` (once), then `media` every
//! 20 ms for as long as the call lasts (silence included), `dtmf` when the
//! caller presses a key, `mark` when audio we sent before a mark has played
//! (or was dropped by a `clear`), and `stop` when the stream ends. Counters
//! (`chunk`, `timestamp`) are decimal strings; numbers are accepted too.
//! Fields this module does not use (`sequenceNumber` among them) are
//! ignored, so that Twilio can add some.
//!
//! We send `media` (base64 mu-law, 8 kHz mono, no header), `mark` and
//! `clear`, each naming the `streamSid`.
//!
//! | file | what |
//! |---|---|
//! | `inbound` | what Twilio sends, as typed values |
//! | `error` | [`ProtocolError`]: what can be wrong with a message |
//! | `wire` | the JSON shapes serde reads, borrowed from the message |
//! | `parse` | [`parse_inbound`]: one message's shape to a typed, checked value |
//! | `outbound` | the messages we send: `media`, `mark`, `clear` |

mod error;
mod inbound;
mod outbound;
mod parse;
mod wire;

pub use error::ProtocolError;
pub use inbound::{
    InboundEvent, MULAW_ENCODING, Media, MediaFormat, StreamStart, TWILIO_SAMPLE_RATE, Track,
};
pub use outbound::{MediaMessages, clear_message, mark_message};
pub use parse::parse_inbound;
