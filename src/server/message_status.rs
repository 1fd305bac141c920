//! `POST /twilio/messages/status`: Twilio's status callbacks for the
//! answers it sends (each answer's `StatusCallback`, by TwiML or REST,
//! names this path and the conversation's `call_id`).
//!
//! Checked as the incoming-message webhook is (`X-Twilio-Signature`, 403
//! otherwise; `[transport.twilio] messaging_signature`). A `failed` or
//! `undelivered` answer (30003 unreachable handset, 63016 outside
//! WhatsApp's 24-hour window, ...) is recorded in the conversation's record
//! (`undelivered`), once per message; other statuses are only logged. A
//! failure the store cannot take is answered 503 (Twilio retries it when
//! the callback URL's connection overrides ask for it) and retried here in
//! the background, so that a store blip does not lose it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::store::time::{rfc3339, unix_ms};
use crate::store::{CallChange, Store, UndeliveredMessage};

use super::message_delivery::CALL_ID_PARAMETER;
use super::request::public_host;
use super::state::ServerState;
use super::twilio_messaging::refusal;

/// The first wait before recording a failure again.
const RECORD_RETRY_FIRST: Duration = Duration::from_millis(250);
/// The longest wait between tries to record a failure.
const RECORD_RETRY_MAX: Duration = Duration::from_secs(10);
/// Tries to record a failure in the background before it is given up.
const RECORD_TRIES: u32 = 10;

/// A status callback, as read from its form and query.
#[derive(Debug, PartialEq, Eq)]
struct StatusReport {
    call_id: String,
    message_sid: String,
    status: String,
    error_code: Option<u64>,
}

impl StatusReport {
    /// Reads `form` and `query`; what is missing when it cannot.
    fn parse(query: Option<&str>, form: &[(String, String)]) -> Result<Self, &'static str> {
        let field = |name: &str| {
            form.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
                .filter(|value| !value.is_empty())
        };
        let call_id = query
            .and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(key, _)| key == CALL_ID_PARAMETER)
                    .map(|(_, value)| value.into_owned())
            })
            .filter(|id| !id.is_empty())
            .ok_or("no call_id in the callback's URL")?;
        Ok(StatusReport {
            call_id,
            message_sid: field("MessageSid").ok_or("no MessageSid")?,
            status: field("MessageStatus").ok_or("no MessageStatus")?,
            error_code: field("ErrorCode").and_then(|code| code.parse().ok()),
        })
    }

    /// Twilio gave up on the message: `failed` (never sent) or
    /// `undelivered` (the carrier or WhatsApp refused it).
    fn is_failure(&self) -> bool {
        matches!(self.status.as_str(), "failed" | "undelivered")
    }
}

/// `POST /twilio/messages/status`.
pub(crate) async fn status(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let Some(host) = public_host(&state.config.server, &headers) else {
        return (StatusCode::BAD_REQUEST, "set [server] public_host").into_response();
    };
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    if let Some(refused) = refusal(&state, &host, &headers, &uri, &form) {
        return refused;
    }
    let Some(conversations) = state.text.clone() else {
        return (
            StatusCode::NOT_FOUND,
            "this pipeline serves no text conversations",
        )
            .into_response();
    };
    let report = match StatusReport::parse(uri.query(), &form) {
        Ok(report) => report,
        Err(missing) => {
            tracing::warn!(reason = missing, "message status callback not understood");
            return (StatusCode::BAD_REQUEST, missing).into_response();
        }
    };
    if !report.is_failure() {
        tracing::debug!(call_id = %report.call_id, message_sid = %report.message_sid, status = %report.status, "answer's status");
        return StatusCode::OK.into_response();
    }
    tracing::warn!(
        call_id = %report.call_id,
        message_sid = %report.message_sid,
        status = %report.status,
        error_code = ?report.error_code,
        "an answer was not delivered"
    );
    state.metrics.error("message_undelivered", "twilio");
    let store = Arc::clone(conversations.runtime().store());
    let call_id = report.call_id.clone();
    let change = CallChange::Undelivered(UndeliveredMessage {
        message_sid: report.message_sid,
        status: report.status,
        error_code: report.error_code,
        at: rfc3339(unix_ms()),
    });
    match record(store.as_ref(), &call_id, &change).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(err) => {
            tracing::warn!(call_id, error = %err, "cannot record the undelivered answer; retried in the background");
            tokio::spawn(record_later(store, call_id, change));
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// Records `change` on `call_id`'s record; a conversation the store does
/// not know (expired, or not ours) is only logged.
async fn record(
    store: &dyn Store,
    call_id: &str,
    change: &CallChange,
) -> Result<(), crate::store::StoreError> {
    if store.update_call(call_id, change).await?.is_none() {
        tracing::warn!(
            call_id,
            "undelivered answer of an unknown conversation: not recorded"
        );
    }
    Ok(())
}

/// Tries to record `change` again, with backoff, [`RECORD_TRIES`] times.
async fn record_later(store: Arc<dyn Store>, call_id: String, change: CallChange) {
    let mut wait = RECORD_RETRY_FIRST;
    for _ in 0..RECORD_TRIES {
        tokio::time::sleep(wait).await;
        match record(store.as_ref(), &call_id, &change).await {
            Ok(()) => return,
            Err(err) => {
                tracing::debug!(call_id, error = %err, "still cannot record the undelivered answer")
            }
        }
        wait = (wait * 2).min(RECORD_RETRY_MAX);
    }
    tracing::error!(
        call_id,
        "the undelivered answer could not be recorded: given up"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn reads_a_failure_and_tells_it_from_a_delivery() {
        let report = StatusReport::parse(
            Some("call_id=c%201"),
            &form(&[
                ("MessageSid", "SM1"),
                ("MessageStatus", "undelivered"),
                ("ErrorCode", "63016"),
            ]),
        )
        .unwrap();
        assert_eq!(report.call_id, "c 1");
        assert_eq!(report.error_code, Some(63016));
        assert!(report.is_failure());
        let delivered = form(&[("MessageSid", "SM1"), ("MessageStatus", "delivered")]);
        let report = StatusReport::parse(Some("call_id=c"), &delivered).unwrap();
        assert!(!report.is_failure());
        assert_eq!(report.error_code, None);
        assert!(StatusReport::parse(None, &delivered).is_err());
        assert!(StatusReport::parse(Some("call_id=c"), &form(&[("MessageSid", "SM1")])).is_err());
    }
}
