//! `/api/calls`: placing one outbound call, reading it, ending it.
//!
//! - `POST /api/calls` with `{"to", "from"?, "parameters"?, "webhook_url"?,
//!   "metadata"?}` writes the call (`queued`) and answers
//!   `202 {"call_id", "status": "queued"}`; the dial runs after the answer
//!   (a 429 from Twilio is waited out a few times; a refusal marks the call
//!   failed). Unknown fields and numbers that are not E.164 are 400.
//! - `GET /api/calls/{call_id}`: the record, with its `turns`; 404 unknown.
//! - `DELETE /api/calls/{call_id}`: a call not yet at Twilio is canceled at
//!   once; one queued or ringing at Twilio is canceled there
//!   (`Status=canceled`), one in progress hung up (`Status=completed`), and
//!   its status callback then settles it. 409 once it has ended.
//!
//! All of them take [`ApiAuthorized`]: 401 without the key, 403 when the
//! API is off.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::outbound::{CallRequest, DialError, Dialer, PhoneNumber, TwilioDialer};
use crate::pipeline::new_session_id;
use crate::store::CallStatus;

use super::api_access::ApiAuthorized;
use super::metrics::ServerMetrics;
use super::state::ServerState;

/// Tries of one API call's dial while Twilio is rate limiting or down.
const DIAL_ATTEMPTS: u32 = 4;
/// The longest wait between them.
const MAX_DIAL_WAIT: Duration = Duration::from_secs(30);

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
    body: Bytes,
) -> Response {
    let Some(dialer) = state.outbound.clone() else {
        return outbound_off();
    };
    let body: CallBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(err) => return error(StatusCode::BAD_REQUEST, format!("bad call request: {err}")),
    };
    if let Some(url) = &body.webhook_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        return error(
            StatusCode::BAD_REQUEST,
            "webhook_url must be an http:// or https:// URL",
        );
    }
    let request = CallRequest {
        to: body.to,
        from: body.from,
        parameters: body.parameters,
        webhook_url: body.webhook_url,
        metadata: body.metadata,
        campaign: None,
    };
    let call_id = new_session_id();
    if let Err(err) = dialer.queue(&call_id, &request).await {
        tracing::warn!(call_id, error = %err, "cannot store the call");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the call store is unavailable",
        );
    }
    let metrics = Arc::clone(&state.metrics);
    tokio::spawn(dial(dialer, metrics, call_id.clone(), request));
    (
        StatusCode::ACCEPTED,
        Json(json!({ "call_id": call_id, "status": CallStatus::Queued.as_str() })),
    )
        .into_response()
}

/// Dials, waiting out Twilio's rate limits and outages a few times.
async fn dial(
    dialer: Arc<TwilioDialer>,
    metrics: Arc<ServerMetrics>,
    call_id: String,
    request: CallRequest,
) {
    let asked = Instant::now();
    for attempt in 1..=DIAL_ATTEMPTS {
        let wait = match dialer.dial(&call_id, &request).await {
            Ok(_) => {
                metrics.dial_latency(asked.elapsed());
                return;
            }
            Err(DialError::Refused { .. } | DialError::NumberLimited { .. }) => return,
            Err(DialError::Settled { .. }) => return,
            // Perhaps placed: never dialled again (its callbacks settle it).
            Err(DialError::Uncertain(_) | DialError::AlreadyAsked(_)) => return,
            Err(DialError::RateLimited { retry_after }) => retry_after.min(MAX_DIAL_WAIT),
            Err(err) => {
                tracing::warn!(call_id, attempt, error = %err, "dial failed");
                Duration::from_secs(1 << attempt).min(MAX_DIAL_WAIT)
            }
        };
        if attempt < DIAL_ATTEMPTS {
            tokio::time::sleep(wait).await;
        }
    }
    tracing::warn!(call_id, "call not placed after {DIAL_ATTEMPTS} attempts");
    if let Err(err) = dialer
        .fail_undialled(
            &call_id,
            "Twilio could not be reached or kept rate limiting",
        )
        .await
    {
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
    let call = match dialer.store().call(&call_id).await {
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
    if call.status.is_final() {
        return error(
            StatusCode::CONFLICT,
            format!("the call has already ended ({})", call.status.as_str()),
        );
    }
    let sid = call.outbound.as_ref().and_then(|o| o.twilio_sid.clone());
    let status = match sid {
        None => match dialer.cancel_queued(&call_id).await {
            Ok(Some(call)) => call.status,
            Ok(None) => return error(StatusCode::NOT_FOUND, "no such call"),
            Err(err) => return error(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
        },
        Some(sid) => {
            // The record may lag the call (the session's writer, a late
            // callback): a session running here means it was answered.
            let answered = call.status.rank() >= CallStatus::Pending.rank()
                || state.sessions.handle_of(&call_id).is_some();
            if let Err(err) = dialer.end(&sid, answered).await {
                tracing::warn!(call_id, error = %err, "Twilio did not end the call");
                return error(StatusCode::BAD_GATEWAY, "Twilio did not end the call");
            }
            tracing::info!(call_id, answered, "call ended on request");
            call.status
        }
    };
    (
        StatusCode::ACCEPTED,
        Json(json!({ "call_id": call_id, "status": status.as_str() })),
    )
        .into_response()
}
