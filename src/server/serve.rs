//! [`Server`]: one pipeline served to many callers. Building it checks
//! that every session's processors can be built and resolves secrets;
//! serving it runs the HTTP routes until shutdown, then drains the
//! sessions.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;

use crate::agent::AgentRuntime;
use crate::config::ServerSection;
use crate::outbound::campaign::{CampaignRunner, CampaignSettlement, CampaignStats, RunnerOptions};
use crate::outbound::{CallSettled, Dialer, TwilioDialer};
use crate::pipeline::Observer;
use crate::pipeline::{EnvSource, SessionSetup};
use crate::pipeline_file::PipelineConfig;
use crate::text::{TextConversations, TextError, text_path};
use crate::transport::twilio::TwilioRest;
use crate::transport::webrtc::{WebRtcSettings, WebRtcSignalling};

use super::admission::Admission;
use super::api_access::ApiAccess;
use super::connections::{BoundedListener, raise_open_file_limit};
use super::error::ServerError;
use super::live_sessions::LiveSessions;
use super::message_sender::MessageSender;
use super::metrics::ServerMetrics;
use super::readiness::ReadinessCheck;
use super::session_token::SessionKey;
use super::state::{ObserverFactory, ServerState, TwilioState};
use super::storage_readiness::StorageReadiness;
use super::store_readiness::StoreReadiness;
use super::stream_auth::StreamAuth;

/// Sets a server up: the pipeline, where secrets come from, extra
/// readiness checks and session observers.
pub struct ServerBuilder {
    config: PipelineConfig,
    env: EnvSource,
    readiness: Vec<Arc<dyn ReadinessCheck>>,
    observers: Vec<ObserverFactory>,
    agent: Option<Arc<AgentRuntime>>,
    call_settled: Vec<Arc<dyn CallSettled>>,
    dialer: Option<Arc<dyn Dialer>>,
    campaign_options: RunnerOptions,
}

impl ServerBuilder {
    /// Places outbound calls through `dialer` (with a context store, the
    /// server then also runs campaigns).
    pub fn dialer(mut self, dialer: Arc<dyn Dialer>) -> Self {
        self.dialer = Some(dialer);
        self
    }

    /// Paces the campaign worker with `options` instead of the defaults.
    pub fn campaign_options(mut self, options: RunnerOptions) -> Self {
        self.campaign_options = options;
        self
    }

    /// Tells `listener` of every outbound call this server sees reach its
    /// final status.
    pub fn on_call_settled(mut self, listener: Arc<dyn CallSettled>) -> Self {
        self.call_settled.push(listener);
        self
    }

    /// Reads `*_env` variables from `env` instead of the process
    /// environment.
    pub fn env(mut self, env: EnvSource) -> Self {
        self.env = env;
        self
    }

    /// Adds a check that `GET /health` runs for readiness.
    pub fn readiness_check(mut self, check: Arc<dyn ReadinessCheck>) -> Self {
        self.readiness.push(check);
        self
    }

    /// Adds an observer, made fresh for each session.
    pub fn session_observer(
        mut self,
        make: impl Fn(&SessionSetup) -> Arc<dyn Observer> + Send + Sync + 'static,
    ) -> Self {
        self.observers.push(Arc::new(make));
        self
    }

    /// Keeps each session's conversation in `context`'s store: its memory
    /// is opened before its processors are built, and a shutdown waits for
    /// the writers. `/health` then checks the store, and object storage if
    /// configured.
    pub fn context(mut self, context: Arc<AgentRuntime>) -> Self {
        self.readiness
            .push(Arc::new(StoreReadiness(Arc::clone(&context))));
        if let Some(objects) = context.objects() {
            self.readiness
                .push(Arc::new(StorageReadiness(objects.clone())));
        }
        self.agent = Some(context);
        self
    }

