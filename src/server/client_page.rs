//! `GET /`: the browser client (`assets/client/`), built into the binary so
//! that `voxpipe serve` needs no files beside its pipeline.

use axum::http::header;
use axum::response::IntoResponse;

const INDEX: &str = include_str!("../../assets/client/index.html");
const SCRIPT: &str = include_str!("../../assets/client/client.js");
const STYLE: &str = include_str!("../../assets/client/client.css");

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // A new binary may bring a new client: always revalidate.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// `GET /`.
pub(crate) async fn index() -> impl IntoResponse {
    asset("text/html; charset=utf-8", INDEX)
}

/// `GET /client.js`.
pub(crate) async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /client.css`.
pub(crate) async fn style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", STYLE)
}
