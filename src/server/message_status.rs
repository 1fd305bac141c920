//! `POST /twilio/messages/status`: Twilio's status callbacks for the
//! answers it sends (each answer's `StatusCallback`, by TwiML or REST,
//! names this path and the conversation's `call_id`).
//!
//! With an auth token, every callback must carry a valid
//! `X-Twilio-Signature` (403 otherwise), whatever `[transport.twilio]
//! messaging_signature` says; without one, callbacks are refused unless
//! `messaging_signature = false` (to test locally). A `call_id` not of the
//! form this server issues, or a `MessageSid` not `SM`/`MM` and 32 hex
//! digits, is answered 400. A `failed` or `undelivered` answer (30003
//! unreachable handset, 63016 outside WhatsApp's 24-hour window, ...) is
//! recorded in its text conversation's record (`undelivered`), once per
//! message and at most [`MAX_UNDELIVERED_KEPT`](crate::store::MAX_UNDELIVERED_KEPT);
//! a repeat, one past the cap, or one naming a voice call's record writes
//! nothing. Other statuses are only logged. Twilio does not retry a status
//! callback that failed (unless its URL's connection overrides ask), so a
//! failure the store cannot take is still answered 200, and retried in the
//! background with backoff as one of the server's answers: shutdown waits
//! for it as it waits for answers being sent.

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
use super::twilio_voice::signature_refusal;

/// The first wait before recording a failure again.
const RECORD_RETRY_FIRST: Duration = Duration::from_millis(250);
/// The longest wait between tries to record a failure.
const RECORD_RETRY_MAX: Duration = Duration::from_secs(10);
/// Tries to record a failure in the background before it is given up.
const RECORD_TRIES: u32 = 10;

/// Whether `id` is of the form this server gives its sessions
/// ([`new_session_id`](crate::pipeline::new_session_id)): 32
/// lowercase hex digits.
fn is_session_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `sid` is a message's: `SM` or `MM` and 32 lowercase hex digits.
fn is_message_sid(sid: &str) -> bool {
    sid.strip_prefix("SM")
        .or_else(|| sid.strip_prefix("MM"))
        .is_some_and(is_session_id)
}

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
            .ok_or("no call_id in the callback's URL")?;
        if !is_session_id(&call_id) {
            return Err("not a call_id this server issues");
        }
        let message_sid = field("MessageSid").ok_or("no MessageSid")?;
        if !is_message_sid(&message_sid) {
            return Err("not a message's MessageSid");
        }
        Ok(StatusReport {
            call_id,
            message_sid,
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
    // Signed whenever a token can check it: `messaging_signature = false`
    // only spares the lack of a token.
    let refused = if state.config.transport.twilio.messaging_signature {
        refusal(&state, &host, &headers, &uri, &form)
    } else {
        signature_refusal(&state, &host, &headers, &uri, &form)
    };
    if let Some(refused) = refused {
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
    let store = Arc::clone(conversations.runtime().store());
    let call_id = report.call_id.clone();
    let change = CallChange::Undelivered(UndeliveredMessage {
        message_sid: report.message_sid,
        status: report.status,
        error_code: report.error_code,
        at: rfc3339(unix_ms()),
    });
    match record(&state, store.as_ref(), &call_id, &change).await {
        Ok(()) => {}
        Err(err) => {
            // Twilio would not retry a 503 (only a URL's connection
            // overrides ask it to): the failure is kept here instead.
            tracing::warn!(call_id, error = %err, "cannot record the undelivered answer; retried in the background");
            state
                .answers
                .spawn(record_later(Arc::clone(&state), store, call_id, change));
        }
    }
    StatusCode::OK.into_response()
}

/// Records `change` on `call_id`'s record, counted when it was recorded
/// (not a repeat, nor past the cap); a conversation the store does not
/// know (expired, or not ours), or a record that is not a text
/// conversation's, is only logged.
async fn record(
    state: &ServerState,
    store: &dyn Store,
    call_id: &str,
    change: &CallChange,
) -> Result<(), crate::store::StoreError> {
    match store.change_call(call_id, change).await? {
        Some((_, true)) => state.metrics.error("message_undelivered", "twilio"),
        Some((_, false)) => tracing::debug!(
            call_id,
            "undelivered answer already recorded, past the cap, or not of a text conversation"
        ),
        None => tracing::warn!(
            call_id,
            "undelivered answer of an unknown conversation: not recorded"
        ),
    }
    Ok(())
}

/// Tries to record `change` again, with backoff, [`RECORD_TRIES`] times;
/// run as one of the server's answers, so that shutdown waits for it.
async fn record_later(
    state: Arc<ServerState>,
    store: Arc<dyn Store>,
    call_id: String,
    change: CallChange,
) {
    let mut wait = RECORD_RETRY_FIRST;
    for _ in 0..RECORD_TRIES {
        tokio::time::sleep(wait).await;
        match record(&state, store.as_ref(), &call_id, &change).await {
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

    use crate::testing::form_fields as form;

    const CALL: &str = "0123456789abcdef0123456789abcdef";
    const SID: &str = "SM0123456789abcdef0123456789abcdef";

    #[test]
    fn reads_a_failure_and_tells_it_from_a_delivery() {
        let query = format!("call_id={CALL}");
        let report = StatusReport::parse(
            Some(&query),
            &form(&[
                ("MessageSid", SID),
                ("MessageStatus", "undelivered"),
                ("ErrorCode", "63016"),
            ]),
        )
        .unwrap();
        assert_eq!(report.call_id, CALL);
        assert_eq!(report.error_code, Some(63016));
        assert!(report.is_failure());
        let delivered = form(&[("MessageSid", SID), ("MessageStatus", "delivered")]);
        let report = StatusReport::parse(Some(&query), &delivered).unwrap();
        assert!(!report.is_failure());
        assert_eq!(report.error_code, None);
        assert!(StatusReport::parse(None, &delivered).is_err());
        assert!(StatusReport::parse(Some(&query), &form(&[("MessageSid", SID)])).is_err());
    }

    #[test]
    fn only_ids_of_the_forms_issued_are_read() {
        let delivered = |sid: &str| form(&[("MessageSid", sid), ("MessageStatus", "delivered")]);
        for call_id in ["c", "0123456789ABCDEF0123456789ABCDEF", &format!("{CALL}0")] {
            let query = format!("call_id={call_id}");
            assert!(
                StatusReport::parse(Some(&query), &delivered(SID)).is_err(),
                "{call_id}"
            );
        }
        let query = format!("call_id={CALL}");
        let mms = "MM0123456789abcdef0123456789abcdef";
        assert!(StatusReport::parse(Some(&query), &delivered(mms)).is_ok());
        for sid in [
            "SM1",
            "CA0123456789abcdef0123456789abcdef",
            "SM0123456789abcdef0123456789abcdeé",
        ] {
            assert!(
                StatusReport::parse(Some(&query), &delivered(sid)).is_err(),
                "{sid}"
            );
        }
    }
}
