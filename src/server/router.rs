//! The HTTP routes.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};

use super::analytics;
use super::message_delivery::MESSAGE_STATUS_PATH;
use super::state::ServerState;
use super::twilio_voice::STREAM_PATH;
use super::{
    campaigns, chat, client_page, cors, health, learn, message_status, outbound_calls,
    session_offer, signalling_errors, start, twilio_messaging, twilio_status, twilio_stream,
    twilio_voice, webrtc_offer,
};
use crate::outbound::{AMD_PATH, STATUS_PATH};

/// The largest request body: webhooks are small forms, SDP offers a few
/// kilobytes.
const MAX_BODY: usize = 64 * 1024;

pub(crate) fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/health/live", get(health::live))
        .route(
            "/metrics",
            get(|State(state): State<Arc<ServerState>>| async move {
                let agent = state.agent.as_ref();
                let more: String = [
                    agent
                        .and_then(|a| a.optimiser_metrics())
                        .map(|m| m.render()),
                    agent.and_then(|a| a.webhook_metrics()).map(|m| m.render()),
                    agent
                        .and_then(|a| a.recording_uploader())
                        .map(|u| u.render_metrics()),
                    state.text.as_ref().map(|t| t.render_metrics()),
                ]
                .into_iter()
                .flatten()
                .collect();
                state.metrics.exposition(Some(more))
            }),
        )
        .route("/twilio/voice", post(twilio_voice::voice))
        .route("/twilio/messaging", post(twilio_messaging::messaging))
        .route(MESSAGE_STATUS_PATH, post(message_status::status))
        .route("/api/chat", post(chat::chat))
        .route(STATUS_PATH, post(twilio_status::callback))
        .route(AMD_PATH, post(twilio_status::callback))
        .route("/api/calls", post(outbound_calls::create))
        .route(
            "/api/calls/{call_id}",
            get(outbound_calls::get).delete(outbound_calls::delete),
        )
        .route(STREAM_PATH, get(twilio_stream::stream))
        .merge(signalling())
        .route("/api/analytics", get(analytics::analytics))
        .route(
            "/api/campaigns",
            post(campaigns::create).layer(DefaultBodyLimit::max(campaigns::MAX_CAMPAIGN_BODY)),
        )
        .route("/api/campaigns/{id}", get(campaigns::show))
        .route("/api/campaigns/{id}/{action}", post(campaigns::command))
        .route("/", get(client_page::index))
        .route("/client.js", get(client_page::script))
        .route("/client.css", get(client_page::style))
        .route(
            "/api/learn",
            post(learn::learn).layer(DefaultBodyLimit::max(learn::MAX_LEARN_BODY)),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(close_after_refused_body))
        .layer(cors::layer(&state.config.server.cors_origins))
        .with_state(state)
}

/// The routes Pipecat's clients call, their refusals as JSON
/// ([`signalling_errors`]).
fn signalling() -> Router<Arc<ServerState>> {
    Router::new()
        .route(
            "/api/offer",
            post(webrtc_offer::offer).patch(webrtc_offer::patch),
        )
        .route("/start", post(start::start))
        .route("/api/ice-config", get(start::ice_config_route))
        .route(
            "/sessions/{session}/api/offer",
            post(session_offer::offer).patch(session_offer::patch),
        )
        .layer(axum::middleware::map_response(
            signalling_errors::as_json_detail,
        ))
}

/// A `413` leaves the refused body unread, so the connection cannot carry
/// another request and is closed after the response. Saying so keeps a
/// client from pooling it: without the header its next request would be
/// written into a connection the server is closing, and fail.
async fn close_after_refused_body(mut response: Response) -> Response {
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
