//! The data channel's messages, without I/O.
//!
//! # From the page
//!
//! | message | meaning |
//! |---|---|
//! | `{"type": "text", "text": "…"}` | the user typed this: it enters the pipeline as a final transcription |
//! | `{"type": "mute", "muted": true}` | stop (or resume) listening to the microphone |
//! | `ping…` (plain text) | keep-alive (Pipecat clients send one a second) |
//!
//! Pipecat's clients are understood too: a message labelled `rtvi-ai` is
//! RTVI (read by [`crate::transport::rtvi`]), and `{"type": "signalling",
//! "message": {"type": "trackStatus", "receiver_index": 0, "enabled":
//! false}}` mutes the microphone. A message over [`MAX_MESSAGE_BYTES`] is
//! refused unread.
//!
//! # To the page
//!
//! Until the page says RTVI's `client-ready`: every pipeline event, exactly
//! as `voxpipe run --events` prints it (see [`crate::events`]): `{"t_ms":
//! …, "event": "…", …fields}`, plus `turn_latency` (see
//! [`crate::metrics::TurnLatency`]). After it: the same events as RTVI
//! messages (see [`crate::transport::rtvi`]), and nothing else. (A session
//! started by a restart of an ended call's connection speaks RTVI from the
//! page's first keep-alive or RTVI message instead: see
//! [`RtviSession::resumed`](crate::transport::rtvi::RtviSession::resumed).) When the
//! session ends, Pipecat's `{"type": "signalling", "message": {"type":
//! "peerLeft"}}` tells a Pipecat client to hang up.

use serde::Deserialize;
use serde_json::Value;

use crate::transport::rtvi::{Rejected, RtviInbound, is_rtvi, parse_rtvi};

/// The longest text input accepted, in bytes.
pub const MAX_TEXT_BYTES: usize = 4_096;

/// The longest message read, in bytes (client-js refuses to send more
/// than 64 KiB too).
pub const MAX_MESSAGE_BYTES: usize = 65_536;

/// What a message from the page asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// The user typed this.
    Text(String),
    /// Stop (`true`) or resume listening to the microphone.
    Mute(bool),
    /// A keep-alive.
    Ping,
    /// An RTVI message, or why it cannot be used (answered to the client).
    Rtvi(Result<RtviInbound, Rejected>),
    /// A well-formed message with nothing to do here.
    Ignored,
}

/// Why a message from the page was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// Neither a keep-alive nor JSON.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// A message over [`MAX_MESSAGE_BYTES`].
    #[error("message of {0} bytes is over the limit of {MAX_MESSAGE_BYTES}")]
    TooLarge(usize),
    /// JSON of an unknown `type`, or a known one with missing fields.
    #[error("unknown message: {0}")]
    Unknown(String),
    /// Text input over [`MAX_TEXT_BYTES`].
    #[error("text input of {0} bytes is over the limit of {MAX_TEXT_BYTES}")]
    TooLong(usize),
    /// Text input with nothing but white space.
    #[error("empty text input")]
    EmptyText,
}

impl MessageError {
    /// A short stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            MessageError::NotJson(_) => "not_json",
            MessageError::TooLarge(_) => "message_too_large",
            MessageError::Unknown(_) => "unknown_message",
            MessageError::TooLong(_) => "text_too_long",
            MessageError::EmptyText => "empty_text",
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum Inbound {
    #[serde(rename = "text")]
    Text { text: String },
    #[serde(rename = "mute")]
    Mute { muted: bool },
    #[serde(rename = "signalling")]
    Signalling { message: Signalling },
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum Signalling {
    #[serde(rename = "trackStatus")]
    TrackStatus { receiver_index: u32, enabled: bool },
    #[serde(other)]
    Other,
}

/// The receiver index Pipecat clients give the microphone.
const MICROPHONE_RECEIVER: u32 = 0;

/// Reads one message from the page.
pub fn parse_client_message(data: &[u8]) -> Result<ClientMessage, MessageError> {
    if data.len() > MAX_MESSAGE_BYTES {
        return Err(MessageError::TooLarge(data.len()));
    }
    let text = String::from_utf8_lossy(data);
    if text.starts_with("ping") {
        return Ok(ClientMessage::Ping);
    }
    let value: Value =
        serde_json::from_str(&text).map_err(|e| MessageError::NotJson(e.to_string()))?;
    if is_rtvi(&value) {
        return Ok(ClientMessage::Rtvi(parse_rtvi(&value)));
    }
    let message = match Inbound::deserialize(&value) {
        Ok(Inbound::Text { text }) => return text_input(text),
        Ok(Inbound::Mute { muted }) => ClientMessage::Mute(muted),
        Ok(Inbound::Signalling {
            message:
                Signalling::TrackStatus {
                    receiver_index: MICROPHONE_RECEIVER,
                    enabled,
                },
        }) => ClientMessage::Mute(!enabled),
        Ok(Inbound::Signalling { .. }) => ClientMessage::Ignored,
        Err(e) => return Err(MessageError::Unknown(e.to_string())),
    };
    Ok(message)
}

/// Checks typed text: within [`MAX_TEXT_BYTES`], not blank; trimmed.
pub fn text_input(text: String) -> Result<ClientMessage, MessageError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(MessageError::TooLong(text.len()));
    }
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(MessageError::EmptyText);
    }
    Ok(ClientMessage::Text(trimmed.to_owned()))
}

