//! Refusals of the routes Pipecat's clients call (`/start`, the offers,
//! the ICE config) as JSON: `{"detail": "<reason>"}`, as Pipecat's own
//! runner (FastAPI) answers them.
//!
//! client-js's `startBot()` reads a failed response with `json()` and
//! takes `detail`; a plain-text body makes that throw, so the client never
//! raises its `StartBotError` (with the status), never calls `onError`,
//! and stays "authenticating". The handlers say why in text; this layer
//! turns every refusal of these routes into the JSON the client reads,
//! status and headers kept.

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;

/// Longest reason kept: handlers' reasons are a sentence.
const MAX_REASON: usize = 4 * 1024;

/// A refusal (a 4xx or 5xx not already JSON) with its reason as
/// `{"detail": …}`.
pub(crate) async fn as_json_detail(response: Response) -> Response {
    let failed = response.status().is_client_error() || response.status().is_server_error();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if !failed || json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let standard = || {
        parts
            .status
            .canonical_reason()
            .unwrap_or("refused")
            .to_owned()
    };
    // An empty body (a 405 from the method router) gets the status's
    // standard reason, as FastAPI gives it: client-js shows `detail` as is.
    let reason = match axum::body::to_bytes(body, MAX_REASON).await {
        Ok(bytes) if !bytes.is_empty() => String::from_utf8_lossy(&bytes).into_owned(),
        _ => standard(),
    };
    let detail = serde_json::json!({ "detail": reason }).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(detail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_text_refusal_becomes_json_with_its_status_and_headers() {
        let refused = (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            "the server is at capacity",
        )
            .into_response();
        let response = as_json_detail(refused).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            body(response).await,
            r#"{"detail":"the server is at capacity"}"#
        );
    }

    #[tokio::test]
    async fn an_empty_refusal_gets_its_statuss_reason() {
        let empty = StatusCode::METHOD_NOT_ALLOWED.into_response();
        assert_eq!(
            body(as_json_detail(empty).await).await,
            r#"{"detail":"Method Not Allowed"}"#
        );
    }

    #[tokio::test]
    async fn answers_and_json_pass_unchanged() {
        let ok = (StatusCode::OK, "fine").into_response();
        assert_eq!(body(as_json_detail(ok).await).await, "fine");
        let json = (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"detail": "x"})),
        )
            .into_response();
        assert_eq!(body(as_json_detail(json).await).await, r#"{"detail":"x"}"#);
    }
}
