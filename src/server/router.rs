//! The HTTP routes.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use super::webrtc_offer;

use super::state::ServerState;
use super::twilio_voice::STREAM_PATH;
use super::{client_page, health, metrics, twilio_stream, twilio_voice};

/// The largest request body: webhooks are small forms, SDP offers a few
/// kilobytes.
const MAX_BODY: usize = 64 * 1024;

pub(crate) fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/metrics", get(metrics::metrics))
        .route("/twilio/voice", post(twilio_voice::voice))
        .route(STREAM_PATH, get(twilio_stream::stream))
        .route(
            "/api/offer",
            post(webrtc_offer::offer).patch(webrtc_offer::patch),
        )
        .route("/", get(client_page::index))
        .route("/client.js", get(client_page::script))
        .route("/client.css", get(client_page::style))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}
