//! [`AgentRuntime`]: one process's context store and everything built on
//! it (session memories, the evaluator, the webhook, the skills).

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::config::{ContextSection, StoreKind};
use super::error::AgentError;
use super::learning::{LearnFromCall, Learner, LearnerSettings};
use super::lost_sessions::LostSessionSweeper;
use super::post_call::PostCallStep;
use super::runtime_sections::{RuntimeParts, RuntimeSections};
use super::skills::{Embedder, OpenAiEmbedder, SkillLibrary};
use super::storage::{RecordingUploader, StoreCallObjects};
use super::turn_spool::ReplayReport;
use super::writer::{WriterDone, WriterSettings};

mod after_call_hooks;
mod sessions;

pub(crate) use after_call_hooks::after_call_hooks;

/// How often the turn spool is replayed: the store's outage is over within
/// this of its end, as far as spooled calls are concerned.
const SPOOL_REPLAY_PERIOD: Duration = Duration::from_secs(10);
use crate::agent::eval::{
    EvaluationWorker, Evaluator, EvaluatorSettings, JudgeModel, OpenAiJudge, WorkerSettings,
};
use crate::agent::extraction::{ExtractionModels, ExtractionStep};
use crate::agent::optimiser::{OptimiserMetrics, OptimiserModels, OptimiserStep};
use crate::agent::webhook::{WebhookDeliverer, WebhookMetrics, WebhookSettings};
use crate::objects::ObjectStorage;
use crate::pipeline::{BuildError, EnvSource, new_session_id};
use crate::services::ApiKey;
use crate::store::{MemoryStore, PhoneHasher, RedisStore, Store, StoreError};

/// A process's context store and the services on top of it. Build one per
/// process and open a [`SessionMemory`] per session.
pub struct AgentRuntime {
    store: Arc<dyn Store>,
    section: ContextSection,
    writer: WriterSettings,
    evaluator: Option<(Arc<Evaluator>, WorkerSettings)>,
    webhook: Option<Arc<WebhookSettings>>,
    skills: Option<Arc<SkillLibrary>>,
    learner: Option<Arc<Learner>>,
    objects: Option<ObjectStorage>,
    phone_hasher: Option<PhoneHasher>,
    scan_period: Duration,
    uploader: Option<Arc<RecordingUploader>>,
    writers: Mutex<Vec<WriterDone>>,
    optimiser_metrics: Option<Arc<OptimiserMetrics>>,
    lost_sessions: Arc<LostSessionSweeper>,
    /// The lease keepers of this runtime's sessions.
    leases: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Whether voice sessions keep leases: not in a store that lives and
    /// dies with this process.
    keeps_leases: bool,
}

impl std::fmt::Debug for AgentRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentRuntime")
            .field("store", &self.store.backend())
            .field("evaluator", &self.evaluator.is_some())
            .field("webhook", &self.webhook.is_some())
            .field("skills", &self.skills.is_some())
            .field(
                "objects",
                &self.objects.as_ref().map(|o| o.url().to_string()),
            )
            .finish_non_exhaustive()
    }
}

