//! What the fake WebSocket providers share: a script per connection, a
//! record per connection, and a notification whenever a record changes, so
//! a test waits on what the server saw instead of polling it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::handler::Handler;
use axum::http::HeaderMap;
use axum::routing::get;
use tokio::sync::Notify;

use crate::support::net;
use crate::support::wait::until_notified;

/// What a fake socket server is told to do and what it saw: a script per
/// connection, in order (the default once they run out), and a record per
/// connection.
pub struct Scripted<S, C> {
    scripts: Mutex<VecDeque<S>>,
    records: Mutex<Vec<C>>,
    changed: Notify,
}

impl<S, C> Default for Scripted<S, C> {
    fn default() -> Self {
        Scripted {
            scripts: Mutex::new(VecDeque::new()),
            records: Mutex::new(Vec::new()),
            changed: Notify::new(),
        }
    }
}

impl<S: Default, C: Clone> Scripted<S, C> {
    /// The script of the next connection.
    pub fn next_script(&self) -> S {
        self.scripts.lock().unwrap().pop_front().unwrap_or_default()
    }

    /// Records a new connection; returns its index.
    pub fn record(&self, record: C) -> usize {
        let index = {
            let mut records = self.records.lock().unwrap();
            records.push(record);
            records.len() - 1
        };
        self.changed.notify_waiters();
        index
    }

    /// Changes the record of connection `index`.
    pub fn update(&self, index: usize, change: impl FnOnce(&mut C)) {
        change(&mut self.records.lock().unwrap()[index]);
        self.changed.notify_waiters();
    }
}

/// A running fake socket server.
pub struct Fake<S, C> {
    /// Where it listens (`ws://127.0.0.1:PORT...`).
    pub url: String,
    state: Arc<Scripted<S, C>>,
}

impl<S, C> Clone for Fake<S, C> {
    fn clone(&self) -> Self {
        Fake {
            url: self.url.clone(),
            state: Arc::clone(&self.state),
        }
    }
}

impl<S: Default, C: Clone> Fake<S, C> {
    /// Serves `handshake` at the route `route` (over a fresh script and
    /// record); `url` is the socket at `path`.
    pub async fn serve<H, T>(route: &str, handshake: H, path: &str) -> Self
    where
        H: Handler<T, Arc<Scripted<S, C>>>,
        T: 'static,
        S: Send + 'static,
        C: Send + 'static,
    {
        let state = Arc::new(Scripted::default());
        let router = Router::new()
            .route(route, get(handshake))
            .with_state(Arc::clone(&state));
        let addr = net::serve(router).await;
        Fake {
            url: format!("ws://{addr}{path}"),
            state,
        }
    }

    /// The behaviour of the next connection (later ones behave normally).
    pub fn push_script(&self, script: S) {
        self.state.scripts.lock().unwrap().push_back(script);
    }

    /// What each connection saw.
    pub fn connections(&self) -> Vec<C> {
        self.state.records.lock().unwrap().clone()
    }

    /// Waits until what the connections saw satisfies `done` (woken by each
    /// change); panics, naming `what`, if that takes over 10 s.
    pub async fn wait_until(&self, what: &str, done: impl Fn(&[C]) -> bool) -> Vec<C> {
        let limit = Duration::from_secs(10);
        until_notified(&self.state.changed, limit, || {
            let connections = self.connections();
            done(&connections).then_some(connections)
        })
        .await
        .unwrap_or_else(|| panic!("the fake server saw no {what} within {limit:?}"))
    }
}

/// The value of the header `name`, if it is there and readable.
pub fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
