//! The server, run in-process on a free loopback port, with a recorder of
//! how each session went.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use voxpipe::agent::AgentRuntime;
use voxpipe::config::Override;
use voxpipe::frame::{Direction, FrameBody};
use voxpipe::outbound::CallSettled;
use voxpipe::pipeline::EnvSource;
use voxpipe::pipeline::{Observer, PipelineOutcome, PushEvent};
use voxpipe::pipeline_file::{load_pipeline, parse_pipeline};
use voxpipe::server::{ReadinessCheck, Server, ServerError};

use super::net;
use super::processors::registry;
use super::wait::until_notified;

/// `[transport.twilio]` for a fake REST API at `base_url`, the auth token
/// in `TWILIO_AUTH_TOKEN`.
pub fn twilio_rest_section(base_url: &str) -> String {
    format!(
        "[transport.twilio]\nauth_token_env = \"TWILIO_AUTH_TOKEN\"\napi_base_url = \"{base_url}\"\n"
    )
}

/// What one session saw.
#[derive(Debug, Clone, Default)]
pub struct SessionRecord {
    pub session_id: String,
    pub custom_parameters: BTreeMap<String, String>,
    /// Keys the caller pressed, as frames entering the pipeline.
    pub keys: Vec<char>,
    /// Interruptions that went down the chain.
    pub interruptions: usize,
    /// Session times at which the output cut the bot (`BotInterrupted`).
    pub bot_cut_at: Vec<Duration>,
    /// Set when the session is over.
    pub end_reason: Option<String>,
    pub cancelled: bool,
}

#[derive(Default)]
pub struct SessionLog {
    sessions: Mutex<Vec<SessionRecord>>,
    changed: Notify,
}

impl SessionLog {
    pub fn all(&self) -> Vec<SessionRecord> {
        self.sessions.lock().unwrap().clone()
    }

    /// Waits until `n` sessions have ended, or panics after `timeout`.
    pub async fn ended(&self, n: usize, timeout: Duration) -> Vec<SessionRecord> {
        until_notified(&self.changed, timeout, || {
            let ended: Vec<SessionRecord> = self
                .all()
                .into_iter()
                .filter(|s| s.end_reason.is_some())
                .collect();
            (ended.len() >= n).then_some(ended)
        })
        .await
        .unwrap_or_else(|| panic!("expected {n} sessions to end; sessions: {:?}", self.all()))
    }

    /// Waits until the session `id` has been set up, or panics after
    /// `timeout`.
    pub async fn wait_started(&self, id: &str, timeout: Duration) {
        until_notified(&self.changed, timeout, || {
            self.all().iter().any(|s| s.session_id == id).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("session {id} never started; sessions: {:?}", self.all()))
    }

    fn update(&self, index: usize, change: impl FnOnce(&mut SessionRecord)) {
        if let Some(record) = self.sessions.lock().unwrap().get_mut(index) {
            change(record);
        }
        self.changed.notify_waiters();
    }
}

struct Recorder {
    log: Arc<SessionLog>,
    index: usize,
}

impl Observer for Recorder {
    fn on_push(&self, event: &PushEvent<'_>) {
        let downstream = event.direction == Direction::Downstream;
        match &event.frame.body {
            FrameBody::Dtmf { digit } if event.from == "transport.input" => {
                let digit = *digit;
                self.log.update(self.index, |r| r.keys.push(digit));
            }
            FrameBody::Interruption if downstream && event.from == "source" => {
                self.log.update(self.index, |r| r.interruptions += 1);
            }
            FrameBody::BotInterrupted { .. } if downstream && event.from == "transport.output" => {
                let at = event.at;
                self.log.update(self.index, |r| r.bot_cut_at.push(at));
            }
            _ => {}
        }
    }

