//! A fake webhook receiver for tests: records each POST and answers with
//! scripted statuses (200 once the script is used up).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

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

    /// Everything received.
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut inner = inner.lock().unwrap();
    inner.received.push(Received { headers, body });
    let status = inner.statuses.pop_front().unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}
