//! `POST /api/campaigns`, `GET /api/campaigns/{id}`, and
//! `POST /api/campaigns/{id}/pause|resume|cancel`.
//!
//! With an `Idempotency-Key` header, retries of a create make one campaign:
//! its id is made from the key, the store writes a campaign id once, and a
//! retry is answered as the first request was (`201`, the same body) with
//! `Idempotent-Replayed: true`; 422 when the key made another campaign, 409
//! while the first request is still writing it.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::outbound::campaign::{CampaignError, CampaignRequest, new_campaign_id};
use crate::store::time::unix_ms;
use crate::store::{CampaignCommand, CampaignProgress, CampaignWrite, Store, StoreError};

use super::api_access::ApiAuthorized;
use super::body::json_rejection;
use super::idempotency::{id_of_key, idempotency_key};
use super::state::ServerState;

/// The largest campaign body: 100,000 numbers with a few parameters.
pub(crate) const MAX_CAMPAIGN_BODY: usize = 16 * 1024 * 1024;

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

fn store_error(err: &StoreError) -> Response {
    tracing::warn!(error = %err, "campaign store error");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the store is unavailable; try again",
    )
}

/// The store, when this server keeps state.
fn store(state: &ServerState) -> Option<&Arc<dyn Store>> {
    state.agent.as_ref().map(|agent| agent.store())
}

fn no_store() -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "this server has no store")
}

/// `POST /api/campaigns`: `201 {campaign_id, queued, duplicates, rejected}`.
pub(crate) async fn create(
    _: ApiAuthorized,
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Result<Json<CampaignRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => return json_rejection(rejection),
    };
    let Some(store) = store(&state) else {
        return no_store();
    };
    let (campaign_id, keyed) = match idempotency_key(&headers) {
        Ok(Some(key)) => (id_of_key("campaign", key, 8), true),
        Ok(None) => (new_campaign_id(), false),
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let (campaign, created) = match request.plan(campaign_id, unix_ms()) {
        Ok(planned) => planned,
        Err(CampaignError::NoNumbers { rejected }) => {
            let body = json!({ "error": "no row has a usable number", "rejected": rejected });
            return (StatusCode::BAD_REQUEST, Json(body)).into_response();
        }
        Err(err) => return error(StatusCode::BAD_REQUEST, err),
    };
    match store.create_campaign(&campaign).await {
        Ok(CampaignWrite::Created) => {}
        Ok(CampaignWrite::Existing) => {
            tracing::info!(
                campaign_id = created.campaign_id,
                "a retried campaign request: answered as before, not created again"
            );
            if let Some(runner) = &state.campaigns {
                runner.wake();
            }
            return (
                StatusCode::CREATED,
                [("idempotent-replayed", "true")],
                Json(created),
            )
                .into_response();
        }
        Ok(CampaignWrite::Conflict) if keyed => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "this Idempotency-Key was used for another campaign",
            );
        }
        // A random id another campaign has: as rare as a 64-bit collision.
        Ok(CampaignWrite::Conflict) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the campaign id was taken; try again",
            );
        }
        Ok(CampaignWrite::InProgress) => {
            return (
                StatusCode::CONFLICT,
                [(header::RETRY_AFTER, "1")],
                Json(json!({
                    "error": "a request with this Idempotency-Key is still creating the campaign; try again"
                })),
            )
                .into_response();
        }
        Err(err) => return store_error(&err),
    }
    tracing::info!(
        campaign_id = created.campaign_id,
        queued = created.queued,
        duplicates = created.duplicates,
        rejected = created.rejected.len(),
        "campaign created"
    );
    if let Some(runner) = &state.campaigns {
        runner.wake();
    }
    (StatusCode::CREATED, Json(created)).into_response()
}

/// `GET /api/campaigns/{id}`: its state and entries by status.
pub(crate) async fn show(
    _: ApiAuthorized,
    State(state): State<Arc<ServerState>>,
    Path(id): Path<String>,
) -> Response {
    let Some(store) = store(&state) else {
        return no_store();
    };
    match store.campaign(&id).await {
        Ok(Some(progress)) => Json(progress_json(&id, &progress)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such campaign"),
        Err(err) => store_error(&err),
    }
}

fn progress_json(id: &str, progress: &CampaignProgress) -> serde_json::Value {
    let settings: serde_json::Value =
        serde_json::from_str(&progress.settings).unwrap_or(serde_json::Value::Null);
    json!({
        "campaign_id": id,
        "state": progress.state.as_str(),
        "total": progress.total,
        "pending": progress.pending.saturating_sub(progress.scheduled_retries),
        "scheduled_retries": progress.scheduled_retries,
        "active": progress.active,
        "done": progress.done.values().sum::<u64>(),
        "by_status": progress.done,
        "rejected_rows": progress.rejected,
        "settings": settings,
    })
}

/// `POST /api/campaigns/{id}/{pause|resume|cancel}`: `{campaign_id, state}`.
pub(crate) async fn command(
    _: ApiAuthorized,
    State(state): State<Arc<ServerState>>,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    let command = match action.as_str() {
        "pause" => CampaignCommand::Pause,
        "resume" => CampaignCommand::Resume,
        "cancel" => CampaignCommand::Cancel,
        _ => return error(StatusCode::NOT_FOUND, "use pause, resume or cancel"),
    };
    let Some(store) = store(&state) else {
        return no_store();
    };
    match store.command_campaign(&id, command).await {
        Ok(Some(after)) => {
            tracing::info!(
                campaign_id = id,
                state = after.as_str(),
                "campaign {action}"
            );
            if let Some(runner) = &state.campaigns {
                runner.wake();
            }
            Json(json!({ "campaign_id": id, "state": after.as_str() })).into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, "no such campaign"),
        Err(err) => store_error(&err),
    }
}