    fn on_pipeline_end(&self, outcome: &PipelineOutcome, _at: Duration) {
        let reason = outcome.end_reason.clone();
        let cancelled = outcome.cancelled;
        self.log.update(self.index, |r| {
            r.end_reason = Some(reason);
            r.cancelled = cancelled;
        });
    }
}

/// A server under test.
pub struct TestServer {
    pub addr: SocketAddr,
    pub sessions: Arc<SessionLog>,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

/// How to start one.
pub struct Setup<'a> {
    /// The pipeline TOML, or `None` to load `path` from disk.
    pub toml: Option<&'a str>,
    pub path: &'a str,
    pub overrides: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
    pub readiness: Vec<Arc<dyn ReadinessCheck>>,
    /// Keeps each session's conversation in this context store.
    pub context: Option<Arc<AgentRuntime>>,
    /// Told of outbound calls that settle.
    pub settled: Vec<Arc<dyn CallSettled>>,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Setup {
            toml: None,
            path: "pipelines/parrot.toml",
            overrides: &[],
            env: &[],
            readiness: Vec::new(),
            context: None,
            settled: Vec::new(),
        }
    }
}

impl TestServer {
    /// Serves `pipelines/parrot.toml` with `overrides`.
    pub async fn parrot(overrides: &[&str]) -> Self {
        Self::start(Setup {
            overrides,
            ..Setup::default()
        })
        .await
    }

    /// Serves the pipeline written in `toml`, with `overrides`.
    pub async fn with_toml(toml: &str, overrides: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start(Setup {
            toml: Some(toml),
            path: "test.toml",
            overrides,
            env,
            ..Setup::default()
        })
        .await
    }

    pub async fn start(setup: Setup<'_>) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
        let registry = registry();
        let overrides: Vec<Override> = setup.overrides.iter().map(|o| o.parse().unwrap()).collect();
        let config = match setup.toml {
            Some(toml) => {
                let mut config = parse_pipeline(Path::new(setup.path), toml, &registry).unwrap();
                if !overrides.is_empty() {
                    let dir = tempfile::tempdir().unwrap();
                    let file = dir.path().join(setup.path);
                    std::fs::write(&file, toml).unwrap();
                    config = load_pipeline(&file, &overrides, &registry).unwrap();
                }
                config
            }
            None => {
                let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(setup.path);
                load_pipeline(&path, &overrides, &registry).unwrap()
            }
        };
        let env: HashMap<String, String> = setup
            .env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let sessions = Arc::new(SessionLog::default());
        let log = Arc::clone(&sessions);
        let mut builder = Server::builder(config).env(EnvSource::Fixed(Arc::new(env)));
        for check in setup.readiness {
            builder = builder.readiness_check(check);
        }
        for listener in setup.settled {
            builder = builder.on_call_settled(listener);
        }
        if let Some(context) = setup.context {
            builder = builder.context(context);
        }
        let server = builder
            .session_observer(move |setup| {
                let mut all = log.sessions.lock().unwrap();
                all.push(SessionRecord {
                    session_id: setup.session_id.to_string(),
                    custom_parameters: setup.custom_parameters.clone(),
                    ..SessionRecord::default()
                });
                let index = all.len() - 1;
                drop(all);
                log.changed.notify_waiters();
                Arc::new(Recorder {
                    log: Arc::clone(&log),
                    index,
                })
            })
            .build()
            .unwrap();
        let listener = net::loopback_listener().await;
        let addr = listener.local_addr().unwrap();
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async move {
            let _ = signal.await;
        }));
        TestServer {
            addr,
            sessions,
            shutdown: Some(shutdown),
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Starts a graceful shutdown (as SIGTERM does).
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Shuts down gracefully and waits for the server to stop.
    pub async fn shutdown(mut self, timeout: Duration) -> Result<(), ServerError> {
        self.begin_shutdown();
        tokio::time::timeout(timeout, &mut self.task)
            .await
            .expect("the server stops")
            .unwrap()
    }

    /// `GET path` as text, with its status.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(self.url(path)).await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// The value of the metric line starting with `series`, or 0.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, text) = self.get("/metrics").await;
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0.0, |v| v.parse().unwrap())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