/// Pipecat's message telling a client the bot has left.
pub fn peer_left() -> String {
    serde_json::json!({"type": "signalling", "message": {"type": "peerLeft"}}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::rtvi::RtviRequest;

    fn parse(s: &str) -> Result<ClientMessage, MessageError> {
        parse_client_message(s.as_bytes())
    }

    #[test]
    fn voxpipe_messages() {
        assert_eq!(
            parse(r#"{"type":"text","text":"  hello there "}"#),
            Ok(ClientMessage::Text("hello there".into()))
        );
        assert_eq!(
            parse(r#"{"type":"mute","muted":true}"#),
            Ok(ClientMessage::Mute(true))
        );
        assert_eq!(parse("ping: 1712345678"), Ok(ClientMessage::Ping));
    }

    #[test]
    fn pipecat_messages() {
        assert_eq!(
            parse(
                r#"{"type":"signalling","message":{"type":"trackStatus","receiver_index":0,"enabled":false}}"#
            ),
            Ok(ClientMessage::Mute(true))
        );
        assert_eq!(
            parse(
                r#"{"type":"signalling","message":{"type":"trackStatus","receiver_index":1,"enabled":false}}"#
            ),
            Ok(ClientMessage::Ignored),
            "the camera is not the microphone"
        );
        assert!(matches!(
            parse(
                r#"{"label":"rtvi-ai","type":"send-text","id":"1","data":{"content":"hi","options":{"run_immediately":true}}}"#
            ),
            Ok(ClientMessage::Rtvi(Ok(_)))
        ));
        assert!(
            matches!(
                parse(r#"{"label":"rtvi-ai","type":"client-ready","id":"2","data":{}}"#),
                Ok(ClientMessage::Rtvi(Ok(RtviInbound { id: Some(id), request: RtviRequest::ClientReady { version: None, .. } }))) if id == "2"
            ),
            "client-ready without a version: ready all the same"
        );
    }

    #[test]
    fn bad_messages_are_errors_with_a_kind() {
        assert_eq!(parse("hello").unwrap_err().kind(), "not_json");
        assert_eq!(
            parse(r#"{"type":"dance"}"#).unwrap_err().kind(),
            "unknown_message"
        );
        assert_eq!(
            parse(r#"{"type":"mute"}"#).unwrap_err().kind(),
            "unknown_message"
        );
        assert_eq!(
            parse(r#"{"type":"text","text":"  "}"#),
            Err(MessageError::EmptyText)
        );
        let long = format!(r#"{{"type":"text","text":"{}"}}"#, "a".repeat(5_000));
        assert_eq!(parse(&long), Err(MessageError::TooLong(5_000)));
        assert!(parse_client_message(&[0xff, 0xfe]).is_err());
        let huge = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert_eq!(
            parse_client_message(&huge).unwrap_err().kind(),
            "message_too_large"
        );
    }

    #[test]
    fn peer_left_is_pipecat_signalling() {
        let v: Value = serde_json::from_str(&peer_left()).unwrap_or_default();
        assert_eq!(v["message"]["type"], "peerLeft");
    }
}
