//! The browser client in real headless Chromium: loads the served page,
//! connects with a fake microphone playing the sample speech, and checks
//! that the parrot's audio reaches the page and the transcript shows the
//! events (see `tests/browser/call.mjs`).
//!
//! Needs Debian's `chromium` and `npm ci` in `tests/browser/`; `.ci/run`
//! installs both. Without them this test fails, saying what is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod webrtc_support;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use voxpipe::pipeline::SessionClock;
use voxpipe::session::{SessionOptions, SessionSetup, new_session_id, run_session};
use voxpipe::transport::webrtc::{
    OfferRequest, PatchRequest, SignallingError, WebRtcSettings, WebRtcSignalling,
};
use webrtc_support::{RATE, parrot_config};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[derive(Clone)]
struct App {
    signalling: WebRtcSignalling,
}

fn refused(err: SignallingError) -> Response {
    let status = match err {
        SignallingError::UnknownPeer(_) => StatusCode::NOT_FOUND,
        SignallingError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    (status, err.to_string()).into_response()
}

async fn offer(State(app): State<App>, Json(request): Json<OfferRequest>) -> Response {
    if let Some(answer) = app.signalling.reoffer(request.clone()).await {
        return answer.map_or_else(refused, |a| Json(a).into_response());
    }
    let session_id: Arc<str> = new_session_id().into();
    let (answer, mut call) = match app.signalling.accept(request, session_id.clone()).await {
        Ok(accepted) => accepted,
        Err(err) => return refused(err),
    };
    tokio::spawn(async move {
        let config = parrot_config();
        let mut setup = SessionSetup::for_pipeline(&config, session_id);
        setup.custom_parameters = call.custom_parameters().clone();
        let Some(ends) = call.take_ends() else { return };
        let options = SessionOptions {
            setup,
            clock: SessionClock::wall(),
            observers: vec![call.observer()],
        };
        if let Err(err) = run_session(&config, ends, options).await {
            eprintln!("session failed: {err}");
        }
        call.close().await;
    });
    Json(answer).into_response()
}

async fn patch(State(app): State<App>, Json(request): Json<PatchRequest>) -> Response {
    match app.signalling.patch(request).await {
        Ok(()) => Json(serde_json::json!({"status": "success"})).into_response(),
        Err(err) => refused(err),
    }
}

fn asset(name: &'static str, mime: &'static str) -> axum::routing::MethodRouter<App> {
    get(move || async move {
        let body = std::fs::read(repo().join("assets/client").join(name)).unwrap();
        ([(header::CONTENT_TYPE, mime)], body)
    })
}

async fn serve() -> std::net::SocketAddr {
    let app = App {
        signalling: WebRtcSignalling::new(WebRtcSettings::loopback(), RATE),
    };
    let router = Router::new()
        .route("/", asset("index.html", "text/html; charset=utf-8"))
        .route("/client.js", asset("client.js", "text/javascript"))
        .route("/client.css", asset("client.css", "text/css"))
        .route("/api/offer", post(offer).patch(patch))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.exists(),
        "no Chromium at {}: install Debian's `chromium` (apt-get install chromium; .ci/run does) or set CHROMIUM",
        path.display()
    );
    path
}

fn browser_tests() -> PathBuf {
    let dir = repo().join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci` in {} (.ci/run does)",
        dir.display()
    );
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_client_talks_to_the_parrot() {
    let chromium = chromium();
    let dir = browser_tests();
    let addr = serve().await;
    let wav = repo().join("assets/samples/hello.wav");
    let screenshot = std::env::var_os("VOXPIPE_SCREENSHOT").map(PathBuf::from);

    let mut node = tokio::process::Command::new("node");
    node.current_dir(&dir)
        .arg("call.mjs")
        .args(["--url", &format!("http://{addr}/")])
        .arg("--wav")
        .arg(&wav)
        .env("CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(path) = &screenshot {
        node.arg("--screenshot").arg(path);
    }
    let output = tokio::time::timeout(Duration::from_secs(90), node.output())
        .await
        .expect("the browser test finishes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser call failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let seen: serde_json::Value = serde_json::from_str(&stdout).expect("the script prints JSON");
    assert!(seen["maxBotLevel"].as_f64().unwrap() > 0.01, "{seen}");
}
