//! The prompt optimiser, against a real redis-server and a fake
//! OpenAI-compatible server for tests: the evaluator (`judge-1`), the
//! candidate writer (`writer`), the agent answering test cases (`agent`)
//! and the case judge (`scorer`) are models on it, each with its own
//! script.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::json;
use support::fake::openai::{FakeOpenAi, Reply, verdict};
use support::processors::registry;
use support::redis_server::RedisServer;
use support::turns::converse;
use tokio::sync::Barrier;
use voxpipe::agent::eval::{ApiEndpoint, EvaluatorSection, JudgeModel, OpenAiJudge};
use voxpipe::agent::optimiser::{
    OptimiserMetrics, OptimiserModels, OptimiserSection, OptimiserStep, rollback,
    set_prompt_version,
};
use voxpipe::agent::{AgentRuntime, RuntimeParts, SessionPrompt};
use voxpipe::pipeline::EnvSource;
use voxpipe::pipeline_file::{PipelineConfig, parse_pipeline};
use voxpipe::services::{ConnectionOptions, ServiceError};
use voxpipe::store::{Decision, PromptKey, Segment, Store, TestCase};

const SEGMENT_KEY: &str = "prompt:segment:US:healthcare";
const CALL: &[&str] = &["user: It's too expensive.", "assistant: Then goodbye."];

fn segment_key() -> PromptKey {
    PromptKey::parse(SEGMENT_KEY).unwrap()
}

fn pipeline_toml(openai: &FakeOpenAi, evaluator: &str, optimiser: &str) -> String {
    format!(
        "[pipeline]\nname = \"agent\"\n\n\
         [context]\nstore = \"redis\"\nurl_env = \"TEST_REDIS\"\ncountry = \"US\"\nindustry = \"healthcare\"\n\n\
         [evaluator]\nbase_url = \"{url}\"\nmodel = \"judge-1\"\nconnection = {{ response_timeout_secs = 5 }}\n{evaluator}\n\n\
         [optimiser]\nbase_url = \"{url}\"\nmodel = \"writer\"\nagent_model = \"agent\"\njudge_model = \"scorer\"\n\
         connection = {{ response_timeout_secs = 5, max_retries = 0 }}\n{optimiser}\n",
        url = openai.base_url
    )
}

fn config(text: &str) -> PipelineConfig {
    parse_pipeline(Path::new("agent.toml"), text, &registry()).unwrap()
}

fn env(redis: &RedisServer) -> EnvSource {
    EnvSource::Fixed(Arc::new(HashMap::from([(
        "TEST_REDIS".to_owned(),
        redis.url(),
    )])))
}

struct Setup {
    redis: RedisServer,
    openai: FakeOpenAi,
    runtime: AgentRuntime,
    store: Arc<dyn Store>,
}

/// Redis, the fake models (the agent answers every case the same), the
/// runtime of a pipeline with `[evaluator]` and `[optimiser]`, and a
/// seeded `prompt:base` and two test cases.
async fn setup(evaluator: &str, optimiser: &str, cases: usize) -> Setup {
    let redis = RedisServer::start();
    let openai = FakeOpenAi::judge().await;
    openai.chat_fallback_for("agent", Reply::Completion("We can start small.".into()));
    let runtime = config(&pipeline_toml(&openai, evaluator, optimiser))
        .agent_runtime(&env(&redis))
        .unwrap();
    let store = runtime.store().clone();
    store
        .set_prompt(&PromptKey::Base, "You sell.")
        .await
        .unwrap();
    let cases: Vec<TestCase> = [
        ("It's too expensive.", "Reframes the price as value"),
        ("I need to ask my boss.", "Offers to include the boss"),
    ]
    .into_iter()
    .take(cases)
    .map(|(input, target)| TestCase {
        input: input.into(),
        target: target.into(),
    })
    .collect();
    store.add_test_cases(&cases).await.unwrap();
    Setup {
        redis,
        openai,
        runtime,
        store,
    }
}

fn candidate(text: &str) -> Reply {
    Reply::Completion(json!({ "prompt": text }).to_string())
}

fn score(value: f64) -> Reply {
    Reply::Completion(json!({ "score": value, "reason": format!("scored {value}") }).to_string())
}

