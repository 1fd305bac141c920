//! The HTTP routes.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use super::state::ServerState;
use super::twilio_voice::STREAM_PATH;
use super::{health, metrics, twilio_stream, twilio_voice};

/// The largest request body: webhooks are small forms.
const MAX_BODY: usize = 64 * 1024;

pub(crate) fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/metrics", get(metrics::metrics))
        .route("/twilio/voice", post(twilio_voice::voice))
        .route(STREAM_PATH, get(twilio_stream::stream))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}
