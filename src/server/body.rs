//! Request bodies that cannot be read: too large is `413`, anything else
//! (not JSON, the wrong shape, the wrong content type) `400`, with the
//! reason, so a page's developer sees what to fix: as `{"error"}` (the
//! API's other errors' shape), or, on the routes Pipecat's clients call,
//! as text the `signalling_errors` layer answers as `{"detail"}`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The status and the reason of a JSON body that could not be read.
pub(crate) fn unread_body(rejection: &JsonRejection) -> (StatusCode, String) {
    let status = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::BAD_REQUEST
    };
    (status, rejection.body_text())
}

/// The response to a JSON body that could not be read: `{"error"}`.
pub(crate) fn json_rejection(rejection: JsonRejection) -> Response {
    let (status, reason) = unread_body(&rejection);
    (status, Json(json!({ "error": reason }))).into_response()
}
