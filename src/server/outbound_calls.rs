//! `/api/calls`: placing one outbound call, reading it, ending it.
//!
//! - `POST /api/calls` with `{"to", "from"?, "parameters"?, "webhook_url"?,
//!   "metadata"?}` writes the call (`queued`) and answers
//!   `202 {"call_id", "status": "queued"}`; the dial runs after the answer
//!   (a 429 from Twilio, an outage of Twilio or of the store, are waited
//!   out for up to 8 minutes, then the call fails with the reason; a
//!   refusal marks it failed at once). Unknown fields, numbers that are not
//!   E.164 and a `webhook_url` that is not http(s) are 400; a body not
//!   sent as `Content-Type: application/json` is 415, so that a web page
//!   cannot place a call with a form post or a `no-cors` fetch (which
//!   need no CORS preflight) where the API is open. With an
//!   `Idempotency-Key` header, retries of the request place one call: the
//!   call's id is made from the key, and a retry is answered with the call
//!   as it stands (`Idempotent-Replayed: true`), not dialled again; 422
//!   when the key was used for another number.
//! - `GET /api/calls/{call_id}`: the record, with its `turns`; 404 unknown.
//! - `DELETE /api/calls/{call_id}`: a call not yet at Twilio is canceled at
//!   once; one queued or ringing at Twilio is canceled there
//!   (`Status=canceled`), one in progress hung up (`Status=completed`), and
//!   its status callback then settles it. 409 once it has ended, for a
//!   call this API did not place (an inbound call, a browser's), and for
//!   one that started before it could be canceled and whose Twilio SID is
//!   not known yet (try again).
//!
//! All of them take [`ApiAuthorized`]: 401 without the key, 403 when the
//! API is off.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::outbound::{
    CallRequest, DialRetry, DialStep, Dialer, PhoneNumber, TwilioDialer, check_parameters,
    check_webhook_url,
};
use crate::pipeline::new_session_id;
use crate::store::{CallDirection, CallStatus};

use super::api_access::ApiAuthorized;
use super::idempotency::{id_of_key, idempotency_key};
use super::metrics::ServerMetrics;
use super::state::ServerState;

/// The body of `POST /api/calls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallBody {
    to: PhoneNumber,
    #[serde(default)]
    from: Option<PhoneNumber>,
    #[serde(default)]
    parameters: BTreeMap<String, String>,
    #[serde(default)]
    webhook_url: Option<String>,
    #[serde(default)]
    metadata: serde_json::Map<String, serde_json::Value>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn outbound_off() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "outbound calls are off: add [outbound] to the pipeline",
    )
}

/// `POST /api/calls`.
pub(crate) async fn create(
    _authorized: ApiAuthorized,
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(dialer) = state.outbound.clone() else {
        return outbound_off();
    };
    if !is_json(&headers) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the call as JSON (Content-Type: application/json)",
        );
    }
    let body: CallBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(err) => return error(StatusCode::BAD_REQUEST, format!("bad call request: {err}")),
    };
    if let Some(Err(err)) = body.webhook_url.as_deref().map(check_webhook_url) {
        return error(StatusCode::BAD_REQUEST, err.to_string());
    }
    if let Err(err) = check_parameters(&body.parameters) {
        return error(StatusCode::BAD_REQUEST, err.to_string());
    }
    let request = CallRequest {
        to: body.to,
        from: body.from,
        parameters: body.parameters,
        webhook_url: body.webhook_url,
        metadata: body.metadata,
        campaign: None,
    };
    let call_id = match idempotency_key(&headers) {
        Ok(Some(key)) => id_of_key("call", key, 16),
        Ok(None) => new_session_id(),
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    match dialer.queue(&call_id, &request).await {
        Ok(true) => {}
        Ok(false) => return replay(&dialer, &call_id, &request).await,
        Err(err) => {
            tracing::warn!(call_id, error = %err, "cannot store the call");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the call store is unavailable",
            );
        }
    }
    let metrics = Arc::clone(&state.metrics);
    tokio::spawn(dial(dialer, metrics, call_id.clone(), request));
    (
        StatusCode::ACCEPTED,
        Json(json!({ "call_id": call_id, "status": CallStatus::Queued.as_str() })),
    )
        .into_response()
}

/// The answer to a request whose call exists already (a retry with the
/// same `Idempotency-Key`): the call as it stands, not dialled again; 422
/// when the key was used for a call to another number.
async fn replay(dialer: &TwilioDialer, call_id: &str, request: &CallRequest) -> Response {
    match dialer.store().call(call_id).await {
        Ok(Some(call)) => {
            let same = call
                .outbound
                .as_ref()
                .is_some_and(|o| o.to == request.to.as_str());
            if !same {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "this Idempotency-Key was used for another call",
                );
            }
            tracing::info!(
                call_id,
                "a retried call request: answered as before, not dialled again"
            );
            (
                StatusCode::ACCEPTED,
                [("idempotent-replayed", "true")],
                Json(json!({ "call_id": call_id, "status": call.status.as_str() })),
            )
                .into_response()
        }
        Ok(None) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the call store is unavailable",
        ),
        Err(err) => {
            tracing::warn!(call_id, error = %err, "cannot read the call");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the call store is unavailable",
            )
        }
    }
}

