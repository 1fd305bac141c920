//! `POST /api/learn`: a transcript to learn from (a call handled by a
//! person, or by an AI agent elsewhere), as `voxpipe learn` takes one.
//!
//! ```json
//! {"transcript": [{"role": "agent", "text": "..."}, {"role": "customer", "text": "..."}],
//!  "outcome": "closed_deal", "agent": "human"}
//! ```
//!
//! `transcript` may also be text, `Agent:`/`Customer:` lines. Answers 200
//! with what was learned (`pairs`, `skills`, `test_cases_added`), 400 naming
//! the field that is wrong, 404 when the pipeline has no `[learning]`, 503
//! when the model, the embedder or the store is down (the test cases
//! already written stay; submitting again stores nothing twice).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::api_access::ApiAuthorized;
use super::state::ServerState;
use crate::agent::learning::{
    DealOutcome, HandledBy, Submission, parse_json_turns, parse_transcript,
};

/// The largest body: a long call's transcript.
pub(crate) const MAX_LEARN_BODY: usize = 1024 * 1024;

/// The fields a request may have.
const FIELDS: [&str; 3] = ["transcript", "outcome", "agent"];

pub(crate) async fn learn(
    State(state): State<Arc<ServerState>>,
    _authorized: ApiAuthorized,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let Some(learner) = state.agent.as_ref().and_then(|agent| agent.learner()) else {
        return error(
            StatusCode::NOT_FOUND,
            None,
            "the pipeline has no enabled [learning] section".into(),
        );
    };
    let body = match body {
        Ok(Json(body)) => body,
        Err(rejection) => return super::body::json_rejection(rejection),
    };
    let submission = match submission(&body) {
        Ok(submission) => submission,
        Err((field, message)) => return error(StatusCode::BAD_REQUEST, field, message),
    };
    match learner.learn_submission(&submission).await {
        Ok(report) => Json(report).into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "learning from a submitted transcript failed");
            // The model, the embedder or the store was down: worth retrying.
            error(StatusCode::SERVICE_UNAVAILABLE, None, err.to_string())
        }
    }
}

/// The submission `body` holds, or the field that is wrong and why.
fn submission(body: &Value) -> Result<Submission, (Option<&'static str>, String)> {
    let Some(object) = body.as_object() else {
        return Err((None, "expected a JSON object".into()));
    };
    if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err((
            None,
            format!("unknown field `{unknown}`, expected transcript, outcome or agent"),
        ));
    }
    let text = |field: &'static str| match object.get(field) {
        None => Err((Some(field), format!("`{field}` is missing"))),
        Some(Value::String(text)) => Ok(text.as_str()),
        Some(_) => Err((Some(field), format!("`{field}` must be a string"))),
    };
    let outcome = DealOutcome::parse(text("outcome")?).ok_or((
        Some("outcome"),
        "`outcome` must be closed_deal or lost_deal".into(),
    ))?;
    let agent = HandledBy::parse(text("agent")?)
        .ok_or((Some("agent"), "`agent` must be human or ai".into()))?;
    let bad_transcript = |message: String| (Some("transcript"), format!("`transcript`: {message}"));
    let turns = match object.get("transcript") {
        None => return Err(bad_transcript("missing".into())),
        Some(Value::String(text)) => parse_transcript(text),
        Some(turns @ Value::Array(_)) => parse_json_turns(turns),
        Some(_) => {
            return Err(bad_transcript(
                "expected a list of turns {\"role\", \"text\"} or `Agent:`/`Customer:` lines"
                    .into(),
            ));
        }
    }
    .map_err(|err| bad_transcript(err.to_string()))?;
    Submission::new(turns, outcome, agent).map_err(bad_transcript)
}

fn error(status: StatusCode, field: Option<&str>, message: String) -> Response {
    let mut body = json!({ "error": message });
    if let Some(field) = field {
        body["field"] = json!(field);
    }
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(body: Value) -> (Option<&'static str>, String) {
        submission(&body).unwrap_err()
    }

    #[test]
    fn names_the_field_that_is_wrong() {
        let turns = json!([{"role": "customer", "text": "Too expensive."}]);
        assert!(
            submission(&json!({"transcript": turns, "outcome": "closed_deal", "agent": "human"}))
                .is_ok()
        );
        assert_eq!(
            field(json!({"transcript": turns, "outcome": "won", "agent": "human"})).0,
            Some("outcome")
        );
        assert_eq!(
            field(json!({"transcript": turns, "outcome": "lost_deal"})).0,
            Some("agent")
        );
        assert_eq!(
            field(json!({"transcript": 3, "outcome": "lost_deal", "agent": "ai"})).0,
            Some("transcript")
        );
        let (at, message) =
            field(json!({"transcript": "Agent: hi", "outcome": "lost_deal", "agent": "ai"}));
        assert_eq!(at, Some("transcript"));
        assert!(message.contains("no customer turn"), "{message}");
        assert!(
            field(json!({"transcript": turns, "outcome": "lost_deal", "agent": "ai", "x": 1}))
                .1
                .contains("unknown field `x`")
        );
    }
}
