//! A fake webhook receiver for tests: records each POST and answers with
//! scripted statuses (200 once the script is used up). A scripted 3xx
//! carries `Location: /landing`, a page answering any GET with 200.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

/// One received delivery.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Default)]
struct Inner {
    statuses: VecDeque<u16>,
    received: Vec<Received>,
    landings: usize,
    changed: Arc<tokio::sync::Notify>,
}

/// The running receiver.
#[derive(Clone)]
pub struct WebhookReceiver {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl WebhookReceiver {
    /// Starts on a free loopback port.
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/hook", post(receive))
            .route("/landing", get(landing))
            .with_state(Arc::clone(&inner));
        let addr = crate::support::net::serve(app).await;
        WebhookReceiver { addr, inner }
    }

    /// The URL to configure.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Answers the next POSTs with these statuses.
    pub fn fail_with(&self, statuses: impl IntoIterator<Item = u16>) {
        self.inner.lock().unwrap().statuses.extend(statuses);
    }

    /// GETs of the landing page a 3xx points to.
    pub fn landings(&self) -> usize {
        self.inner.lock().unwrap().landings
    }

    /// Waits until `n` deliveries have been received (at most `limit`).
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Received> {
        let changed = Arc::clone(&self.inner.lock().unwrap().changed);
        crate::support::wait::until_notified(&changed, limit, || {
            let received = self.received();
            (received.len() >= n).then_some(received)
        })
        .await
        .unwrap_or_else(|| panic!("{n} deliveries not received within {limit:?}"))
    }

    /// Everything received.
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = inner.lock().unwrap();
    inner.received.push(Received { headers, body });
    inner.changed.notify_waiters();
    let status = StatusCode::from_u16(inner.statuses.pop_front().unwrap_or(200)).unwrap();
    if status.is_redirection() {
        (status, [(header::LOCATION, "/landing")]).into_response()
    } else {
        status.into_response()
    }
}

async fn landing(State(inner): State<Arc<Mutex<Inner>>>) -> StatusCode {
    inner.lock().unwrap().landings += 1;
    StatusCode::OK
}
