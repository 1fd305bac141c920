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

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::Instrument as _;

use crate::transport::webrtc::{OfferRequest, PatchRequest, SignallingError, WebRtcCall};

use super::live_sessions::SessionPermit;
use super::session::run_session;
use super::state::ServerState;

/// `POST /api/offer`.
pub(crate) async fn offer(
    State(state): State<Arc<ServerState>>,
    request: Result<Json<OfferRequest>, JsonRejection>,
) -> Response {
    let request = match request {
        Ok(Json(request)) => request,
        Err(rejection) => return bad_json(&state, rejection),
    };
    if let Some(answered) = state.webrtc.reoffer(request.clone()).await {
        return match answered {
            Ok(answer) => Json(answer).into_response(),
            Err(err) => refused(&state, err),
        };
    }
    let permit = match state.sessions.admit() {
        Ok(permit) => permit,
        Err(refusal) => {
            tracing::warn!(reason = %refusal, "WebRTC call refused");
            state.metrics.session_refused("webrtc", refusal.kind());
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                refusal.to_string(),
            )
                .into_response();
        }
    };
    let span = tracing::info_span!("call", call_id = %permit.session_id(), transport = "webrtc");
    let accepted = state
        .webrtc
        .accept(request, Arc::clone(permit.session_id()))
        .instrument(span.clone())
        .await;
    match accepted {
        Ok((answer, call)) => {
            tokio::spawn(serve_call(state, permit, call).instrument(span));
            Json(answer).into_response()
        }
        Err(err) => {
            span.in_scope(|| tracing::info!(error = %err, "offer not answered"));
            refused(&state, err)
        }
    }
}

/// `PATCH /api/offer`: candidates trickled after the offer.
pub(crate) async fn patch(
    State(state): State<Arc<ServerState>>,
    request: Result<Json<PatchRequest>, JsonRejection>,
) -> Response {
    let request = match request {
        Ok(Json(request)) => request,
        Err(rejection) => return bad_json(&state, rejection),
    };
    match state.webrtc.patch(request).await {
        Ok(()) => Json(serde_json::json!({"status": "success"})).into_response(),
        Err(err) => refused(&state, err),
    }
}

async fn serve_call(state: Arc<ServerState>, permit: SessionPermit, mut call: WebRtcCall) {
    tracing::info!(
        parameters = ?call.custom_parameters().keys().collect::<Vec<_>>(),
        "WebRTC call answered"
    );
    if let Some(ends) = call.take_ends() {
        let mut setup = state.config.session_setup(Arc::clone(permit.session_id()));
        setup.env = state.env.clone();
        setup.custom_parameters = call.custom_parameters().clone();
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

fn bad_json(state: &ServerState, rejection: JsonRejection) -> Response {
    state.metrics.error("bad_signalling", "webrtc");
    (StatusCode::BAD_REQUEST, rejection.body_text()).into_response()
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