/// A failed call `id`, judged by the worker (its optimisation runs in the
/// same job).
async fn failed_call(setup: &Setup, id: &str) {
    setup
        .openai
        .push_chats_for("judge-1", [verdict("failure", 0.1, &["Gave up"])]);
    converse(&setup.runtime, id, "webrtc", CALL, "client_disconnected").await;
}

fn models_of(requests: &[serde_json::Value], model: &str) -> Vec<serde_json::Value> {
    requests
        .iter()
        .filter(|r| r["model"] == model)
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_better_candidate_is_deployed_with_its_version_and_trace_and_can_be_rolled_back() {
    let setup = setup("", "", 2).await;
    let (openai, store) = (&setup.openai, &setup.store);
    openai.push_chats_for("writer", [candidate("You sell value, not price.")]);
    // The candidate's two cases, then the current prompt's.
    openai.push_chats_for("scorer", [score(0.9), score(0.8), score(0.4), score(0.5)]);
    failed_call(&setup, "s1").await;
    let worker = setup.runtime.worker("w1").unwrap();
    assert_eq!(worker.drain().await.unwrap(), 1);

    let key = segment_key();
    let state = store.prompt_state(&key).await.unwrap();
    assert_eq!(state.version, 1);
    assert_eq!(state.text.as_deref(), Some("You sell value, not price."));
    let history = store.prompt_history(&key).await.unwrap();
    assert_eq!(history.len(), 2, "{history:#?}");
    assert_eq!((history[0].version, history[0].prompt.as_str()), (0, ""));
    let deployed = &history[1];
    assert_eq!(deployed.version, 1);
    assert_eq!(deployed.call_id.as_deref(), Some("s1"));
    assert_eq!(deployed.optimisation.as_deref(), Some("s1"));
    assert!((deployed.scores.as_ref().unwrap().mean - 0.85).abs() < 1e-9);

    let trace = store.optimisation("s1").await.unwrap().unwrap();
    assert_eq!(trace.decision, Decision::Deployed);
    assert_eq!(trace.deployed_version, Some(1));
    assert_eq!(trace.base_version, 0);
    assert_eq!(trace.candidate, "You sell value, not price.");
    let candidate_scores = trace.candidate_scores.unwrap();
    assert_eq!(candidate_scores.cases.len(), 2);
    assert_eq!(candidate_scores.cases[0].reason, "scored 0.9");
    assert_eq!(candidate_scores.cases[0].answer, "We can start small.");
    assert!((trace.current_scores.unwrap().mean - 0.45).abs() < 1e-9);
    assert_eq!(trace.llm_calls, 9, "1 candidate + 2 × 2 cases × 2 prompts");
    assert_eq!(
        store
            .call("s1")
            .await
            .unwrap()
            .unwrap()
            .optimisation
            .as_deref(),
        Some("s1"),
        "the call record points at the trace"
    );

    // The candidate's cases were answered under it, the current prompt's
    // under the inherited `prompt:base`.
    let requests = openai.chat_requests();
    let agent = models_of(&requests, "agent");
    assert_eq!(agent.len(), 4);
    assert_eq!(
        agent[0]["messages"][0]["content"],
        "You sell value, not price."
    );
    assert_eq!(agent[0]["messages"][1]["content"], "It's too expensive.");
    assert_eq!(agent[2]["messages"][0]["content"], "You sell.");
    let writer = models_of(&requests, "writer");
    let asked = writer[0]["messages"][1]["content"].as_str().unwrap();
    assert!(asked.contains("You sell.") && asked.contains("It's too expensive."));
    assert!(
        asked.contains("as scripted"),
        "the evaluator's reason: {asked}"
    );

    // The next call of the segment starts from the new prompt.
    let segment = Segment {
        country: Some("US".into()),
        industry: Some("healthcare".into()),
    };
    let next = SessionPrompt::load(&**store, &segment, "Tactics:")
        .await
        .unwrap();
    assert_eq!(next.source(), SEGMENT_KEY);

    let metrics = setup.runtime.optimiser_metrics().unwrap().render();
    assert!(
        metrics.contains("voxpipe_prompt_deployments_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("voxpipe_prompt_candidates_total 1"),
        "{metrics}"
    );

    // Rollback restores the previous version, as a version of its own.
    let back = rollback(&**store, &key, None).await.unwrap();
    assert_eq!((back.version, back.prompt.as_str()), (2, ""));
    let next = SessionPrompt::load(&**store, &segment, "Tactics:")
        .await
        .unwrap();
    assert_eq!(next.source(), "prompt:base", "back to the inherited prompt");
    let forward = rollback(&**store, &key, Some(1)).await.unwrap();
    assert_eq!(forward.version, 3);
    assert_eq!(forward.scores, history[1].scores);
    assert_eq!(
        store.prompt_state(&key).await.unwrap().text.as_deref(),
        Some("You sell value, not price.")
    );
    assert!(rollback(&**store, &key, Some(9)).await.is_err());
    assert_eq!(store.prompt_history(&key).await.unwrap().len(), 4);
}

#[tokio::test]
async fn a_candidate_below_the_current_prompt_or_the_threshold_is_rejected() {
    let setup = setup("", "", 2).await;
    let (openai, store) = (&setup.openai, &setup.store);
    let worker = setup.runtime.worker("w1").unwrap();
    let key = segment_key();

    // Above the threshold, below the current prompt.
    openai.push_chats_for("writer", [candidate("Worse.")]);
    openai.push_chats_for("scorer", [score(0.6), score(0.6), score(0.9), score(0.9)]);
    failed_call(&setup, "s1").await;
    assert_eq!(worker.drain().await.unwrap(), 1);
    let trace = store.optimisation("s1").await.unwrap().unwrap();
    assert_eq!(trace.decision, Decision::Rejected);
    assert!(trace.reason.contains("current prompt"), "{}", trace.reason);
    assert_eq!(trace.candidate, "Worse.");

    // Above the current prompt, below the threshold.
    openai.push_chats_for("writer", [candidate("Also poor.")]);
    openai.push_chats_for("scorer", [score(0.4), score(0.4), score(0.1), score(0.2)]);
    failed_call(&setup, "s2").await;
    assert_eq!(worker.drain().await.unwrap(), 1);
    let trace = store.optimisation("s2").await.unwrap().unwrap();
    assert_eq!(trace.decision, Decision::Rejected);
    assert!(trace.reason.contains("threshold"), "{}", trace.reason);

    let state = store.prompt_state(&key).await.unwrap();
    assert_eq!((state.version, state.text), (0, None), "nothing deployed");
    assert!(store.prompt_history(&key).await.unwrap().is_empty());
    let metrics = setup.runtime.optimiser_metrics().unwrap().render();
    assert!(
        metrics.contains("voxpipe_prompt_rejections_total{decision=\"rejected\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn bad_input_deploys_nothing_and_records_why() {
    let setup = setup("", "max_prompt_bytes = 40\nmax_attempts = 2", 0).await;
    let (openai, store) = (&setup.openai, &setup.store);
    let worker = setup.runtime.worker("w1").unwrap();

    // No test cases: the candidate is kept, unevaluated.
    openai.push_chats_for("writer", [candidate("Unproven.")]);
    failed_call(&setup, "s1").await;
    assert_eq!(worker.drain().await.unwrap(), 1);
    let trace = store.optimisation("s1").await.unwrap().unwrap();
    assert_eq!(trace.decision, Decision::Unevaluated);
    assert_eq!(trace.candidate, "Unproven.");
    assert!(trace.reason.contains("test_cases:list is empty"));

    // A candidate over the size limit.
    openai.push_chats_for("writer", [candidate(&"x".repeat(41))]);
    failed_call(&setup, "s2").await;
    assert_eq!(worker.drain().await.unwrap(), 1);
    let trace = store.optimisation("s2").await.unwrap().unwrap();
    assert_eq!(trace.decision, Decision::Rejected);
    assert!(
        trace.reason.contains("max_prompt_bytes = 40"),
        "{}",
        trace.reason
    );

    // A judge that never answers the JSON asked for: asked again, then
    // the reason is recorded and the job acknowledged.
    store
        .add_test_cases(&[TestCase {
            input: "Not now.".into(),
            target: "Books a later call".into(),
        }])
        .await
        .unwrap();
    openai.push_chats_for(
        "writer",
        [
            Reply::Completion("a prompt, not JSON".into()),
            candidate("Fine."),
        ],
    );
    openai.push_chats_for(
        "scorer",
        [
            Reply::Completion("great".into()),
            Reply::Completion(r#"{"score": 7, "reason": ""}"#.into()),
        ],
    );
    failed_call(&setup, "s3").await;
    assert_eq!(worker.drain().await.unwrap(), 1);
    assert_eq!(setup.redis.pending_jobs().await, 0);
    let trace = store.optimisation("s3").await.unwrap().unwrap();
    assert_eq!(trace.decision, Decision::Rejected);
    assert_eq!(trace.candidate, "Fine.", "the writer was asked again");
    assert!(
        trace.reason.contains("could not be scored"),
        "{}",
        trace.reason
    );
    assert!(trace.reason.contains("between 0 and 1"), "{}", trace.reason);
    assert_eq!(trace.llm_calls, 2 + 1 + 2);

    // A failed call with no user turn has nothing to learn from.
    setup
        .openai
        .push_chats_for("judge-1", [verdict("failure", 0.0, &[])]);
    converse(
        &setup.runtime,
        "s4",
        "webrtc",
        &["assistant: Hello?"],
        "client_disconnected",
    )
    .await;
    assert_eq!(worker.drain().await.unwrap(), 1);
    let trace = store.optimisation("s4").await.unwrap().unwrap();
    assert_eq!(trace.decision, Decision::Skipped);
    assert!(trace.reason.contains("no user turn"));

    let key = segment_key();
    assert_eq!(store.prompt_state(&key).await.unwrap().version, 0);
    assert_eq!(
        models_of(&openai.chat_requests(), "writer").len(),
        1 + 1 + 2,
        "no candidate asked for the call without a user turn"
    );
}

#[tokio::test]
async fn failures_before_and_the_rate_limit_bound_the_optimisations() {
    let setup = setup("", "failures_before = 2\nmax_candidates_per_hour = 1", 1).await;
    let (openai, store) = (&setup.openai, &setup.store);
    let worker = setup.runtime.worker("w1").unwrap();
    openai.chat_fallback_for("writer", candidate("Better."));
    openai.chat_fallback_for("scorer", score(0.3));

    failed_call(&setup, "s1").await;
    assert_eq!(worker.drain().await.unwrap(), 1);
    assert!(
        store.optimisation("s1").await.unwrap().is_none(),
        "one failure noted"
    );
    failed_call(&setup, "s2").await;
    assert_eq!(worker.drain().await.unwrap(), 1);
    assert_eq!(
        store.optimisation("s2").await.unwrap().unwrap().decision,
        Decision::Rejected
    );
    failed_call(&setup, "s3").await;
    failed_call(&setup, "s4").await;
    assert_eq!(worker.drain().await.unwrap(), 2);
    let trace = store.optimisation("s4").await.unwrap().unwrap();
    assert_eq!(trace.decision, Decision::RateLimited);
    assert!(trace.reason.contains("max_candidates_per_hour = 1"));
    assert_eq!(models_of(&openai.chat_requests(), "writer").len(), 1);
}

/// A model that waits for every holder of the barrier to ask before
/// answering: both optimisations have read the prompt's version first.
struct Gated {
    inner: OpenAiJudge,
    barrier: Arc<Barrier>,
}

#[async_trait]
impl JudgeModel for Gated {
    fn model(&self) -> &str {
        self.inner.model()
    }

    async fn complete(&self, messages: &[(&str, String)]) -> Result<String, ServiceError> {
        self.barrier.wait().await;
        self.inner.complete(messages).await
    }
}

fn section<T: serde::de::DeserializeOwned>(toml: &str) -> T {
    toml::from_str(toml).unwrap()
}

#[tokio::test]
async fn two_workers_optimising_one_segment_leave_one_deployment_and_a_rejection() {
    let redis = RedisServer::start();
    let openai = FakeOpenAi::judge().await;
    openai.chat_fallback_for("judge-1", verdict("failure", 0.1, &[]));
    openai.chat_fallback_for("agent", Reply::Completion("We can start small.".into()));
    openai.chat_fallback_for("scorer", score(0.8));
    openai.push_chats_for("writer", [candidate("First."), candidate("Second.")]);
    let endpoint = ApiEndpoint::new(
        &openai.base_url,
        None,
        &ConnectionOptions::default(),
        "fake",
    )
    .unwrap();
    let model = |name: &str| OpenAiJudge::new(endpoint.clone(), name, true);
    let base = config(&pipeline_toml(&openai, "", ""));
    let store = base.agent_runtime(&env(&redis)).unwrap().store().clone();
    store
        .set_prompt(&PromptKey::Base, "You sell.")
        .await
        .unwrap();
    store
        .add_test_cases(&[TestCase {
            input: "Too expensive.".into(),
            target: "Reframes the price".into(),
        }])
        .await
        .unwrap();
    let models = OptimiserModels {
        writer: Arc::new(Gated {
            inner: model("writer"),
            barrier: Arc::new(Barrier::new(2)),
        }),
        agent: Arc::new(model("agent")),
        judge: Arc::new(model("scorer")),
    };
    let step = OptimiserStep::new(
        store.clone(),
        models,
        section::<OptimiserSection>("model = \"writer\""),
        Arc::new(OptimiserMetrics::default()),
    );
    let runtime = AgentRuntime::from_parts(RuntimeParts {
        store: store.clone(),
        section: base.context.clone(),
        evaluator: Some((
            Arc::new(model("judge-1")) as Arc<dyn JudgeModel>,
            section::<EvaluatorSection>("model = \"judge-1\""),
        )),
        webhook: None,
        skills: None,
        post_call: vec![Arc::new(step)],
        objects: None,
        phone_hasher: None,
        learning: None,
    });
    converse(&runtime, "s1", "webrtc", CALL, "client_disconnected").await;
    converse(&runtime, "s2", "webrtc", CALL, "client_disconnected").await;

    // The loser's rejection is logged: capture this thread's logs (both
    // jobs run on it).
    let logs = Logs::default();
    let _capture = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .finish(),
    );
    let (first, second) = (runtime.worker("w1").unwrap(), runtime.worker("w2").unwrap());
    let job1 = store.read_jobs("w1", 1, Duration::ZERO).await.unwrap();
    let job2 = store.read_jobs("w2", 1, Duration::ZERO).await.unwrap();
    let (a, b) = tokio::join!(first.process(&job1[0]), second.process(&job2[0]));
    a.unwrap();
    b.unwrap();

    let key = segment_key();
    let history = store.prompt_history(&key).await.unwrap();
    assert_eq!(
        history.len(),
        2,
        "version 0 and one deployment: {history:#?}"
    );
    assert_eq!(store.prompt_state(&key).await.unwrap().version, 1);
    let traces = [
        store.optimisation("s1").await.unwrap().unwrap(),
        store.optimisation("s2").await.unwrap().unwrap(),
    ];
    let mut decisions: Vec<Decision> = traces.iter().map(|t| t.decision).collect();
    decisions.sort_by_key(|d| d.as_str());
    assert_eq!(decisions, [Decision::Deployed, Decision::Superseded]);
    let winner = traces
        .iter()
        .find(|t| t.decision == Decision::Deployed)
        .unwrap();
    let loser = traces
        .iter()
        .find(|t| t.decision == Decision::Superseded)
        .unwrap();
    assert_eq!(history[1].prompt, winner.candidate);
    assert_eq!(loser.base_version, 0);
    assert!(
        loser.reason.contains("deployed version 1"),
        "{}",
        loser.reason
    );
    assert_eq!(redis.pending_jobs().await, 0);
    let logged = logs.text();
    let rejection = logged
        .lines()
        .find(|l| l.contains("lost the compare-and-set"))
        .unwrap_or_else(|| panic!("no logged rejection in:\n{logged}"));
    assert!(rejection.contains("WARN"), "{rejection}");
    assert!(
        rejection.contains(&format!("call_id={}", loser.call_id)),
        "{rejection}"
    );
}

/// Log lines written through it, shared.
#[derive(Clone, Default)]
struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

#[tokio::test]
async fn a_worker_killed_mid_optimisation_leaves_nothing_half_written_and_the_job_completes_once() {
    let setup = setup("claim_idle_secs = 0", "", 1).await;
    let (openai, store, redis) = (&setup.openai, &setup.store, &setup.redis);
    // The first worker's scoring request never gets an answer.
    openai.chat_fallback_for("writer", candidate("Kept."));
    openai.push_chats_for("scorer", [Reply::Hang]);
    openai.chat_fallback_for("scorer", score(0.9));
    failed_call(&setup, "s1").await;

    let doomed = setup.runtime.worker("doomed").unwrap();
    let running = tokio::spawn(async move { doomed.run(std::future::pending()).await });
    // The verdict, the candidate, the agent's answer, the hanging score.
    openai
        .wait_for_requests("chat/completions", 4, Duration::from_secs(20))
        .await;
    running.abort();
    assert!(running.await.unwrap_err().is_cancelled());
    let key = segment_key();
    assert_eq!(redis.pending_jobs().await, 1);
    assert!(store.optimisation("s1").await.unwrap().is_none());
    assert_eq!(store.prompt_state(&key).await.unwrap().version, 0);
    assert!(store.prompt_history(&key).await.unwrap().is_empty());

    let rescuer = setup.runtime.worker("rescuer").unwrap();
    assert_eq!(rescuer.drain().await.unwrap(), 1);
    assert_eq!(redis.pending_jobs().await, 0);
    assert_eq!(store.prompt_state(&key).await.unwrap().version, 1);
    assert_eq!(store.prompt_history(&key).await.unwrap().len(), 2);
    let trace = store.optimisation("s1").await.unwrap().unwrap();
    assert_eq!(trace.decision, Decision::Deployed);
    assert_eq!(rescuer.drain().await.unwrap(), 0, "nothing left to run");

    // A job whose optimisation finished but whose worker died before the
    // acknowledgement runs again without asking or deploying anything.
    openai.chat_fallback_for("writer", candidate("Never asked."));
    failed_call(&setup, "s2").await;
    store
        .read_jobs("crashing", 1, Duration::ZERO)
        .await
        .unwrap();
    let evaluator = setup.runtime.evaluator().unwrap();
    evaluator.evaluate("s2", false).await.unwrap();
    let deployed = store.prompt_state(&key).await.unwrap().version;
    let asked = openai.chat_requests().len();
    assert_eq!(rescuer.drain().await.unwrap(), 1);
    assert_eq!(
        openai.chat_requests().len(),
        asked,
        "the stored trace was reused"
    );
    assert_eq!(store.prompt_state(&key).await.unwrap().version, deployed);
    assert_eq!(
        store
            .call("s2")
            .await
            .unwrap()
            .unwrap()
            .optimisation
            .as_deref(),
        Some("s2")
    );
}

#[test]
fn optimiser_settings_are_checked_with_file_line_and_key() {
    let check = |body: &str| {
        let text = format!("[pipeline]\nname = \"t\"\n\n[optimiser]\n{body}\n");
        match parse_pipeline(Path::new("p.toml"), &text, &registry()) {
            Ok(_) => panic!("expected an error for {body}"),
            Err(errors) => errors.0[0].to_string(),
        }
    };
    let error = check("treshold = 0.5");
    assert!(error.starts_with("p.toml:5:"), "{error}");
    assert!(error.contains("treshold"), "{error}");
    let error = check("threshold = 1.5");
    assert!(
        error.starts_with("p.toml:5:") && error.contains("between 0 and 1"),
        "{error}"
    );
    let error = check("failures_before = 0");
    assert!(
        error.contains("failures_before") && error.contains("at least 1"),
        "{error}"
    );

    let ok = parse_pipeline(
        Path::new("p.toml"),
        "[pipeline]\nname = \"t\"\n\n[optimiser]\nsample = 5\n",
        &registry(),
    )
    .unwrap();
    let section = ok.optimiser.clone().unwrap();
    assert_eq!((section.threshold, section.failures_before), (0.5, 1));
    assert_eq!(section.max_llm_calls(5), 3 + 2 * 5 * 4);
    // Without an evaluator nothing would judge calls.
    let runtime = ok.agent_runtime(&EnvSource::Fixed(Arc::default()));
    assert!(runtime.unwrap_err().to_string().contains("[evaluator]"));
}

fn voxpipe(args: &[&str], pipeline: &Path, redis: &RedisServer) -> Output {
    Command::new(env!("CARGO_BIN_EXE_voxpipe"))
        .args(args)
        .arg("-p")
        .arg(pipeline)
        .env("TEST_REDIS", redis.url())
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_prompts_command_lists_shows_histories_and_rolls_back() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("agent.toml");
    std::fs::write(
        &pipeline,
        "[pipeline]\nname = \"agent\"\n\n[context]\nstore = \"redis\"\nurl_env = \"TEST_REDIS\"\n",
    )
    .unwrap();
    let run = |args: &[&str]| voxpipe(args, &pipeline, &redis);
    let set = stdout(&run(&["prompts", "set", SEGMENT_KEY, "First."]));
    assert!(set.contains("version 1"), "{set}");
    stdout(&run(&["prompts", "set", SEGMENT_KEY, "Second."]));
    stdout(&run(&["prompts", "set", "prompt:base", "Base."]));
    let added = stdout(&run(&[
        "prompts",
        "add-case",
        "--input",
        "Too dear.",
        "--target",
        "Reframes price",
    ]));
    assert!(added.contains("added"), "{added}");

    let list = stdout(&run(&["prompts", "list"]));
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(lines[0].starts_with("prompt:base\tv1"), "{list}");
    assert!(
        lines[1].starts_with("prompt:segment:US:healthcare\tv2"),
        "{list}"
    );

    let shown = stdout(&run(&["prompts", "show", SEGMENT_KEY]));
    assert_eq!(shown, "prompt:segment:US:healthcare (version 2)\nSecond.\n");
    let history = stdout(&run(&["prompts", "history", SEGMENT_KEY]));
    assert!(
        history.contains("v1\t") && history.contains("v2\t"),
        "{history}"
    );
    assert!(history.contains("set by an operator"), "{history}");

    let back = stdout(&run(&["prompts", "rollback", SEGMENT_KEY]));
    assert!(back.contains("version 3 (rollback to version 1)"), "{back}");
    let shown = stdout(&run(&["prompts", "show", SEGMENT_KEY]));
    assert!(shown.ends_with("First.\n"), "{shown}");
    let back = stdout(&run(&["prompts", "rollback", SEGMENT_KEY, "--to", "2"]));
    assert!(back.contains("version 4"), "{back}");

    // Bad input: a clear error, nothing written.
    for (args, expected) in [
        (
            &["prompts", "show", "prompt:nope"][..],
            "is not a prompt key",
        ),
        (
            &["prompts", "rollback", SEGMENT_KEY, "--to", "99"],
            "has no version 99",
        ),
        (&["prompts", "trace", "missing"], "no optimisation missing"),
        (
            &["prompts", "show", "prompt:segment:FR:retail"],
            "holds no prompt",
        ),
    ] {
        let out = run(args);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let history = stdout(&run(&["prompts", "history", SEGMENT_KEY]));
    assert_eq!(
        history.lines().filter(|l| l.starts_with('v')).count(),
        5,
        "{history}"
    );
}

#[tokio::test]
async fn call_setup_reads_the_prompt_within_its_budget_beside_a_long_history() {
    let redis = RedisServer::start();
    let openai = FakeOpenAi::judge().await;
    let runtime = config(&pipeline_toml(&openai, "", ""))
        .agent_runtime(&env(&redis))
        .unwrap();
    let store = runtime.store().clone();
    let key = segment_key();
    for n in 0..1_000 {
        set_prompt_version(&*store, &key, &format!("Prompt {n}."))
            .await
            .unwrap();
    }
    assert_eq!(store.prompt_history(&key).await.unwrap().len(), 1_001);
    let segment = Segment {
        country: Some("US".into()),
        industry: Some("healthcare".into()),
    };
    let mut took = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let prompt = SessionPrompt::load(&*store, &segment, "Tactics:")
            .await
            .unwrap();
        took.push(started.elapsed());
        assert_eq!(prompt.stored.unwrap().1, "Prompt 999.");
    }
    took.sort();
    eprintln!(
        "prompt lookup beside a 1,000-entry history: median {:?}",
        took[1]
    );
    // What a session does: a lookup over its budget would fall back to the
    // pipeline's prompt (source `toml`).
    let memory = runtime
        .open_session(
            &voxpipe::pipeline::SessionSetup::new("s1", 16_000),
            "webrtc",
        )
        .await;
    assert_eq!(memory.prompt().source(), SEGMENT_KEY);
}

/// The store's part, on both backends: compare-and-set deployments with
/// their history and trace, the rate limit's slots, the failure sets.
async fn prompt_history_contract(store: &dyn Store) {
    use voxpipe::store::{Deployed, OptimisationTrace, PromptVersion};
    let key = segment_key();
    store.set_prompt(&key, "Hand written.").await.unwrap();
    let version = |n: u64, prompt: &str| PromptVersion {
        version: n,
        prompt: prompt.into(),
        scores: None,
        deployed_at: "2026-01-01T00:00:00.000Z".into(),
        deployed_at_ms: 1_000,
        call_id: Some(format!("c{n}")),
        optimisation: Some(format!("c{n}")),
        reason: "test".into(),
    };
    let trace = OptimisationTrace {
        id: "c1".into(),
        key: SEGMENT_KEY.into(),
        call_id: "c1".into(),
        base_version: 0,
        candidate: "One.".into(),
        candidate_scores: None,
        current_scores: None,
        threshold: 0.5,
        decision: Decision::Deployed,
        reason: "test".into(),
        deployed_version: Some(1),
        llm_calls: 1,
        at: "2026-01-01T00:00:00.000Z".into(),
    };
    let deployed = store
        .deploy_prompt(&key, 0, &version(1, "One."), Some(&trace))
        .await
        .unwrap();
    assert_eq!(deployed, Deployed::Deployed(1));
    // Evaluated against version 0 too: loses, writes nothing.
    let lost = store
        .deploy_prompt(&key, 0, &version(1, "Other."), None)
        .await
        .unwrap();
    assert_eq!(lost, Deployed::Conflict(1));
    let state = store.prompt_state(&key).await.unwrap();
    assert_eq!((state.version, state.text.as_deref()), (1, Some("One.")));
    let history = store.prompt_history(&key).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(
        (history[0].version, history[0].prompt.as_str()),
        (0, "Hand written.")
    );
    assert_eq!(history[1], version(1, "One."));
    assert_eq!(store.optimisation("c1").await.unwrap(), Some(trace));
    assert_eq!(store.optimisation("c2").await.unwrap(), None);
    assert_eq!(
        store.prompt_keys().await.unwrap(),
        std::slice::from_ref(&key),
        "the optimiser's keys beside a prompt key are not prompt keys"
    );

    // Two slots an hour: a third optimisation waits, a repeat is counted once.
    let hour = 3_600_000;
    assert!(
        store
            .take_optimisation_slot(&key, "a", 10, hour, 2)
            .await
            .unwrap()
    );
    assert!(
        store
            .take_optimisation_slot(&key, "a", 11, hour, 2)
            .await
            .unwrap()
    );
    assert!(
        store
            .take_optimisation_slot(&key, "b", 12, hour, 2)
            .await
            .unwrap()
    );
    assert!(
        !store
            .take_optimisation_slot(&key, "c", 13, hour, 2)
            .await
            .unwrap()
    );
    assert!(
        store
            .take_optimisation_slot(&key, "c", 11 + hour, hour, 2)
            .await
            .unwrap()
    );

    assert_eq!(store.note_failure(&key, "f1", 1).await.unwrap(), ["f1"]);
    assert_eq!(
        store.note_failure(&key, "f2", 2).await.unwrap(),
        ["f1", "f2"]
    );
    assert_eq!(
        store.note_failure(&key, "f1", 3).await.unwrap(),
        ["f1", "f2"]
    );
    store.clear_failures(&key, &["f1".into()]).await.unwrap();
    assert_eq!(
        store.note_failure(&key, "f3", 4).await.unwrap(),
        ["f2", "f3"]
    );
}

#[tokio::test]
async fn both_stores_keep_versions_by_compare_and_set() {
    use voxpipe::store::{MemoryStore, PromptHistoryStore, RedisStore, StoreSettings};
    let redis = RedisServer::start();
    let on_redis =
        RedisStore::connect(&redis.url(), "TEST_REDIS", StoreSettings::default()).unwrap();
    prompt_history_contract(&on_redis).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.log");
    prompt_history_contract(&MemoryStore::open(&path, StoreSettings::default()).unwrap()).await;
    // The embedded store's file holds it all for the next process.
    let reopened = MemoryStore::open(&path, StoreSettings::default()).unwrap();
    assert_eq!(
        reopened.prompt_history(&segment_key()).await.unwrap().len(),
        2
    );
}
