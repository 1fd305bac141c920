//! `GET /twilio/ws`: a Twilio media stream, run as one session.
//!
//! With an auth token, the upgrade must be signed and the `start` must
//! bring the call's token (see `stream_auth`); an unsigned upgrade gets 403
//! before a slot is taken, a stream without a valid token is closed (1008)
//! before its session starts.
//!
//! The connection takes a session slot before the WebSocket upgrade (over
//! the limit: 503, and Twilio ends the `<Connect>`); the Twilio transport
//! then reads the stream up to `start`, the session runs on its ends, and
//! the transport hangs up and closes the socket (see
//! [`StreamSocket`]); the slot is freed last.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tracing::Instrument as _;

use crate::transport::twilio::stream_token::{STREAM_TOKEN_PARAMETER, TokenError};
use crate::transport::twilio::{CallOptions, HangUpTarget, StreamSocket, socket};

use crate::outbound::CALL_ID_PARAMETER;

use super::live_sessions::SessionPermit;
use super::request::public_host;
use super::session::run_session;
use super::shutdown::SHUTDOWN_REASON;
use super::state::ServerState;
use super::stream_auth::{StreamProof, UsedToken};
use super::twilio_status::join_outbound_call;
use super::twilio_voice::signature_refusal_for;

/// `GET /twilio/ws`.
pub(crate) async fn stream(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    uri: Uri,
    upgrade: WebSocketUpgrade,
) -> Response {
    let host = public_host(&state.config.server, &headers);
    let auth = &state.twilio.stream_auth;
    if let Some(url) = auth.signed_upgrade_url(host.as_deref(), &headers, &uri)
        && let Some(refused) = signature_refusal_for(&state, &url, &headers, &uri, &[])
    {
        return refused;
    }
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
        send_ahead: CallOptions::send_ahead(
            state.config.transport.twilio.send_ahead_secs.duration(),
        ),
        read_interval: state.config.transport.twilio.read_interval_secs.duration(),
    };
    let rate = state.config.pipeline.sample_rate.hz();
    let Some((ends, socket)) = StreamSocket::accept(socket, rate, options).await else {
        return;
    };
    let start = socket.start();
    let checked = match state.twilio.stream_auth.verify_start(start) {
        Ok((proof, used)) => match used {
            Some(used) if !first_use_in_deployment(&state, &used).await => {
                Err(TokenError::Replayed)
            }
            _ => Ok(proof),
        },
        Err(refusal) => Err(refusal),
    };
    let proof = match checked {
        Ok(proof) => proof,
        Err(refusal) => {
            tracing::warn!(reason = %refusal, "media stream refused before its session");
            state.metrics.error(refusal.kind(), "twilio");
            socket.refuse(ends).await;
            return;
        }
    };
    tracing::Span::current().record("call_sid", start.call_sid.as_deref().unwrap_or("-"));
    tracing::info!(
        stream_sid = %start.stream_sid,
        parameters = ?start.custom_parameters.keys().collect::<Vec<_>>(),
        "media stream started"
    );

    let mut joined = None;
    if let Some(call_id) = start.custom_parameters.get(CALL_ID_PARAMETER) {
        joined = join_outbound_call(&state, &mut permit, call_id, start.call_sid.as_deref()).await;
    }
    // With the signature alone (or no check) no call is vouched for: the
    // stream's close ends the `<Connect>`, and no hang-up is tried.
    let vouched = !matches!(proof, StreamProof::Signed | StreamProof::Unchecked);
    let target = hang_up_target(proof, joined);
    let mut setup = state.config.session_setup(Arc::clone(permit.session_id()));
    setup.env = state.env.clone();
    setup.custom_parameters = start.custom_parameters.clone();
    setup.custom_parameters.remove(STREAM_TOKEN_PARAMETER);
    let report = run_session(&state, &permit, "twilio", setup, ends, Vec::new()).await;
    let server_shutdown = report.is_some_and(|report| report.end_reason == SHUTDOWN_REASON);
    let hung_up = socket
        .finish(
            state.twilio.rest.as_ref().filter(|_| vouched),
            target.as_ref(),
            server_shutdown,
        )
        .await;
    if let Some(result) = hung_up {
        state
            .metrics
            .hang_up(result.map_or("failed", |hang_up| hang_up.label()));
    }
    drop(permit);
}

/// Whether no server sharing this one's context store has accepted the
/// token `used` before (this server's own check has passed). Without a
/// store there is nothing to share; when the store fails, this server's
/// check stands alone, logged, rather than refusing the call.
async fn first_use_in_deployment(state: &ServerState, used: &UsedToken) -> bool {
    let Some(agent) = &state.agent else {
        return true;
    };
    match agent
        .store()
        .first_use_of_stream_token(&used.id, used.ttl_ms())
        .await
    {
        Ok(first) => first,
        Err(err) => {
            tracing::warn!(
                error = %err,
                "the context store did not answer: the stream token was checked on this server only"
            );
            true
        }
    }
}

/// The call to hang up if the stream drops, from what vouched for it: the
/// token's call, or an outbound call's SID from the server's record
/// (`joined`). None with the signature alone: it signs the stream's URL,
/// which says nothing of the call, so a captured signature can be replayed
/// with any `start` (closing the stream still ends the `<Connect>`); none
/// when unchecked.
fn hang_up_target(proof: StreamProof, joined: Option<String>) -> Option<HangUpTarget> {
    let (account_sid, call_sid) = match proof {
        StreamProof::Call {
            account_sid,
            call_sid,
        } => (account_sid, call_sid),
        StreamProof::Placed { account_sid } => (account_sid, joined?),
        StreamProof::Signed | StreamProof::Unchecked => return None,
    };
    Some(HangUpTarget {
        account_sid,
        call_sid,
    })
}
