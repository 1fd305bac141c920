//! `GET /twilio/ws`: a Twilio media stream, run as one session.
//!
//! The connection takes a session slot before the WebSocket upgrade (over
//! the limit: 503, and Twilio ends the `<Connect>`); the Twilio transport
//! then reads the stream up to `start`, the session runs on its ends, and
//! the transport hangs up and closes the socket (see
//! [`StreamSocket`]); the slot is freed last.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::Instrument as _;

use crate::transport::twilio::{CallOptions, StreamSocket, socket};

use crate::outbound::CALL_ID_PARAMETER;

use super::live_sessions::SessionPermit;
use super::session::run_session;
use super::shutdown::SHUTDOWN_REASON;
use super::state::ServerState;
use super::twilio_status::join_outbound_call;

/// `GET /twilio/ws`.
pub(crate) async fn stream(
    State(state): State<Arc<ServerState>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let permit = match state.sessions.admit() {
        Ok(permit) => permit,
        Err(refusal) => {
            tracing::warn!(reason = %refusal, "media stream refused");
            state.metrics.session_refused("twilio", refusal.kind());
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                refusal.to_string(),
            )
                .into_response();
        }
    };
    let span = tracing::info_span!(
        "call",
        call_id = %permit.session_id(),
        transport = "twilio",
        call_sid = tracing::field::Empty,
    );
    let limit = state.config.server.max_message_bytes.bytes();
    socket::upgrade(upgrade, limit)
        .on_upgrade(move |socket| serve_call(state, permit, socket).instrument(span))
}

async fn serve_call(state: Arc<ServerState>, mut permit: SessionPermit, socket: WebSocket) {
    let options = CallOptions {
        idle_timeout: state.config.server.idle_timeout_secs.duration(),
        stats: Arc::clone(&state.twilio.stats),
    };
    let rate = state.config.pipeline.sample_rate.hz();
    let Some((ends, socket)) = StreamSocket::accept(socket, rate, options).await else {
        return;
    };
    let start = socket.start();
    tracing::Span::current().record("call_sid", start.call_sid.as_deref().unwrap_or("-"));
    tracing::info!(
        stream_sid = %start.stream_sid,
        parameters = ?start.custom_parameters.keys().collect::<Vec<_>>(),
        "media stream started"
    );

    if let Some(call_id) = start.custom_parameters.get(CALL_ID_PARAMETER) {
        join_outbound_call(&state, &mut permit, call_id, start.call_sid.as_deref()).await;
    }
    let mut setup = state.config.session_setup(Arc::clone(permit.session_id()));
    setup.env = state.env.clone();
    setup.custom_parameters = start.custom_parameters.clone();
    let report = run_session(&state, &permit, "twilio", setup, ends, Vec::new()).await;
    let server_shutdown = report.is_some_and(|report| report.end_reason == SHUTDOWN_REASON);
    let hung_up = socket
        .finish(state.twilio.rest.as_ref(), server_shutdown)
        .await;
    if let Some(result) = hung_up {
        state
            .metrics
            .hang_up(result.map_or("failed", |hang_up| hang_up.label()));
    }
    drop(permit);
}
