//! [`ServiceError`]: what can go wrong talking to a provider.

use std::time::Duration;

use crate::pipeline::ProcessorError;

/// A failure talking to a remote service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The service answered with an error status (on an HTTP request or a
    /// WebSocket handshake).
    #[error("HTTP {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The service's own message, from its error body.
        message: String,
        /// How long the service asked us to wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// Nothing came within the configured time.
    #[error("no {waiting_for} within {after:?}")]
    Timeout {
        /// What was awaited: `response`, `data`, `connection`.
        waiting_for: &'static str,
        /// How long we waited.
        after: Duration,
    },
    /// The service could not be reached.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The HTTP exchange failed (reset connection, bad framing).
    #[error("request failed: {0}")]
    Request(#[source] reqwest::Error),
    /// The WebSocket failed.
    #[error("websocket: {0}")]
    WebSocket(#[source] Box<tokio_tungstenite::tungstenite::Error>),
    /// The service sent something that does not follow its protocol.
    #[error("malformed response: {0}")]
    Protocol(String),
    /// The service reported an error inside a stream that started fine.
    #[error("{0}")]
    Remote(String),
    /// The service reported, inside a stream that started fine, that it
    /// refuses the request as it stands (too long a context, a malformed
    /// request, a 4xx-like code): asking again the same way would be
    /// refused again.
    #[error("{0}")]
    Refused(String),
    /// The service reported, inside a stream that started fine, that it
    /// refuses the credentials (`authentication_error`, `invalid_api_key`,
    /// `permission_error`, a code of 401 or 403): as [`Status`] 401 and
    /// 403, no later request will fare better.
    ///
    /// [`Status`]: ServiceError::Status
    #[error("{0}")]
    CredentialsRefused(String),
    /// The connection closed before the response was complete.
    #[error("connection closed before the response was complete{}", close_reason(*.code, .reason))]
    Closed {
        /// The WebSocket close code, if any.
        code: Option<u16>,
        /// The close reason, if any.
        reason: String,
    },
}

fn close_reason(code: Option<u16>, reason: &str) -> String {
    match (code, reason.is_empty()) {
        (Some(code), false) => format!(" (code {code}: {reason})"),
        (Some(code), true) => format!(" (code {code})"),
        (None, false) => format!(" ({reason})"),
        (None, true) => String::new(),
    }
}

impl ServiceError {
    /// The HTTP status (or WebSocket close code) involved, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            ServiceError::Status { status, .. } => Some(*status),
            ServiceError::Closed { code, .. } => *code,
            ServiceError::Request(e) => e.status().map(|s| s.as_u16()),
            _ => None,
        }
    }

    /// How long the service asked to wait before another try, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ServiceError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Rate limits and server errors: worth another try, as long as nothing
    /// of the response has been used yet.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ServiceError::Status { status, .. } if *status == 429 || *status >= 500)
    }

    /// The credentials were refused: retrying cannot help and no later
    /// request will fare better.
    pub fn is_auth(&self) -> bool {
        match self {
            ServiceError::Status { status, .. } => refuses_credentials(*status),
            ServiceError::CredentialsRefused(_) => true,
            _ => false,
        }
    }

    /// The service refused the request as it stands (see
    /// [`refuses_request`]: bad credentials, a model or language it does
    /// not have, no credit left; or a refusal inside a stream): asking
    /// again the same way will be refused again.
    pub fn is_refusal(&self) -> bool {
        match self {
            ServiceError::Status { status, .. } => refuses_request(*status),
            ServiceError::Refused(_) | ServiceError::CredentialsRefused(_) => true,
            _ => false,
        }
    }

    /// The processor error this becomes, naming `provider`. Refused
    /// credentials end the session (every later request would fail the
    /// same way); anything else fails the current request only.
    pub fn into_processor_error(self, provider: &str) -> ProcessorError {
        let fatal = self.is_auth();
        self.into_error_with(provider, fatal)
    }

    /// The processor error this becomes, naming `provider` and its status;
    /// `fatal` when the session cannot go on.
    pub fn into_error_with(self, provider: &str, fatal: bool) -> ProcessorError {
        let status = self.status();
        let error = if fatal {
            ProcessorError::fatal(self)
        } else {
            ProcessorError::recoverable(self)
        };
        let error = error.with_provider(provider);
        match status {
            Some(status) => error.with_status(status),
            None => error,
        }
    }
}