/// Whether the request says its body is JSON (`application/json`, with
/// or without parameters).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Dials, waiting out Twilio's rate limits and outages and the store's
/// blips until the API dial deadline ([`DialRetry`]).
async fn dial(
    dialer: Arc<TwilioDialer>,
    metrics: Arc<ServerMetrics>,
    call_id: String,
    request: CallRequest,
) {
    let asked = Instant::now();
    let mut retry = DialRetry::new(asked);
    let mut attempt = 1_u32;
    let reason = loop {
        let err = match dialer.dial(&call_id, &request).await {
            Ok(_) => {
                metrics.dial_latency(asked.elapsed());
                return;
            }
            Err(err) => err,
        };
        match retry.after(&err, Instant::now()) {
            // Settled by the dialler, or perhaps placed: never dialled
            // again (its callbacks settle it).
            DialStep::Done => return,
            DialStep::Wait(wait) => {
                tracing::warn!(call_id, attempt, error = %err, retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "call not placed yet; trying again");
                tokio::time::sleep(wait).await;
                attempt = attempt.saturating_add(1);
            }
            DialStep::GiveUp(reason) => break reason,
        }
    };
    tracing::warn!(call_id, attempt, reason, "call given up");
    // A store still down leaves it `queued`: the stranded-call sweep ends
    // it later.
    if let Err(err) = dialer.fail_undialled(&call_id, &reason).await {
        tracing::warn!(call_id, error = %err, "cannot mark the call failed");
    }
}

/// `GET /api/calls/{call_id}`.
pub(crate) async fn get(
    _authorized: ApiAuthorized,
    State(state): State<Arc<ServerState>>,
    Path(call_id): Path<String>,
) -> Response {
    let Some(dialer) = &state.outbound else {
        return outbound_off();
    };
    let store = dialer.store();
    match tokio::try_join!(store.call(&call_id), store.turns(&call_id)) {
        Ok((Some(call), turns)) => match serde_json::to_value(&call) {
            Ok(mut value) => {
                value["turns"] = json!(turns);
                Json(value).into_response()
            }
            Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
        },
        Ok((None, _)) => error(StatusCode::NOT_FOUND, "no such call"),
        Err(err) => {
            tracing::warn!(call_id, error = %err, "cannot read the call");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the call store is unavailable",
            )
        }
    }
}

/// `DELETE /api/calls/{call_id}`.
pub(crate) async fn delete(
    _authorized: ApiAuthorized,
    State(state): State<Arc<ServerState>>,
    Path(call_id): Path<String>,
) -> Response {
    let Some(dialer) = &state.outbound else {
        return outbound_off();
    };
    let mut call = match dialer.store().call(&call_id).await {
        Ok(Some(call)) => call,
        Ok(None) => return error(StatusCode::NOT_FOUND, "no such call"),
        Err(err) => {
            tracing::warn!(call_id, error = %err, "cannot read the call");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the call store is unavailable",
            );
        }
    };
    if call.direction != Some(CallDirection::Outbound) || call.outbound.is_none() {
        return error(
            StatusCode::CONFLICT,
            "not a call placed through /api/calls or a campaign: it cannot be ended here",
        );
    }
    if call.status.is_final() {
        return error(
            StatusCode::CONFLICT,
            format!("the call has already ended ({})", call.status.as_str()),
        );
    }
    let mut sid = call.outbound.as_ref().and_then(|o| o.twilio_sid.clone());
    if sid.is_none() {
        match dialer.cancel_queued(&call_id).await {
            Ok(Some(after)) if after.status.is_final() => {
                return canceled(&call_id, after.status);
            }
            // Twilio took it meanwhile: ended there, as below.
            Ok(Some(after)) => {
                sid = after.outbound.and_then(|o| o.twilio_sid);
                call.status = after.status;
            }
            Ok(None) => return error(StatusCode::NOT_FOUND, "no such call"),
            Err(err) => return error(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
        }
    }
    let Some(sid) = sid else {
        return error(
            StatusCode::CONFLICT,
            format!(
                "the call is {} and Twilio's id for it is not known yet: try again",
                call.status.as_str()
            ),
        );
    };
    // The record may lag the call (the session's writer, a late
    // callback): a session running here means it was answered.
    let answered = call.status.rank() >= CallStatus::Pending.rank()
        || state.sessions.handle_of(&call_id).is_some();
    if let Err(err) = dialer.end(&sid, answered).await {
        tracing::warn!(call_id, error = %err, "Twilio did not end the call");
        return error(StatusCode::BAD_GATEWAY, "Twilio did not end the call");
    }
    tracing::info!(call_id, answered, "call ended on request");
    canceled(&call_id, call.status)
}

/// The answer to a call ended, or asked to end, on request.
fn canceled(call_id: &str, status: CallStatus) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({ "call_id": call_id, "status": status.as_str() })),
    )
        .into_response()
}
