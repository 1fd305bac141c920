//! `POST /start` and `GET /api/ice-config`: the session flow of Pipecat's
//! runner (`pipecat.runner.run`), as `@pipecat-ai/client-js`'s
//! `startBot()` / `startBotAndConnect()` use it.
//!
//! `/start` takes the runner's body (`{"transport": "webrtc", "body": {…},
//! "enableDefaultIceServers": false}`, every member optional, an empty
//! body too) and answers `{"sessionId": …, "iceConfig": {"iceServers":
//! […]}}`. The client then offers on `/sessions/{sessionId}/api/offer`
//! (it derives that path from the `/start` URL), and the `body` becomes
//! the session's custom parameters. The ICE servers are
//! `[transport.webrtc] ice_servers`, TURN credentials included (minted
//! per request from a shared secret when so configured); as in Pipecat's
//! runner, a server with none gives Google's public STUN server to a
//! client that asks with `enableDefaultIceServers`. Nothing runs until the
//! offer: a session that never offers expires after
//! `[server] session_ttl_secs`.
//!
//! `GET /api/ice-config` answers the same `{"iceServers": […]}` for pages
//! that offer on `/api/offer` directly. Pipecat's runner has no such
//! route (its clients get the servers from `/start` only).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::pipeline::new_session_id;
use crate::transport::webrtc::{IceServer, session_parameters};

use super::admission::ClientAddr;
use super::state::ServerState;
use super::webrtc_offer::admit_offer;

/// The STUN server Pipecat's runner hands out for `enableDefaultIceServers`.
const DEFAULT_STUN: &str = "stun:stun.l.google.com:19302";

/// `POST /start`'s body, as Pipecat's runner reads it; other members (a
/// Daily room's properties) are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartRequest {
    #[serde(default)]
    transport: Option<String>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    enable_default_ice_servers: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct IceConfig {
    ice_servers: Vec<IceServer>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StartAnswer {
    session_id: String,
    /// Left out with no servers, as Pipecat's runner does: the
    /// SmallWebRTC transport takes any `iceConfig.iceServers`, an empty
    /// list included, in place of the servers the page configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    ice_config: Option<IceConfig>,
}

/// `POST /start`.
pub(crate) async fn start(
    State(state): State<Arc<ServerState>>,
    client: ClientAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(refused) = admit_offer(&state, &client, &headers) {
        return refused.into_response();
    }
    let request = match parse(body) {
        Ok(request) => request,
        Err(refused) => return refused.into_response(),
    };
    if let Some(transport) = request.transport.as_deref().filter(|t| *t != "webrtc") {
        return (
            StatusCode::BAD_REQUEST,
            format!("transport `{transport}` is not served here; only `webrtc`"),
        )
            .into_response();
    }
    if let Err(refusal) = state.sessions.check() {
        state.metrics.session_refused("webrtc", refusal.kind());
        return busy(refusal.to_string());
    }
    // Behind a load balancer the id names this process, so the session's
    // follow-up requests (offer, trickle, renegotiation) reach it.
    let id = match &state.config.server.server_id {
        Some(server) => format!("{}-{}", server.as_str(), new_session_id()),
        None => new_session_id(),
    };
    let admission = &state.admission;
    let now = Instant::now();
    let parameters = session_parameters(request.body.as_ref());
    let waiting =
        admission
            .pending()
            .insert(id.clone(), parameters, now + admission.session_ttl, now);
    if let Err(full) = waiting {
        tracing::warn!(reason = %full, "/start refused");
        state.metrics.session_refused("webrtc", "start_table_full");
        return busy(full.to_string());
    }
    tracing::info!(call_id = %id, "session started; waiting for its offer");
    let session_id = admission
        .session_key
        .sign(&id, SystemTime::now(), admission.session_ttl);
    Json(StartAnswer {
        session_id,
        ice_config: Some(ice_config(&state, request.enable_default_ice_servers))
            .filter(|config| !config.ice_servers.is_empty()),
    })
    .into_response()
}

/// No session can be started now: 503, try again in a few seconds.
fn busy(reason: String) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "5")],
        reason,
    )
        .into_response()
}

/// `GET /api/ice-config`.
pub(crate) async fn ice_config_route(
    State(state): State<Arc<ServerState>>,
    client: ClientAddr,
    headers: HeaderMap,
) -> Response {
    match admit_offer(&state, &client, &headers) {
        Ok(()) => Json(ice_config(&state, false)).into_response(),
        Err(refused) => refused.into_response(),
    }
}

fn parse(body: Result<Bytes, BytesRejection>) -> Result<StartRequest, (StatusCode, String)> {
    let body = body.map_err(|rejection| {
        let status = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        (status, rejection.body_text())
    })?;
    // `startBot()` without `requestData` posts no body at all.
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(StartRequest::default());
    }
    serde_json::from_slice(&body).map_err(|err| {
        (
            StatusCode::BAD_REQUEST,
            format!("the body is not a /start request: {err}"),
        )
    })
}

fn ice_config(state: &ServerState, default_stun: bool) -> IceConfig {
    let mut ice_servers = state.webrtc.ice_servers().at(SystemTime::now());
    if ice_servers.is_empty() && default_stun {
        ice_servers.push(IceServer {
            urls: vec![DEFAULT_STUN.to_owned()],
            username: None,
            credential: None,
        });
    }
    IceConfig { ice_servers }
}
