//! A fake Twilio REST API for tests: the Calls resource's update
//! (`POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`), as
//! Twilio's API reference describes it: form-encoded body, HTTP basic auth
//! with the account SID and auth token, 200 with the call as JSON, 401
//! (code 20003) for bad credentials.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use tokio::sync::Notify;

use crate::support::net;
use crate::support::wait::until_notified;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct HangUpRequest {
    pub account_sid: String,
    pub call_sid: String,
    pub path: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub form: Vec<(String, String)>,
    pub at: Instant,
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<HangUpRequest>>,
    changed: Notify,
}

/// The fake API, listening on a free loopback port.
pub struct FakeTwilioRest {
    pub base_url: String,
    shared: Arc<Shared>,
}

struct AppState {
    shared: Arc<Shared>,
    auth_token: String,
}

async fn update_call(
    State(state): State<Arc<AppState>>,
    Path((account_sid, call)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call_sid = call.strip_suffix(".json").unwrap_or(&call).to_owned();
    let (username, password) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(u, p)| (Some(u.to_owned()), Some(p.to_owned())))
        })
        .unwrap_or((None, None));
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let request = HangUpRequest {
        account_sid: account_sid.clone(),
        call_sid: call_sid.clone(),
        path: format!("/2010-04-01/Accounts/{account_sid}/Calls/{call}"),
        username: username.clone(),
        password: password.clone(),
        form,
        at: Instant::now(),
    };
    state.shared.requests.lock().unwrap().push(request);
    state.shared.changed.notify_waiters();
    if username.as_deref() != Some(account_sid.as_str())
        || password.as_deref() != Some(state.auth_token.as_str())
    {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({
                "code": 20003, "message": "Authenticate", "status": 401,
                "more_info": "https://www.twilio.com/docs/errors/20003"
            })),
        )
            .into_response();
    }
    axum::Json(serde_json::json!({
        "account_sid": account_sid,
        "sid": call_sid,
        "status": "completed",
        "api_version": "2010-04-01",
        "uri": format!("/2010-04-01/Accounts/{account_sid}/Calls/{call_sid}.json"),
    }))
    .into_response()
}

impl FakeTwilioRest {
    /// Starts the fake, accepting `auth_token` as the account's token.
    pub async fn start(auth_token: &str) -> Self {
        let shared = Arc::new(Shared::default());
        let state = Arc::new(AppState {
            shared: Arc::clone(&shared),
            auth_token: auth_token.to_owned(),
        });
        let app = Router::new()
            .route(
                "/2010-04-01/Accounts/{account}/Calls/{call}",
                post(update_call),
            )
            .with_state(state);
        let addr = net::serve(app).await;
        FakeTwilioRest {
            base_url: format!("http://{addr}"),
            shared,
        }
    }

    pub fn requests(&self) -> Vec<HangUpRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Waits until `n` requests have come, or panics after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<HangUpRequest> {
        until_notified(&self.shared.changed, timeout, || {
            let requests = self.requests();
            (requests.len() >= n).then_some(requests)
        })
        .await
        .unwrap_or_else(|| panic!("expected {n} hang-up requests, got {:?}", self.requests()))
    }
}