    /// Resolves secrets (an unset one is an error naming it) and builds the
    /// server.
    pub fn build(self) -> Result<Server, ServerError> {
        let ServerBuilder {
            config,
            env,
            readiness,
            observers,
            agent,
            mut call_settled,
            dialer,
            campaign_options,
        } = self;
        // Every session builds the same processors: one that cannot be
        // built now (a secret not set) would fail every call.
        let mut probe = config.session_setup("startup-check");
        probe.env = env.clone();
        if let Some(agent) = &agent {
            agent.install_tools(&probe.resources);
        }
        for entry in &config.processors {
            entry
                .factory
                .build(&probe)
                .map_err(|source| ServerError::Processor {
                    processor: entry.name.clone(),
                    source,
                })?;
        }
        let twilio_config = &config.transport.twilio;
        let auth_token = match &twilio_config.auth_token_env {
            None => None,
            Some(var) => match env.get(var) {
                Some(token) if !token.is_empty() => Some(token),
                _ => {
                    return Err(ServerError::MissingEnv {
                        key: "transport.twilio.auth_token_env".into(),
                        var: var.clone(),
                    });
                }
            },
        };
        let rest = match &auth_token {
            Some(token) if twilio_config.hang_up => Some(
                TwilioRest::new(twilio_config.api_base_url.as_str(), token.clone())
                    .map_err(ServerError::TwilioRest)?,
            ),
            _ => None,
        };
        let admission = admission(&config.server, &env)?;
        let api = ApiAccess::new(
            read_secret(&env, "server.api_token_env", &config.server.api_token_env)?,
            config.server.api_open,
        );
        let metrics = Arc::new(ServerMetrics::new());
        let sessions = LiveSessions::new(
            config.server.max_sessions.get(),
            metrics.sessions_active.clone(),
        );
        let twilio = TwilioState {
            stream_auth: StreamAuth::new(twilio_config, auth_token.as_deref()),
            auth_token,
            rest,
            stats: metrics.transport_stats("twilio"),
        };
        // Campaign calls settle through any server's listener (the state
        // is in the store), so it is in place before the dialler is made.
        if let Some(agent) = &agent
            && (config.outbound.is_some() || dialer.is_some())
        {
            call_settled.push(Arc::new(CampaignSettlement::new(Arc::clone(agent.store()))));
        }
        call_settled.push(Arc::clone(&metrics) as Arc<dyn CallSettled>);
        let outbound = match &config.outbound {
            None => None,
            Some(section) => {
                let runtime = agent.clone().ok_or(ServerError::OutboundWithoutContext)?;
                Some(Arc::new(TwilioDialer::from_sections(
                    section,
                    &config.transport.twilio,
                    config.server.public_host.as_ref().map(|host| host.as_str()),
                    config.context.default_segment(),
                    &env,
                    runtime,
                    call_settled.clone(),
                )?))
            }
        };
        let dialer = dialer.or_else(|| outbound.clone().map(|dialer| dialer as Arc<dyn Dialer>));
        let campaigns = match (&dialer, &agent) {
            (Some(dialer), Some(agent)) => {
                let runner = CampaignRunner::new(
                    Arc::clone(agent.store()),
                    Arc::clone(dialer),
                    campaign_options,
                )
                .with_stats(Arc::clone(&metrics) as Arc<dyn CampaignStats>);
                Some(runner)
            }
            _ => None,
        };
        let text = text_conversations(&config, &env, agent.as_ref())?;
        let messaging = match (
            &twilio.auth_token,
            read_secret(
                &env,
                "transport.twilio.account_sid_env",
                &twilio_config_sid(&config),
            )?,
        ) {
            (Some(token), Some(account_sid)) if text.is_some() => Some(MessageSender::new(
                TwilioRest::new(config.transport.twilio.api_base_url.as_str(), token.clone())
                    .map_err(ServerError::TwilioRest)?,
                account_sid,
            )),
            _ => None,
        };
        let webrtc = WebRtcSignalling::new(
            WebRtcSettings::from_config(&config.transport.webrtc, &env)?,
            config.pipeline.sample_rate.hz(),
        )
        .with_stats(metrics.transport_stats("webrtc"));
        let state = Arc::new(ServerState {
            config,
            env,
            sessions,
            metrics,
            readiness,
            observers,
            agent,
            twilio,
            webrtc,
            admission,
            api,
            outbound,
            campaigns,
            started: Instant::now(),
            text,
            messaging,
            answers: super::in_flight::InFlight::default(),
            message_marks: super::message_marks::MessageMarks::default(),
        });
        super::twilio_messaging::warn_at_start(&state);
        Ok(Server { state })
    }
}

/// The value of the variable `var` that the key `key` names, when it names
/// one: unset or empty is an error naming both.
fn read_secret(
    env: &EnvSource,
    key: &str,
    var: &Option<String>,
) -> Result<Option<String>, ServerError> {
    match var {
        None => Ok(None),
        Some(var) => match env.get(var) {
            Some(value) if !value.is_empty() => Ok(Some(value)),
            _ => Err(ServerError::MissingEnv {
                key: key.into(),
                var: var.clone(),
            }),
        },
    }
}

