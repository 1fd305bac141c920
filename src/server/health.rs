//! `GET /health`: liveness and readiness in one JSON answer.
//!
//! The server is live if it answers at all. It is ready when it admits new
//! sessions (not draining, not at capacity) and every registered
//! [`ReadinessCheck`](super::readiness::ReadinessCheck) passes (a context store registers one). Ready answers
//! 200, not ready 503, so a load balancer can use the status alone. A
//! check that is not required (object storage: uploads wait for it) is
//! reported, with `"required": false`, and leaves the server ready:
//!
//! ```json
//! {"status": "ok", "live": true, "ready": true, "pipeline": "parrot",
//!  "version": "0.1.0", "uptime_secs": 12.5,
//!  "sessions": {"active": 3, "max": 200, "accepting": true},
//!  "checks": {"store": {"ok": true}}}
//! ```
//!
//! `GET /health/live` is liveness alone: 200 whenever the process answers,
//! whatever its store, for a Kubernetes `livenessProbe` (a store outage
//! must take a server out of rotation, not restart it); `/health` is the
//! `readinessProbe`.
//!
//! The checks run as [`run_checks`] says: concurrently, each bounded by
//! [`CHECK_TIMEOUT`](super::readiness::CHECK_TIMEOUT).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Map, Value, json};

use super::readiness::run_checks;
use super::state::ServerState;

/// `GET /health/live`.
pub(crate) async fn live() -> impl IntoResponse {
    Json(json!({"live": true}))
}

/// `GET /health`.
pub(crate) async fn health(State(state): State<Arc<ServerState>>) -> impl IntoResponse {
    let results = run_checks(&state.readiness).await;
    let mut checks = Map::new();
    let mut checks_ok = true;
    for (name, required, result) in results {
        let entry = match result {
            Ok(()) => json!({"ok": true}),
            Err(error) if !required => json!({"ok": false, "required": false, "error": error}),
            Err(error) => {
                checks_ok = false;
                json!({"ok": false, "error": error})
            }
        };
        checks.insert(name, entry);
    }
    let admission = state.sessions.check();
    let ready = checks_ok && admission.is_ok();
    let mut sessions = json!({
        "active": state.sessions.active(),
        "max": state.sessions.max(),
        "accepting": admission.is_ok(),
    });
    if let Err(refusal) = admission {
        sessions["refusing"] = Value::from(refusal.kind());
    }
    let body = json!({
        "status": if ready { "ok" } else { "unavailable" },
        "live": true,
        "ready": ready,
        "pipeline": state.config.pipeline.name,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": state.started.elapsed().as_secs_f64(),
        "sessions": sessions,
        "checks": checks,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