/// Whether a status refuses the request as it stands, so that asking
/// again the same way would be refused again: a 4xx other than 408, 409
/// and 429. One rule for an HTTP status and for the status a provider puts
/// in an in-stream error's code. 408 (the request timed out) and 429 (too
/// many requests) pass with time; so does 409: a conflict with the
/// resource's state at that moment (OpenAI answers it for a lock held by
/// another request, and its own clients retry it), not with the request.
pub(crate) fn refuses_request(status: u16) -> bool {
    (400..500).contains(&status) && !matches!(status, 408 | 409 | 429)
}

/// Whether a status refuses the credentials (401, 403): every later
/// request would be refused the same way.
pub(crate) fn refuses_credentials(status: u16) -> bool {
    matches!(status, 401 | 403)
}

impl From<tokio_tungstenite::tungstenite::Error> for ServiceError {
    fn from(error: tokio_tungstenite::tungstenite::Error) -> Self {
        use tokio_tungstenite::tungstenite::error::{Error, ProtocolError};
        match error {
            Error::ConnectionClosed | Error::AlreadyClosed => ServiceError::Closed {
                code: None,
                reason: String::new(),
            },
            Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => ServiceError::Closed {
                code: None,
                reason: "reset without a closing handshake".to_owned(),
            },
            error => ServiceError::WebSocket(Box::new(error)),
        }
    }
}

/// The message in a provider's error body: the JSON shapes providers use
/// (`error.message`, `error`, `message`, `err_msg`, `detail.message`,
/// `detail`, `title`), else the text itself, shortened.
pub(crate) fn error_message(body: &[u8]) -> String {
    const MAX: usize = 300;
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
        let candidates = [
            json.pointer("/error/message"),
            json.get("error"),
            json.get("message"),
            json.get("err_msg"),
            json.pointer("/detail/message"),
            json.get("detail"),
            json.get("title"),
        ];
        if let Some(text) = candidates.into_iter().flatten().find_map(|v| v.as_str()) {
            return shorten(text, MAX);
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "no details given".to_owned()
    } else {
        shorten(text, MAX)
    }
}

/// `text` cut to at most `max` characters, an ellipsis marking a cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_come_from_the_usual_body_shapes() {
        let openai = br#"{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        assert_eq!(error_message(openai), "Incorrect API key provided.");
        let deepgram =
            br#"{"err_code":"INVALID_AUTH","err_msg":"Invalid credentials.","request_id":"x"}"#;
        assert_eq!(error_message(deepgram), "Invalid credentials.");
        let elevenlabs = br#"{"detail":{"status":"invalid_api_key","message":"Invalid API key"}}"#;
        assert_eq!(error_message(elevenlabs), "Invalid API key");
        assert_eq!(error_message(b"  Bad Gateway\n"), "Bad Gateway");
        assert_eq!(error_message(b""), "no details given");
        assert_eq!(
            error_message("é".repeat(400).as_bytes()).chars().count(),
            301
        );
    }

    #[test]
    fn auth_errors_are_fatal_and_name_provider_and_status() {
        let error = ServiceError::Status {
            status: 401,
            message: "bad key".into(),
            retry_after: None,
        };
        assert!(!error.is_retryable());
        let frame = error.into_processor_error("openai").to_frame("llm");
        assert!(frame.fatal);
        assert_eq!(frame.provider.as_deref(), Some("openai"));
        assert_eq!(frame.status, Some(401));
        assert_eq!(frame.message, "HTTP 401: bad key");
        let stream = ServiceError::CredentialsRefused("bad key".into());
        assert!(stream.is_refusal());
        assert!(stream.into_processor_error("openai").to_frame("llm").fatal);
        // 409 passes with time, as 408 and 429 do, on both paths.
        assert!(!refuses_request(409) && !refuses_request(408) && !refuses_request(429));
        assert!(refuses_request(400) && refuses_request(404) && refuses_request(422));
        let conflict = ServiceError::Status {
            status: 409,
            message: "locked".into(),
            retry_after: None,
        };
        assert!(!conflict.is_refusal());
        let busy = ServiceError::Status {
            status: 503,
            message: "busy".into(),
            retry_after: None,
        };
        assert!(busy.is_retryable());
        assert!(!busy.into_processor_error("openai").to_frame("llm").fatal);
    }
}
