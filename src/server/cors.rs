//! CORS: which pages on other origins may call the server
//! (`[server] cors_origins`).
//!
//! None by default, so only pages the server itself serves (same origin)
//! can call it: an open offer or `/start` endpoint lets any site start
//! sessions that spend the operator's STT, LLM and TTS keys. A listed
//! origin gets the CORS headers on its preflight (`OPTIONS`) and on the
//! requests; any other gets none, and the browser blocks the call. `"*"`
//! allows every origin, explicitly. Requests carry no cookies, so
//! credentials are never allowed. tower-http's `CorsLayer` does the work.

use std::time::Duration;

use axum::http::{HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::CorsOrigin;

/// How long a browser may cache a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The CORS layer for `origins`.
pub(crate) fn layer(origins: &[CorsOrigin]) -> CorsLayer {
    let allow_origin = if origins.iter().any(CorsOrigin::is_any) {
        AllowOrigin::any()
    } else {
        // Each was checked to be `scheme://host[:port]` when the file was
        // read, so each is a valid header value.
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.as_str()).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
        .max_age(PREFLIGHT_MAX_AGE)
}
