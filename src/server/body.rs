//! Request bodies that cannot be read: too large is `413`, anything else
//! (not JSON, the wrong shape, the wrong content type) `400`, with the
//! reason as `{"error"}` (the API's other errors' shape), so a page's
//! developer sees what to fix.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The response to a JSON body that could not be read.
pub(crate) fn json_rejection(rejection: JsonRejection) -> Response {
    let status = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::BAD_REQUEST
    };
    (status, Json(json!({ "error": rejection.body_text() }))).into_response()
}
