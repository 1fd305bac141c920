//! A real S3-compatible server for tests: `s3s` (the S3 protocol: SigV4
//! signature checks, XML, multipart uploads) over a temporary folder
//! (`s3s-fs`), served in process on a loopback port. One key pair is
//! accepted ([`ACCESS_KEY`], [`SECRET_KEY`]); anything else is refused
//! with 403, as AWS does.
//!
//! The test controls it: [`S3Server::stop`] and [`S3Server::start_again`]
//! take it down and bring it back on the same port (storage down, then up),
//! [`S3Server::fail_parts`] makes every multipart part after the first fail
//! (an upload interrupted midway), [`S3Server::hold_parts`] holds the parts
//! only (an upload caught midway), [`S3Server::stall`] holds every request
//! without an answer (a worker stuck mid-upload). Every answered request is
//! logged ([`S3Server::requests`]) and notifies [`S3Server::changed`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use s3s::auth::SimpleAuth;
use s3s::service::{S3ServiceBuilder, SharedS3Service};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};

/// The access key the server accepts.
pub const ACCESS_KEY: &str = "test-access-key";
/// Its secret.
pub const SECRET_KEY: &str = "test-secret-key-0123456789";
/// The one bucket.
pub const BUCKET: &str = "calls";

/// One request the server answered.
#[derive(Debug, Clone)]
pub struct Logged {
    /// `PUT`, `GET`, `POST`, ...
    pub method: String,
    /// The path (`/calls/key`).
    pub path: String,
    /// The query string, if any.
    pub query: String,
    /// The answer's status.
    pub status: u16,
}

#[derive(Default)]
struct Control {
    fail_parts: AtomicBool,
    hold_parts: AtomicBool,
    parts_released: Notify,
    arrived: AtomicUsize,
    log: Mutex<Vec<Logged>>,
    changed: Notify,
}

/// A running S3-compatible server.
pub struct S3Server {
    addr: SocketAddr,
    root: tempfile::TempDir,
    control: Arc<Control>,
    stall: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl S3Server {
    /// A server with the bucket [`BUCKET`], on a free loopback port.
    pub async fn start() -> S3Server {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let listener = super::net::loopback_listener().await;
        let addr = listener.local_addr().unwrap();
        let (stall, _) = watch::channel(false);
        let mut server = S3Server {
            addr,
            root,
            control: Arc::new(Control::default()),
            stall,
            task: None,
        };
        server.serve(listener);
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Notified after each answered request.
    pub fn changed(&self) -> &Notify {
        &self.control.changed
    }

    /// Requests received so far, answered or held.
    pub fn arrived(&self) -> usize {
        self.control.arrived.load(Ordering::SeqCst)
    }

    /// Every answered request so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.control.log.lock().unwrap().clone()
    }

    /// Successful writes of `key` (single PUTs and completed multipart
    /// uploads).
    pub fn writes_of(&self, key: &str) -> usize {
        let path = format!("/{BUCKET}/{key}");
        self.requests()
            .iter()
            .filter(|r| r.path == path && r.status == 200)
            .filter(|r| {
                (r.method == "PUT" && !r.query.contains("partNumber"))
                    || (r.method == "POST" && r.query.contains("uploadId"))
            })
            .count()
    }

    /// Makes every multipart part after the first fail with 500 (or stop
    /// failing).
    pub fn fail_parts(&self, fail: bool) {
        self.control.fail_parts.store(fail, Ordering::SeqCst);
    }

    /// Holds every multipart part unanswered until released, then
    /// performs it; other requests (an abort) are answered meanwhile: an
    /// upload caught midway.
    pub fn hold_parts(&self, hold: bool) {
        self.control.hold_parts.store(hold, Ordering::SeqCst);
        self.control.parts_released.notify_waiters();
    }

    /// Holds every request unanswered until un-stalled, then refuses it
    /// with 503 without performing it: the client gave up long before (a
    /// worker killed mid-upload).
    pub fn stall(&self, stall: bool) {
        self.stall.send_replace(stall);
    }

    /// The objects as stored on disk: `(key, bytes)`, sorted. Parts of
    /// unfinished multipart uploads live outside the bucket's folder and
    /// are not objects.
    pub fn objects(&self) -> Vec<(String, Vec<u8>)> {
        let bucket = self.root.path().join(BUCKET);
        let mut found = Vec::new();
        let mut dirs = vec![bucket.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let key = path.strip_prefix(&bucket).unwrap();
                    found.push((
                        key.to_string_lossy().into_owned(),
                        std::fs::read(&path).unwrap(),
                    ));
                }
            }
        }
        found.sort();
        found
    }

    /// Takes the server down: the port refuses connections and open ones
    /// are cut.
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _cancelled = task.await;
        }
    }

    /// Brings a stopped server back on the same port, with the same objects.
    pub async fn start_again(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let service = {
            let fs = s3s_fs::FileSystem::new(self.root.path()).unwrap();
            let mut builder = S3ServiceBuilder::new(fs);
            builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            builder.build().into_shared()
        };
        let control = Arc::clone(&self.control);
        let stall = self.stall.subscribe();
        self.task = Some(tokio::spawn(async move {
            // Dropped with this task: every connection ends with it.
            let mut connections = JoinSet::new();
            while let Ok((socket, _)) = listener.accept().await {
                let service = service.clone();
                let control = Arc::clone(&control);
                let stall = stall.clone();
                connections.spawn(async move {
                    let handler = service_fn(move |request| {
                        answer(
                            service.clone(),
                            Arc::clone(&control),
                            stall.clone(),
                            request,
                        )
                    });
                    let _closed = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), handler)
                        .await;
                });
            }
        }));
    }
}

async fn answer(
    service: SharedS3Service,
    control: Arc<Control>,
    mut stall: watch::Receiver<bool>,
    request: Request<Incoming>,
) -> Result<Response<s3s::Body>, Infallible> {
    control.arrived.fetch_add(1, Ordering::SeqCst);
    control.changed.notify_waiters();
    let held = *stall.borrow_and_update();
    // The guard it returns must not live across the awaits below.
    let _released = stall.wait_for(|stalled| !stalled).await.map(|_| ());
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let is_part = query.contains("partNumber=");
    if is_part {
        loop {
            let released = control.parts_released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if !control.hold_parts.load(Ordering::SeqCst) {
                break;
            }
            released.await;
        }
    }
    let later_part = query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("partNumber="))
        .any(|n| n != "1");
    let injected = |status| {
        let mut response = Response::new(s3s::Body::from(
            "<Error><Code>InternalError</Code><Message>injected</Message></Error>".to_owned(),
        ));
        *response.status_mut() = status;
        response
    };
    let response = if held {
        injected(hyper::StatusCode::SERVICE_UNAVAILABLE)
    } else if later_part && control.fail_parts.load(Ordering::SeqCst) {
        injected(hyper::StatusCode::INTERNAL_SERVER_ERROR)
    } else {
        match service.as_ref().call(request.map(s3s::Body::from)).await {
            Ok(response) => response,
            Err(err) => {
                let mut response = Response::new(s3s::Body::from(format!("{err:?}")));
                *response.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                response
            }
        }
    };
    control.log.lock().unwrap().push(Logged {
        method,
        path,
        query,
        status: response.status().as_u16(),
    });
    control.changed.notify_waiters();
    Ok(response)
}