fn twilio_config_sid(config: &PipelineConfig) -> Option<String> {
    config.transport.twilio.account_sid_env.clone()
}

/// The text conversations of the pipeline's text path, when it has one
/// and calls are kept (they live in the store).
fn text_conversations(
    config: &PipelineConfig,
    env: &EnvSource,
    agent: Option<&Arc<AgentRuntime>>,
) -> Result<Option<Arc<TextConversations>>, ServerError> {
    let Some(agent) = agent else {
        return Ok(None);
    };
    if text_path(&config.processors).is_empty() {
        return Ok(None);
    }
    let mut base = config.session_setup("text");
    base.env = env.clone();
    match TextConversations::new(
        &config.processors,
        base,
        Arc::clone(agent),
        config.text.clone(),
    ) {
        Ok(conversations) => Ok(Some(Arc::new(conversations))),
        Err(TextError::NoTextPath) => Ok(None),
        Err(err) => Err(ServerError::Text(err)),
    }
}

/// `[server]`'s admission settings with their secrets read.
fn admission(config: &ServerSection, env: &EnvSource) -> Result<Admission, ServerError> {
    let start_token = read_secret(env, "server.start_token_env", &config.start_token_env)?;
    let session_key = match read_secret(env, "server.session_key_env", &config.session_key_env)? {
        Some(key) => SessionKey::new(key.as_bytes()),
        None => SessionKey::random()
            .ok_or_else(|| std::io::Error::other("no system randomness for the session key"))?,
    };
    Ok(Admission::new(config, start_token, session_key))
}

/// A pipeline served over HTTP: each Twilio media stream and each browser
/// call is a fresh session of it. The `server` module's docs list the
/// endpoints.
pub struct Server {
    state: Arc<ServerState>,
}

impl Server {
    /// A server for `config`.
    pub fn builder(config: PipelineConfig) -> ServerBuilder {
        ServerBuilder {
            config,
            env: EnvSource::Process,
            readiness: Vec::new(),
            observers: Vec::new(),
            agent: None,
            call_settled: Vec::new(),
            dialer: None,
            campaign_options: RunnerOptions::default(),
        }
    }

    /// The HTTP routes, for embedding in another server.
    pub fn router(&self) -> axum::Router {
        super::router::router(Arc::clone(&self.state))
    }

    /// Sessions running now (including connections still in their
    /// handshake).
    pub fn active_sessions(&self) -> usize {
        self.state.sessions.active()
    }

