//! What can be wrong with a message from Twilio.

/// A message that could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Not JSON at all.
    #[error("not JSON: {}", json_error(.0))]
    NotJson(serde_json::Error),
    /// JSON, but not the shape of any Twilio message.
    #[error("not a Twilio message: {}", json_error(.0))]
    BadShape(serde_json::Error),
    /// An `event` Twilio does not send.
    #[error("unknown event `{0}`")]
    UnknownEvent(String),
    /// A field the event needs is missing.
    #[error("`{event}` message without `{field}`")]
    MissingField {
        /// The event.
        event: &'static str,
        /// The missing field, as a dotted path.
        field: &'static str,
    },
    /// A field has a value Twilio does not send.
    #[error("`{event}` message: `{field}` {reason}")]
    InvalidField {
        /// The event.
        event: &'static str,
        /// The field, as a dotted path.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The media payload is not base64.
    #[error("media payload is not base64: {0}")]
    BadBase64(base64::DecodeError),
    /// The stream's audio is not mu-law 8 kHz mono.
    #[error(
        "unsupported media format {encoding} at {sample_rate} Hz x{channels}; \
         expected audio/x-mulaw at 8000 Hz mono"
    )]
    UnsupportedFormat {
        /// The encoding given.
        encoding: String,
        /// The rate given.
        sample_rate: u32,
        /// The channels given.
        channels: u16,
    },
}

impl ProtocolError {
    /// A short stable label for metrics and logs, e.g. `bad_base64`.
    pub fn kind(&self) -> &'static str {
        match self {
            ProtocolError::NotJson(_) => "not_json",
            ProtocolError::BadShape(_) => "bad_shape",
            ProtocolError::UnknownEvent(_) => "unknown_event",
            ProtocolError::MissingField { .. } => "missing_field",
            ProtocolError::InvalidField { .. } => "invalid_field",
            ProtocolError::BadBase64(_) => "bad_base64",
            ProtocolError::UnsupportedFormat { .. } => "unsupported_format",
        }
    }
}

/// What the JSON parser says is wrong, cut short: its messages quote the
/// offending value, which may be a whole field of untrusted text.
fn json_error(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.char_indices().nth(120) {
        Some((cut, _)) => format!(
            "{}… at line {} column {}",
            &text[..cut],
            err.line(),
            err.column()
        ),
        None => text,
    }
}

/// At most 64 characters of untrusted text, for messages and logs.
pub(super) fn truncated(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parser_error_quotes_little_of_the_value() {
        let long = "x".repeat(60_000);
        let message = format!(r#"{{"tracks":"{long}"}}"#);
        let Err(err) = serde_json::from_str::<std::collections::HashMap<String, Vec<u8>>>(&message)
        else {
            panic!("not a map of byte lists");
        };
        let shown = ProtocolError::BadShape(err).to_string();
        assert!(shown.len() < 250, "{} bytes: {shown}", shown.len());
        assert!(shown.contains("at line 1 column"), "{shown}");
    }
}
