//! [`Admission`]: who may start a call, before any session slot is spent.
//!
//! Three checks, each optional, in this order:
//!
//! - **Rate**: offers, `/start` and `/api/ice-config` are counted per
//!   client address ([`RateLimiter`]); over the limit: `429` with
//!   `Retry-After`. The address is the TCP peer's: behind a reverse proxy
//!   every client shares the proxy's, so give the proxy its own limits.
//! - **Bearer key** (`[server] start_token_env`): `/start`,
//!   `/api/ice-config` and `/api/offer` need `Authorization: Bearer <key>`
//!   (compared in constant time); without it: `401`. Meant for a backend
//!   that calls `/start` for its browser, which then offers on the
//!   session's own path, carrying no key.
//! - **Session** (`/sessions/{sessionId}/api/offer`): the signed id
//!   ([`SessionKey`]) and the waiting session ([`PendingSessions`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::config::ServerSection;

use super::api_access::bearer;
use super::pending_sessions::PendingSessions;
use super::rate_limit::{Decision, RateLimiter};
use super::session_token::{SessionKey, same};

/// The admission state of a server.
pub(crate) struct Admission {
    limiter: Mutex<RateLimiter>,
    start_token: Option<String>,
    pub(crate) session_key: SessionKey,
    pub(crate) session_ttl: Duration,
    pending: Mutex<PendingSessions>,
}

impl Admission {
    /// From `[server]`, the secrets already read.
    pub(crate) fn new(
        config: &ServerSection,
        start_token: Option<String>,
        session_key: SessionKey,
    ) -> Self {
        Admission {
            limiter: Mutex::new(RateLimiter::new(
                config.rate_limit_per_minute,
                config.rate_limit_burst.get(),
                config.rate_limit_addresses.get(),
            )),
            start_token,
            session_key,
            session_ttl: config.session_ttl_secs.duration(),
            pending: Mutex::new(PendingSessions::new(config.max_sessions.get())),
        }
    }

    /// The sessions waiting for their offer.
    pub(crate) fn pending(&self) -> MutexGuard<'_, PendingSessions> {
        // Each change is one insert or remove: a panic cannot leave the
        // table half-changed.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a request from `client`.
    pub(crate) fn limit(&self, client: &ClientAddr) -> Result<(), Refused> {
        let Some(addr) = client.0 else {
            return Ok(());
        };
        let decision = self
            .limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .check(addr, Instant::now());
        match decision {
            Decision::Allowed => Ok(()),
            Decision::Limited { retry_after } => {
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                tracing::info!(retry_after_secs = secs, "request rate limited");
                Err(Refused::RateLimited {
                    retry_after_secs: secs.max(1),
                })
            }
        }
    }

    /// Checks the bearer key, when one is configured.
    pub(crate) fn authorize(&self, headers: &HeaderMap) -> Result<(), Refused> {
        let Some(expected) = &self.start_token else {
            return Ok(());
        };
        let given = bearer(headers);
        match given {
            Some(given) if same(given.as_bytes(), expected.as_bytes()) => Ok(()),
            _ => Err(Refused::Unauthorized),
        }
    }
}

/// A request refused before it could start anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Over the client's rate limit: 429.
    RateLimited { retry_after_secs: u64 },
    /// No or a wrong bearer key: 401.
    Unauthorized,
}

impl Refused {
    /// A short stable label for metrics.
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Refused::RateLimited { .. } => "rate_limited",
            Refused::Unauthorized => "unauthorized",
        }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::RateLimited { retry_after_secs } => (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, retry_after_secs.to_string())],
                "too many requests from this address; retry later",
            )
                .into_response(),
            Refused::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "a bearer key is required",
            )
                .into_response(),
        }
    }
}

/// The client's address, when the server was served with connection info
/// (an embedding router may not be: then nothing is rate limited).
pub(crate) struct ClientAddr(pub(crate) Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}