impl AgentRuntime {
    /// The runtime a pipeline's sections describe, resolving `*_env`
    /// variables from `env`. Redis is not contacted yet: a runtime made while
    /// Redis is down works once it is back. Call it within a Tokio runtime
    /// (the Redis connection manager starts its tasks there).
    pub fn from_sections(
        sections: RuntimeSections<'_>,
        env: &EnvSource,
    ) -> Result<Self, AgentError> {
        let RuntimeSections {
            context: section,
            evaluator,
            webhook,
            extraction,
            storage,
            learning,
            optimiser,
            phone_hash_salt,
        } = sections;
        let section = section.clone();
        let var = |key: &str, var: &str| {
            env.get(var)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| AgentError::MissingEnv {
                    key: key.to_owned(),
                    var: var.to_owned(),
                })
        };
        let optional_var =
            |key: &str, name: &Option<String>| name.as_deref().map(|v| var(key, v)).transpose();
        let api_key = |key: &str, name: &Option<String>| {
            optional_var(key, name).map(|value| value.map(ApiKey::new))
        };
        let invalid = |section| move |source| AgentError::Invalid { section, source };
        let phone_hasher = phone_hash_salt.hasher(|var| env.get(var))?;
        let settings = section.store_settings();
        let store: Arc<dyn Store> = match (section.store, &section.path) {
            (StoreKind::Redis, _) => {
                let url = var("context.url_env", &section.url_env)?;
                if section.cluster {
                    if section.prefix.contains(['{', '}']) {
                        // Cluster hashes a key's first braces: the
                        // prefix's would override the store's own tags.
                        tracing::warn!(
                            "[context] prefix has a brace: in a Redis Cluster every key hashes \
                             to one slot, so one node holds the whole deployment"
                        );
                    }
                    Arc::new(RedisStore::connect_cluster(
                        &url,
                        &section.url_env,
                        settings,
                    )?)
                } else {
                    Arc::new(RedisStore::connect(&url, &section.url_env, settings)?)
                }
            }
            (StoreKind::Memory, Some(path)) => Arc::new(MemoryStore::open(path, settings)?),
            (StoreKind::Memory, None) => Arc::new(MemoryStore::new(settings)),
        };
        let evaluator = match evaluator.filter(|e| e.enabled) {
            Some(section) => {
                let key = api_key("evaluator.api_key_env", &section.api_key_env)?;
                let endpoint = section.endpoint(key).map_err(invalid("evaluator"))?;
                let judge = OpenAiJudge::new(endpoint, &section.model, section.json_mode);
                Some((Arc::new(judge) as Arc<dyn JudgeModel>, section.clone()))
            }
            None => None,
        };
        let extraction = extraction.filter(|e| e.section.enabled);
        let webhook = match webhook {
            Some(section) => {
                let mut settings =
                    section.settings(optional_var("webhook.secret_env", &section.secret_env)?);
                if let Some(event) = extraction.and_then(|e| e.section.webhook_event.as_ref()) {
                    settings.event.clone_from(event);
                }
                Some(settings)
            }
            None => None,
        };
        let mut post_call: Vec<Arc<dyn PostCallStep>> = Vec::new();
        if let Some(config) = extraction {
            let key = api_key("extraction.api_key_env", &config.section.api_key_env)?;
            let endpoint = config
                .section
                .endpoint(key)
                .map_err(invalid("extraction"))?;
            let models = ExtractionModels::openai(endpoint, config);
            let step = ExtractionStep::new(Arc::clone(&store), models, config);
            post_call.push(Arc::new(step));
        }
        let mut embedder: Option<Arc<dyn Embedder>> = None;
        let skills = match &section.skills {
            Some(skills) => {
                let key = api_key("context.skills.api_key_env", &skills.api_key_env)?;
                let endpoint = skills.endpoint(key).map_err(invalid("context.skills"))?;
                let shared: Arc<dyn Embedder> = Arc::new(OpenAiEmbedder::new(
                    endpoint,
                    &skills.model,
                    skills.dimensions,
                ));
                embedder = Some(Arc::clone(&shared));
                Some(Arc::new(SkillLibrary::new(
                    Arc::clone(&store),
                    shared,
                    skills.candidates,
                    skills.top_k,
                )))
            }
            None => None,
        };
        let learning = match (learning.filter(|l| l.enabled), embedder) {
            (Some(learning), Some(embedder)) => {
                let key = api_key("learning.api_key_env", &learning.api_key_env)?;
                let endpoint = learning.endpoint(key).map_err(invalid("learning"))?;
                let model = Learner::openai_model(endpoint, learning);
                Some(Arc::new(Learner::new(
                    Arc::clone(&store),
                    Arc::new(model),
                    embedder,
                    LearnerSettings::from_section(learning),
                )))
            }
            (Some(_), None) => {
                return Err(AgentError::Invalid {
                    section: "learning",
                    source: BuildError::Invalid(
                        "needs [context.skills] (the embeddings endpoint)".into(),
                    ),
                });
            }
            (None, _) => None,
        };
        if learning.is_some() && evaluator.is_none() {
            tracing::warn!(
                "[learning] without an enabled [evaluator]: calls are never judged a success, \
                 so only submitted transcripts teach"
            );
        }
        let optimiser = optimiser.filter(|o| o.enabled);
        let mut optimiser_metrics = None;
        if let Some(config) = optimiser {
            if evaluator.is_none() {
                return Err(AgentError::OptimiserWithoutJudge);
            }
            let key = api_key("optimiser.api_key_env", &config.api_key_env)?;
            let endpoint = config.endpoint(key).map_err(invalid("optimiser"))?;
            let model = |name: &str, json: bool| -> Arc<dyn JudgeModel> {
                Arc::new(OpenAiJudge::new(endpoint.clone(), name, json))
            };
            let models = OptimiserModels {
                writer: model(&config.model, config.json_mode),
                agent: model(config.agent_model(), false),
                judge: model(config.judge_model(), config.json_mode),
            };
            let metrics = Arc::new(OptimiserMetrics::default());
            let step = OptimiserStep::new(
                Arc::clone(&store),
                models,
                config.clone(),
                Arc::clone(&metrics),
            );
            post_call.push(Arc::new(step));
            optimiser_metrics = Some(metrics);
        }
        let objects = storage
            .map(|section| ObjectStorage::open(section, &|var: &str| env.get(var)))
            .transpose()?;
        let mut runtime = AgentRuntime::from_parts(RuntimeParts {
            store,
            section,
            evaluator,
            webhook,
            skills,
            post_call,
            objects,
            phone_hasher,
            learning,
        });
        if let Some(storage) = storage {
            runtime.scan_period = storage.scan_secs.duration();
        }
        runtime.optimiser_metrics = optimiser_metrics;
        Ok(runtime)
    }

    /// A runtime from parts built by the caller.
    pub fn from_parts(parts: RuntimeParts) -> Self {
        let RuntimeParts {
            store,
            section,
            evaluator,
            webhook,
            skills,
            mut post_call,
            objects,
            phone_hasher,
            learning,
        } = parts;
        if let Some(objects) = &objects {
            let step = StoreCallObjects::new(Arc::clone(&store), objects.clone());
            post_call.push(Arc::new(step.with_phone_hasher(phone_hasher.clone())));
        }
        // Last: an embedder that is down holds back no other step.
        if let Some(learner) = &learning {
            post_call.push(Arc::new(LearnFromCall::new(Arc::clone(learner))));
        }
        let webhook = webhook.map(Arc::new);
        // The evaluation job runs when there is a judge or a post-call
        // step; without a judge it runs the steps and the webhook only.
        let evaluator = match evaluator {
            Some((judge, config)) => {
                let settings = EvaluatorSettings {
                    prompt: config.prompt(),
                    max_attempts: config.max_attempts,
                    steps: post_call,
                    webhook: webhook.clone(),
                };
                let evaluator = Evaluator::new(Arc::clone(&store), judge, settings);
                Some((Arc::new(evaluator), config.worker_settings()))
            }
            None if !post_call.is_empty() => {
                let settings = EvaluatorSettings {
                    prompt: String::new(),
                    max_attempts: 0,
                    steps: post_call,
                    webhook: webhook.clone(),
                };
                let runner = Evaluator::without_judge(Arc::clone(&store), settings);
                Some((Arc::new(runner), WorkerSettings::default()))
            }
            None => None,
        };
        let mut writer = section.writer_settings(store.identity());
        // A store in this process's memory never fails for a while, and no
        // other process could hold its data: nothing to spool or replay.
        // Nor a lease: it would die with the process it is to outlive.
        let in_process = store.backend() == "memory" && section.path.is_none();
        if in_process {
            writer.spool = None;
        }
        // Last among them: the session's lease goes once the rest is
        // queued, whoever writes the end (the writer, or the spool's replayer).
        writer.on_completed = after_call_hooks(evaluator.is_some(), webhook.as_ref());
        let mut lost_sessions = LostSessionSweeper::new(
            Arc::clone(&store),
            writer.on_completed.clone(),
            section.lost_session_grace_secs.duration(),
        );
        // A call that this disk's spool holds the last turns of is not
        // ended before they are written.
        if let Some(spool) = &writer.spool {
            lost_sessions = lost_sessions.after_first_replay(spool.replayed());
        }
        let lost_sessions = Arc::new(lost_sessions);
        AgentRuntime {
            store,
            section,
            writer,
            evaluator,
            webhook,
            skills,
            learner: learning,
            objects,
            phone_hasher,
            scan_period: Duration::from_secs(10),
            uploader: None,
            writers: Mutex::new(Vec::new()),
            optimiser_metrics: None,
            lost_sessions,
            leases: Mutex::new(Vec::new()),
            keeps_leases: !in_process,
        }
    }

    /// Uploads the finished recordings of `spool` (`{call_id}.wav`) to
    /// object storage from [`run_background`](Self::run_background), if
    /// storage is configured; without it the recordings stay in the spool.
    pub fn with_recording_spool(mut self, spool: impl Into<PathBuf>) -> Self {
        self.uploader = self.objects.as_ref().map(|objects| {
            let uploader = RecordingUploader::new(
                Arc::clone(&self.store),
                objects.clone(),
                spool,
                self.scan_period,
            );
            Arc::new(
                uploader
                    .with_phone_hasher(self.phone_hasher.clone())
                    .with_call_ttl(self.section.store_settings().call_ttl),
            )
        });
        self
    }

    /// The prompt optimiser's counters, if `[optimiser]` is on.
    pub fn optimiser_metrics(&self) -> Option<&Arc<OptimiserMetrics>> {
        self.optimiser_metrics.as_ref()
    }

    /// The webhook's metrics, if a webhook is configured.
    pub fn webhook_metrics(&self) -> Option<&Arc<WebhookMetrics>> {
        self.webhook.as_ref().map(|settings| &settings.metrics)
    }

    /// The phone hasher stored objects are written with, if the
    /// deployment has a salt (without one their numbers are `redacted`).
    pub fn phone_hasher(&self) -> Option<&PhoneHasher> {
        self.phone_hasher.as_ref()
    }

    /// Object storage, if configured.
    pub fn objects(&self) -> Option<&ObjectStorage> {
        self.objects.as_ref()
    }

    /// The recording uploader, if a spool and storage are configured (its
    /// notifier wakes it when a recording is finished).
    pub fn recording_uploader(&self) -> Option<&Arc<RecordingUploader>> {
        self.uploader.as_ref()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The evaluator, if sessions are evaluated (judged).
    pub fn evaluator(&self) -> Option<&Arc<Evaluator>> {
        self.evaluator
            .as_ref()
            .map(|(e, _)| e)
            .filter(|e| e.judges())
    }

    /// The skills library, if configured.
    pub fn skills(&self) -> Option<&Arc<SkillLibrary>> {
        self.skills.as_ref()
    }

    /// The learner, if `[learning]` is on (for submitted transcripts).
    pub fn learner(&self) -> Option<&Arc<Learner>> {
        self.learner.as_ref()
    }

    /// Succeeds when the store answers (for `/health`).
    pub async fn ready(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }

    /// Runs the after-call hooks (the evaluation job, the call-completed
    /// webhook) of a call that ended without a session to run them: an
    /// outbound call that never connected. Idempotent, like the hooks.
    pub async fn queue_after_call(&self, call_id: &str) -> Result<(), StoreError> {
        for hook in &self.writer.on_completed {
            hook.queue(&*self.store, call_id).await?;
        }
        Ok(())
    }

    /// Ends the calls whose session was lost (sessions' leases left to fall
    /// due, outbound calls' final status checks): its sweep
    /// ([`sweep_lost_sessions`](Self::sweep_lost_sessions)) runs in every
    /// server with a runtime, and in `voxpipe worker`.
    pub fn lost_session_sweeper(&self) -> Arc<LostSessionSweeper> {
        Arc::clone(&self.lost_sessions)
    }

    /// Runs the lost-session sweep until `stop` resolves. With a turn
    /// spool, the sweep's first claim waits for a replay pass that left
    /// nothing waiting (at most a minute): one runs here at once, whether
    /// or not [`run_background`](Self::run_background)'s replayer runs in
    /// this process, so that a call whose last turns this disk holds is
    /// not ended, and evaluated, before they are written.
    pub async fn sweep_lost_sessions(&self, stop: impl Future<Output = ()>) {
        let first_pass = async {
            if let Some(spool) = &self.writer.spool {
                spool.replay(&*self.store, &self.writer.on_completed).await;
            }
        };
        let stop = futures_util::FutureExt::shared(Box::pin(stop));
        tokio::join!(
            async {
                tokio::select! {
                    () = first_pass => {}
                    () = stop.clone() => {}
                }
            },
            self.lost_sessions.run(stop.clone())
        );
    }

    /// An evaluation worker named `consumer`, if sessions are evaluated or
    /// have post-call steps.
    pub fn worker(&self, consumer: &str) -> Option<EvaluationWorker> {
        self.evaluator.as_ref().map(|(evaluator, settings)| {
            EvaluationWorker::new(
                Arc::clone(&self.store),
                Arc::clone(evaluator),
                consumer,
                settings.clone(),
            )
        })
    }

    /// The webhook deliverer, if a webhook is configured.
    pub fn deliverer(&self) -> Result<Option<WebhookDeliverer>, AgentError> {
        self.webhook
            .as_ref()
            .map(|settings| {
                WebhookDeliverer::new(Arc::clone(&self.store), Arc::clone(settings))
                    .map_err(AgentError::Http)
            })
            .transpose()
    }

    /// Runs the background work (an evaluation worker, the webhook
    /// deliverer, the skills refresh, the recording uploader, the turn
    /// spool's replayer) until
    /// `shutdown` resolves. An upload of a recording under way then is
    /// cancelled (and a multipart upload aborted): a process that records
    /// calls uses [`Self::run_background_recording`] instead.
    pub async fn run_background(
        &self,
        shutdown: impl Future<Output = ()> + Clone,
    ) -> Result<(), AgentError> {
        self.run_background_recording(shutdown.clone(), shutdown.clone(), shutdown)
            .await
    }

    /// [`Self::run_background`], with the recording uploader on its own
    /// schedule: it goes on until `uploads_stop` resolves (a server: once
    /// its calls have drained, so that the recordings they finish while
    /// draining are not left behind), then scans the spool once more, and
    /// gives up what is still going when `uploads_cancel` resolves (the
    /// end of the shutdown's deadline).
    pub async fn run_background_recording(
        &self,
        shutdown: impl Future<Output = ()> + Clone,
        uploads_stop: impl Future<Output = ()>,
        uploads_cancel: impl Future<Output = ()>,
    ) -> Result<(), AgentError> {
        let consumer = worker_name();
        let worker = self.worker(&consumer);
        let deliverer = self.deliverer()?;
        let refresh = self
            .section
            .skills
            .as_ref()
            .map(|s| s.refresh_secs.duration().max(Duration::from_secs(1)));
        tokio::join!(
            async {
                if let Some(worker) = &worker {
                    tracing::info!(consumer, "evaluation worker started");
                    worker.run(shutdown.clone()).await;
                }
            },
            async {
                if let Some(deliverer) = &deliverer {
                    deliverer.run(shutdown.clone()).await;
                }
            },
            async {
                if let (Some(skills), Some(period)) = (&self.skills, refresh) {
                    skills.run_refresh(period, shutdown.clone()).await;
                }
            },
            async {
                if let Some(uploader) = &self.uploader {
                    uploader.run(uploads_stop, uploads_cancel).await;
                }
            },
            async {
                if let Some(spool) = &self.writer.spool {
                    let hooks = &self.writer.on_completed;
                    spool
                        .run(&*self.store, hooks, SPOOL_REPLAY_PERIOD, shutdown.clone())
                        .await;
                }
            },
        );
        Ok(())
    }

    /// The turn spool's directory, if the runtime has one.
    pub fn spool_dir(&self) -> Option<&std::path::Path> {
        self.writer.spool.as_ref().map(|spool| spool.dir())
    }

    /// Writes what the turn spool holds (calls whose writers gave up while
    /// the store failed, here or in a process that has stopped) into the
    /// store: one pass of the replayer [`run_background`](Self::run_background)
    /// runs. `None` without a spool.
    pub async fn replay_spool(&self) -> Option<ReplayReport> {
        let spool = self.writer.spool.as_ref()?;
        Some(spool.replay(&*self.store, &self.writer.on_completed).await)
    }
}

/// A consumer name unique to this worker: host, process and a random part.
pub fn worker_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "voxpipe".into());
    format!("{host}-{}-{}", std::process::id(), &new_session_id()[..8])
}
