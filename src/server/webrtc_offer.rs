//! `POST /api/offer` and `PATCH /api/offer`: WebRTC signalling as Pipecat's
//! SmallWebRTC clients speak it, each new call run as one session.
//!
//! An offer naming a live call's `pc_id` renegotiates that call (or
//! replaces its connection, with `restart_pc`); no session slot is taken.
//! Any other offer is a new call: it takes a slot first (over the limit:
//! 503), is answered, and its session runs in the background until it ends
//! (the browser hung up, its connection failed, it went silent, or the
//! server is shutting down); then the page gets the last events and
//! Pipecat's `peerLeft`, the connection closes and the slot is freed.
//! Offers are counted against the client's rate limit and, with
//! `[server] start_token_env`, need the bearer key (see `admission`).
//! `session_offer` serves the same calls on a session's own path.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::Instrument as _;

use crate::transport::webrtc::{OfferRequest, PatchRequest, SignallingError, WebRtcCall};

use super::admission::{ClientAddr, Refused};
use super::body::unread_body;
use super::live_sessions::SessionPermit;
use super::offer_precheck::offer_problem;
use super::session::run_session;
use super::state::ServerState;

/// `POST /api/offer`.
pub(crate) async fn offer(
    State(state): State<Arc<ServerState>>,
    client: ClientAddr,
    headers: HeaderMap,
    request: Result<Json<OfferRequest>, JsonRejection>,
) -> Response {
    if let Err(refused) = admit_offer(&state, &client, &headers) {
        return refused.into_response();
    }
    let request = match request {
        Ok(Json(request)) => request,
        Err(rejection) => return bad_json(&state, rejection),
    };
    if let Some(answered) = reoffer(&state, &request).await {
        return answered;
    }
    let parameters = request.custom_parameters();
    new_call(&state, request, None, parameters)
        .await
        .unwrap_or_else(|refused| refused)
}

/// The rate limit and the bearer key of an offer (or a `/start`),
/// refusals counted.
pub(crate) fn admit_offer(
    state: &ServerState,
    client: &ClientAddr,
    headers: &HeaderMap,
) -> Result<(), Refused> {
    let admitted = state
        .admission
        .limit(client)
        .and_then(|()| state.admission.authorize(headers));
    admitted.inspect_err(|refused| state.metrics.session_refused("webrtc", refused.kind()))
}

/// Answers an offer for a live call (`pc_id` names one); `None` when the
/// offer is for a new call.
pub(crate) async fn reoffer(state: &ServerState, request: &OfferRequest) -> Option<Response> {
    let answered = state.webrtc.reoffer(request.clone()).await?;
    Some(match answered {
        Ok(answer) => Json(answer).into_response(),
        Err(err) => refused(state, err),
    })
}

/// Answers the first offer of a new call, the session `session_id` (a
/// fresh one when `None`) with `parameters`, and runs its session in the
/// background. `Err` when no call was started.
pub(crate) async fn new_call(
    state: &Arc<ServerState>,
    request: OfferRequest,
    session_id: Option<Arc<str>>,
    parameters: BTreeMap<String, String>,
) -> Result<Response, Response> {
    // A hostile offer is refused before it can hold a slot.
    if let Some(problem) = offer_problem(&request.kind, &request.sdp) {
        tracing::info!(problem, "WebRTC offer refused before admission");
        state.metrics.error("bad_offer", "webrtc");
        return Err((StatusCode::BAD_REQUEST, problem).into_response());
    }
    let admitted = match session_id {
        Some(id) => state.sessions.admit_as(id),
        None => state.sessions.admit(),
    };
    let permit = match admitted {
        Ok(permit) => permit,
        Err(refusal) => {
            tracing::warn!(reason = %refusal, "WebRTC call refused");
            state.metrics.session_refused("webrtc", refusal.kind());
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                refusal.to_string(),
            )
                .into_response());
        }
    };
    let span = tracing::info_span!("call", call_id = %permit.session_id(), transport = "webrtc");
    // The permit goes with the call being built: an offer whose client
    // went away keeps its slot until the connection is dropped.
    let session_id = Arc::clone(permit.session_id());
    let accepted = state
        .webrtc
        .accept(request, session_id, permit)
        .instrument(span.clone())
        .await;
    match accepted {
        Ok((answer, call, permit)) => {
            let state = Arc::clone(state);
            tokio::spawn(serve_call(state, permit, call, parameters).instrument(span));
            Ok(Json(answer).into_response())
        }
        Err(err) => {
            span.in_scope(|| tracing::info!(error = %err, "offer not answered"));
            Err(refused(state, err))
        }
    }
}

/// `PATCH /api/offer`: candidates trickled after the offer.
pub(crate) async fn patch(
    State(state): State<Arc<ServerState>>,
    request: Result<Json<PatchRequest>, JsonRejection>,
) -> Response {
    match request {
        Ok(Json(request)) => add_candidates(&state, request).await,
        Err(rejection) => bad_json(&state, rejection),
    }
}

/// Adds trickled candidates to their call.
pub(crate) async fn add_candidates(state: &ServerState, request: PatchRequest) -> Response {
    match state.webrtc.patch(request).await {
        Ok(()) => Json(serde_json::json!({"status": "success"})).into_response(),
        Err(err) => refused(state, err),
    }
}

async fn serve_call(
    state: Arc<ServerState>,
    permit: SessionPermit,
    mut call: WebRtcCall,
    parameters: BTreeMap<String, String>,
) {
    tracing::info!(
        parameters = ?parameters.keys().collect::<Vec<_>>(),
        "WebRTC call answered"
    );
    if let Some(ends) = call.take_ends() {
        let mut setup = state.config.session_setup(Arc::clone(permit.session_id()));
        setup.env = state.env.clone();
        setup.custom_parameters = parameters;
        run_session(
            &state,
            &permit,
            "webrtc",
            setup,
            ends,
            vec![call.observer()],
        )
        .await;
    }
    call.close().await;
    drop(permit);
}

/// The refusal of an offer or `PATCH` body that could not be read: its
/// reason as text, which the routes' layer answers as `{"detail"}`, as
/// every refusal of these routes (`signalling_errors`).
pub(crate) fn bad_json(state: &ServerState, rejection: JsonRejection) -> Response {
    state.metrics.error("bad_signalling", "webrtc");
    unread_body(&rejection).into_response()
}

fn refused(state: &ServerState, err: SignallingError) -> Response {
    let status = match &err {
        SignallingError::UnknownPeer(_) => StatusCode::NOT_FOUND,
        SignallingError::Internal(_) => {
            tracing::error!(error = %err, "WebRTC signalling failed");
            state.metrics.error("webrtc_setup", "webrtc");
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => {
            state.metrics.error("bad_signalling", "webrtc");
            StatusCode::BAD_REQUEST
        }
    };
    (status, err.to_string()).into_response()
}
