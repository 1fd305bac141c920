//! Serving HTTP/1 connections with deadlines on what the client sends.
//!
//! `axum::serve` gives hyper no timer, so hyper's header deadline never
//! runs, and nothing bounds a request body: a client sending one byte of
//! its headers (or body) every few seconds keeps resetting the idle timer
//! ([`super::connections`]) and holds a task and a descriptor for ever.
//! Here each connection is served by hyper with a timer:
//!
//! - a request's headers must be complete within
//!   `[server] http_header_timeout_secs` of the server starting to wait
//!   for them (the connection opened, or the previous response went out),
//!   or the connection is closed (so an idle keep-alive connection is
//!   closed after that long too);
//! - a request's body must be read in full within
//!   `[server] http_body_timeout_secs` of the request's start: past it the
//!   body fails, the handler answers 400 and the connection is closed.
//!
//! Upgraded connections (the Twilio WebSocket) are no longer HTTP and are
//! bounded by the stream's own limits. On the shutdown signal no new
//! connection is accepted and open ones finish their request and close,
//! as `axum::serve` does.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;
use tokio::time::Sleep;
use tower::ServiceExt as _;

/// How long a client may take to send a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestDeadlines {
    /// From waiting for a request (a new connection, or the previous
    /// response sent) to the end of its headers.
    pub(crate) headers: Duration,
    /// From a request's start to the end of its body.
    pub(crate) body: Duration,
}

/// Serves `app` on `listener` until `signal` resolves, then lets open
/// connections finish; returns when they have.
pub(crate) async fn serve<L>(
    mut listener: L,
    app: Router,
    deadlines: RequestDeadlines,
    signal: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()>
where
    L: Listener<Addr = SocketAddr>,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        signal.await;
        let _ = stop_tx.send(true);
    });
    // Every connection task holds a receiver: when the last is gone, all
    // have finished.
    let (open_tx, open_rx) = watch::channel(());
    let mut stopping = stop_rx.clone();
    loop {
        let (io, addr) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopping.wait_for(|stop| *stop) => break,
        };
        let service = app
            .clone()
            .map_request(move |mut request: axum::http::Request<Incoming>| {
                // The client's address, for the rate limits.
                request.extensions_mut().insert(ConnectInfo(addr));
                request.map(|body| Body::new(DeadlineBody::new(body, deadlines.body)))
            });
        let mut stop = stop_rx.clone();
        let open = open_rx.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(deadlines.headers);
            let connection = builder
                .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
                .with_upgrades();
            let mut connection = std::pin::pin!(connection);
            let mut draining = false;
            loop {
                tokio::select! {
                    served = connection.as_mut() => {
                        if let Err(err) = served {
                            tracing::debug!(error = %err, "connection closed");
                        }
                        break;
                    }
                    _ = stop.wait_for(|stop| *stop), if !draining => {
                        draining = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(open);
        });
    }
    drop(open_rx);
    drop(listener);
    open_tx.closed().await;
    Ok(())
}

/// A request body that fails once its deadline has passed.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, within: Duration) -> Self {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(within)),
        }
    }
}

/// A request body not received within `[server] http_body_timeout_secs`.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received in time")]
struct BodyTimedOut;

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error(transparent)]
    TimedOut(#[from] BodyTimedOut),
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(BodyError::from))),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    tracing::info!("request body not received in time: closing the connection");
                    Poll::Ready(Some(Err(BodyTimedOut.into())))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
