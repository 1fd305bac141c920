//! Twilio Media Streams: phone calls over a WebSocket.
//!
//! A call reaches the server twice. First Twilio's voice webhook asks what
//! to do with the call, and the answer ([`twiml::connect_stream`]) connects
//! it to a bidirectional stream; the webhook is signed
//! ([`signature::verify`]). Then Twilio opens the stream's WebSocket and
//! sends JSON messages ([`protocol`]): `connected`, `start`, then caller
//! audio every 20 ms as mu-law at 8 kHz.
//!
//! | file | what |
//! |---|---|
//! | [`protocol`] | the serializer: messages to typed values and back (sans-IO) |
//! | [`codec`] | mu-law 8 kHz ↔ PCM at the pipeline rate, in 20 ms frames |
//! | [`stream`] | the inbound state machine: what each message means now (sans-IO) |
//! | [`marks`] | playback confirmations we wait for (sans-IO) |
//! | `call` | the handshake, then the session's transport ends |
//! | `input` | `transport.input`: the reader task pushing audio and DTMF |
//! | `sink` | `transport.output`'s sink: `media`, `mark`, `clear` |
//! | [`socket`] | the stream over the server's WebSocket: limits, the writer task, hang-up, close codes |
//! | [`rest`] | the Calls REST resource: placing a call, ending one |
//! | [`signature`], [`twiml`] | the voice webhook (sans-IO) |
//! | [`stream_token`] | the per-call token TwiML hands the stream (sans-IO) |
//!
//! Bad input never ends the server and never loses turns: a message that
//! cannot be used is skipped and logged with its reason; a stream that
//! cannot go on (a message over the size limit, an undecodable format, a
//! dropped socket, silence past the idle timeout) ends its own session
//! gracefully, so turns in flight complete.

mod call;
pub mod codec;
mod input;
pub mod marks;
pub mod messaging;
pub mod protocol;
pub mod rest;
pub mod signature;
mod sink;
pub mod socket;
pub mod stream;
pub mod stream_token;
pub mod twiml;

pub use call::{AcceptError, CallHandle, CallOptions, START_TIMEOUT, TwilioCall};
pub use input::{StreamEnd, TwilioInput};
pub use rest::{
    CallResource, CreateCall, CreateCallError, EndCall, HangUp, HangUpError, TwilioRest,
};
pub use sink::TwilioSink;
pub use socket::{HangUpTarget, StreamSocket};
