//! RTVI, the protocol of Pipecat's client SDKs, without I/O.
//!
//! Pipecat's clients (`@pipecat-ai/client-js` and the React, iOS, Android
//! and Python SDKs built on the same protocol) exchange JSON messages
//! `{"label": "rtvi-ai", "type", "id", "data"}` with the bot over the
//! transport's message channel (for WebRTC, the data channel). voxpipe
//! speaks protocol [`PROTOCOL_VERSION`], that of `@pipecat-ai/client-js`
//! 1.13.
//!
//! | file | what |
//! |---|---|
//! | `inbound` | client messages read: [`parse_rtvi`] → [`RtviInbound`] or [`Rejected`] |
//! | `outbound` | voxpipe events → RTVI messages ([`messages_for_event`]; the table of the mapping) |
//! | `session` | [`RtviSession`]: `client-ready`/`bot-ready` (or a resumed session's first keep-alive), pending `client-message` requests and their timeout, the outbox; `session/segments`: the `bot-output` segments, spoken when the bot stops or, for a word-timing TTS and protocol 2, as their words are heard |
//!
//! # From the client
//!
//! | message | what voxpipe does |
//! |---|---|
//! | `client-ready` | answers `bot-ready` (`version`, `about`; a version missing or unreadable is taken as the current protocol); the call's events go out as RTVI from then on |
//! | `send-text` | text input, as if transcribed (`options` are not read: the text always runs at once, and is spoken) |
//! | `client-message` | `session-info` is answered here (`session_id`, `version`); any other type becomes a `ClientRequest` frame, answered by the processor that pushes a `ClientResponse`; unanswered, left to the client's own timeout, as Pipecat does |
//! | `disconnect-bot` | ends the session gracefully (reason `disconnect_bot`) |
//! | `dtmf` | one `Dtmf` frame per key (`buttons`; 2.0's `button` too) |
//! | `llm-function-call-result` | a `ClientToolResult` frame: the result of the LLM's client tool (`[[processor.client_tools]]`) |
//! | anything else | `error-response` with the message's id |
//!
//! # To the client
//!
//! Derived from voxpipe's own events (see `outbound`): one mapping from
//! frames, two encodings.

mod inbound;
mod outbound;
mod session;

pub use inbound::{LABEL, Rejected, RtviInbound, RtviRequest, is_rtvi, parse_rtvi};
pub use outbound::messages_for_event;
pub use session::{
    MAX_BACKLOG, MAX_PENDING, PROTOCOL_VERSION, REQUEST_TIMEOUT, RtviAction, RtviSession,
    SESSION_INFO,
};
