//! Who may use the management API: `/api/calls`, `/api/campaigns`,
//! `/api/analytics`, `/api/chat`, `/api/learn`. These place calls that cost money and reach people, so
//! the API is off unless `[server] api_token_env` names a bearer key
//! (`Authorization: Bearer <key>`, compared in constant time) or
//! `[server] api_open = true` opens it without one, for local development
//! only.

use axum::Json;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::session_token::same;

/// The API's access rule.
#[derive(Clone)]
pub(crate) enum ApiAccess {
    /// Requests need this bearer key.
    Token(String),
    /// Anyone may call (`api_open = true`).
    Open,
    /// Neither configured: every request is refused.
    Off,
}

impl ApiAccess {
    /// The rule for a server whose `api_token_env` held `token`.
    pub(crate) fn new(token: Option<String>, open: bool) -> ApiAccess {
        match (token, open) {
            (Some(token), _) => ApiAccess::Token(token),
            (None, true) => ApiAccess::Open,
            (None, false) => ApiAccess::Off,
        }
    }

    /// Whether `headers` may use the API.
    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<(), ApiRefused> {
        match self {
            ApiAccess::Open => Ok(()),
            ApiAccess::Off => Err(ApiRefused::Off),
            ApiAccess::Token(expected) => match bearer(headers) {
                Some(given) if same(given.as_bytes(), expected.as_bytes()) => Ok(()),
                _ => Err(ApiRefused::Unauthorized),
            },
        }
    }
}

impl std::fmt::Debug for ApiAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ApiAccess::Token(_) => "ApiAccess::Token(<redacted>)",
            ApiAccess::Open => "ApiAccess::Open",
            ApiAccess::Off => "ApiAccess::Off",
        })
    }
}

/// The key of an `Authorization: Bearer <key>` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("bearer "))
        .map(|_| value[7..].trim())
}

/// Why an API request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApiRefused {
    /// No or a wrong bearer key: 401.
    Unauthorized,
    /// The API is not configured: 403, saying how to turn it on.
    Off,
}

impl IntoResponse for ApiRefused {
    fn into_response(self) -> Response {
        match self {
            ApiRefused::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(json!({ "error": "a bearer key is required" })),
            )
                .into_response(),
            ApiRefused::Off => (
                StatusCode::FORBIDDEN,
                Json(json!({
                    "error": "the API is off: set [server] api_token_env to the variable \
                              holding its bearer key (or api_open = true, for local \
                              development only)"
                })),
            )
                .into_response(),
        }
    }
}

/// A handler argument: the request may use the API (else it is answered
/// with [`ApiRefused`] before the handler runs). Generic over the router's
/// state (which yields its [`ApiAccess`]), so this module needs no other.
pub(crate) struct ApiAuthorized;

impl<S: Send + Sync> FromRequestParts<S> for ApiAuthorized
where
    ApiAccess: FromRef<S>,
{
    type Rejection = ApiRefused;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        ApiAccess::from_ref(state)
            .check(&parts.headers)
            .map(|()| ApiAuthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_auth(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn a_token_is_required_unless_opened() {
        let token = ApiAccess::new(Some("s3cret".into()), false);
        assert_eq!(token.check(&with_auth("Bearer s3cret")), Ok(()));
        assert_eq!(token.check(&with_auth("bearer s3cret")), Ok(()));
        assert_eq!(
            token.check(&with_auth("Bearer wrong")),
            Err(ApiRefused::Unauthorized)
        );
        assert_eq!(
            token.check(&HeaderMap::new()),
            Err(ApiRefused::Unauthorized)
        );
        assert_eq!(
            ApiAccess::new(None, false).check(&with_auth("Bearer s3cret")),
            Err(ApiRefused::Off)
        );
        assert_eq!(ApiAccess::new(None, true).check(&HeaderMap::new()), Ok(()));
        assert!(!format!("{token:?}").contains("s3cret"));
    }
}