    /// Serves on `listener` until `shutdown` resolves, then shuts down
    /// gracefully: no new connections or sessions, calls go on until
    /// `[server] shutdown_deadline_secs`, are then ended (their turns
    /// complete), and are cancelled if still running after
    /// `shutdown_grace_secs`. Returns when every session is over.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let addr = listener.local_addr()?;
        tracing::info!(
            %addr,
            pipeline = %self.state.config.pipeline.name,
            max_sessions = self.state.sessions.max(),
            "listening on {addr}"
        );
        let state = Arc::clone(&self.state);
        let signal = async move {
            shutdown.await;
            state.sessions.start_draining();
            tracing::info!(
                active = state.sessions.active(),
                "shutting down: no new calls; letting calls finish"
            );
        };
        let server = &self.state.config.server;
        raise_open_file_limit();
        let listener = BoundedListener::new(
            listener,
            server.max_connections.get(),
            server.http_idle_timeout_secs.duration(),
            server.max_sessions.get(),
        );
        tracing::debug!(max_connections = listener.max(), "connection cap");
        // Audio goes out as a small message every 20 ms: without
        // TCP_NODELAY, Nagle's algorithm would hold each one back until the
        // previous one is acknowledged, up to the peer's delayed-ACK timer
        // (40 ms on Linux).
        let listener = listener.tap_io(|io| {
            if let Err(err) = io.tcp().set_nodelay(true) {
                tracing::warn!(error = %err, "cannot set TCP_NODELAY");
            }
        });
        // The campaign worker stops leasing at the signal and hands back
        // what it has not dialled.
        // (Not when the drain is over: until then it would go on dialling
        // calls that, with the listener closed, could not reach the server.)
        let stop_campaigns = std::sync::Arc::new(tokio::sync::watch::Sender::new(false));
        let campaigns = self.state.campaigns.clone().map(|runner| {
            let mut stopped = stop_campaigns.subscribe();
            tokio::spawn(async move {
                runner
                    .run(async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    })
                    .await;
            })
        });
        // Outbound calls a stopped server left queued end failed, and those
        // whose final status callback never came are read from Twilio (at
        // start, then every few minutes), so none stays open for ever.
        let stranded = self.state.outbound.clone().map(|dialer| {
            let mut stopped = stop_campaigns.subscribe();
            tokio::spawn(async move {
                dialer
                    .run_call_sweeper(async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    })
                    .await;
            })
        });
        // Calls whose process died mid-call end once their grace has passed
        // (their sessions' leases, outbound calls' final statuses: checks
        // in the store, whichever process noted them).
        // (With a turn spool, not before a replay pass: a call whose last
        // turns the spool holds is ended with them.)
        let lost_sessions = self.state.agent.clone().map(|agent| {
            let mut stopped = stop_campaigns.subscribe();
            tokio::spawn(async move {
                agent
                    .sweep_lost_sessions(async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    })
                    .await;
            })
        });
        // Idle text conversations end (and are evaluated) on their own.
        let (stop_sweeper, sweeper_stopped) = tokio::sync::oneshot::channel::<()>();
        let sweeper = self.state.text.clone().map(|text| {
            tokio::spawn(async move {
                text.run_sweeper(async {
                    let _ = sweeper_stopped.await;
                })
                .await;
            })
        });
        let (signalled_tx, signalled) = tokio::sync::oneshot::channel::<()>();
        let signal = {
            let stop_campaigns = std::sync::Arc::clone(&stop_campaigns);
            async move {
                signal.await;
                stop_campaigns.send_replace(true);
                let _ = signalled_tx.send(());
            }
        };
        let deadlines = super::http_conn::RequestDeadlines {
            headers: server.http_header_timeout_secs.duration(),
            body: server.http_body_timeout_secs.duration(),
        };
        let served = super::http_conn::serve(listener, self.router(), deadlines, signal);
        let mut served = std::pin::pin!(served);
        let deadline = server.shutdown_deadline_secs.duration();
        // From the signal, the sessions drain on their deadline while open
        // requests finish; a request still open at the deadline (a client
        // that never finishes its headers or body) is dropped.
        let (served, drained) = tokio::select! {
            served = served.as_mut() => (served, false),
            Ok(()) = signalled => {
                let requests = async {
                    match tokio::time::timeout(deadline, served.as_mut()).await {
                        Ok(served) => served,
                        Err(_elapsed) => {
                            tracing::warn!("requests still open at the shutdown deadline: dropped");
                            Ok(())
                        }
                    }
                };
                let (served, ()) = tokio::join!(requests, super::shutdown::drain(&self.state));
                (served, true)
            }
        };
        let _ = stop_sweeper.send(());
        if let Some(sweeper) = sweeper
            && let Err(err) = sweeper.await
        {
            tracing::error!(error = %err, "the idle conversation sweep failed");
        }
        stop_campaigns.send_replace(true);
        if let Some(campaigns) = campaigns
            && let Err(err) = campaigns.await
        {
            tracing::error!(error = %err, "the campaign worker failed");
        }
        if let Some(stranded) = stranded
            && let Err(err) = stranded.await
        {
            tracing::error!(error = %err, "the stranded-call sweep failed");
        }
        if let Some(lost_sessions) = lost_sessions
            && let Err(err) = lost_sessions.await
        {
            tracing::error!(error = %err, "the lost-session sweep failed");
        }
        served?;
        if !drained {
            super::shutdown::drain(&self.state).await;
        }
        // A webhook whose body was still coming at the signal is counted
        // from its handler's start: now that every request is done, what
        // such a handler left is waited for too.
        if !self
            .state
            .answers
            .wait_idle(server.shutdown_grace_secs.duration())
            .await
        {
            tracing::warn!(
                running = self.state.answers.running(),
                "answers still being sent at exit: dropped"
            );
        }
        // Messages noted and never answered (dropped above, or by a
        // request cut off at the deadline) are forgotten, so that Twilio's
        // retries of them are answered rather than taken as seen.
        if let Some(text) = &self.state.text {
            let store = text.runtime().store();
            self.state
                .message_marks
                .forget_dropped(store.as_ref())
                .await;
        }
        if let Some(agent) = &self.state.agent {
            // Writers stop on their own `flush_timeout` after their session.
            let limit = self.state.config.context.flush_timeout_secs.duration()
                + std::time::Duration::from_secs(1);
            let writing = agent.drain_writers(limit).await;
            if writing > 0 {
                tracing::error!(writing, "calls still being stored at exit");
            }
        }
        Ok(())
    }
}
