//! `POST /api/campaigns`, `GET /api/campaigns/{id}`, and
//! `POST /api/campaigns/{id}/pause|resume|cancel`.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::outbound::campaign::{CampaignError, CampaignRequest, new_campaign_id};
use crate::store::time::unix_ms;
use crate::store::{CampaignCommand, CampaignProgress, Store, StoreError};

use super::api_access::ApiAuthorized;
use super::body::json_rejection;
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
    body: Result<Json<CampaignRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => return json_rejection(rejection),
    };
    let Some(store) = store(&state) else {
        return no_store();
    };
    let (campaign, created) = match request.plan(new_campaign_id(), unix_ms()) {
        Ok(planned) => planned,
        Err(CampaignError::NoNumbers { rejected }) => {
            let body = json!({ "error": "no row has a usable number", "rejected": rejected });
            return (StatusCode::BAD_REQUEST, Json(body)).into_response();
        }
        Err(err) => return error(StatusCode::BAD_REQUEST, err),
    };
    if let Err(err) = store.create_campaign(&campaign).await {
        return store_error(&err);
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
