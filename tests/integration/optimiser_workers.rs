//! The prompt optimiser's workers: two workers optimising one segment at
//! once leave one deployment, and a worker killed mid-optimisation leaves
//! nothing half written. Uses the optimiser tests' set-up
//! (`prompt_optimiser.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tokio::sync::Barrier;

use crate::prompt_optimiser::{
    CALL, candidate, config, env, failed_call, pipeline_toml, score, segment_key, setup,
};
use crate::support::fake::openai::{FakeOpenAi, Reply, verdict};
use crate::support::redis_server::RedisServer;
use crate::support::turns::converse;
use voxpipe::agent::eval::{ApiEndpoint, EvaluatorSection, JudgeModel, OpenAiJudge};
use voxpipe::agent::optimiser::{
    OptimiserMetrics, OptimiserModels, OptimiserSection, OptimiserStep,
};
use voxpipe::agent::{AgentRuntime, RuntimeParts};
use voxpipe::services::{ConnectionOptions, ServiceError};
use voxpipe::store::{Decision, PromptKey, TestCase};

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

/// A model answering by a rule on what it is asked (no server).
struct Rule {
    name: &'static str,
    answer: fn(&[(&str, String)]) -> String,
}

#[async_trait]
impl JudgeModel for Rule {
    fn model(&self) -> &str {
        self.name
    }

    async fn complete(&self, messages: &[(&str, String)]) -> Result<String, ServiceError> {
        Ok((self.answer)(messages))
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
        // Under a candidate the agent answers well; under the current
        // prompt, badly: a candidate must beat the current prompt.
        agent: Arc::new(Rule {
            name: "agent",
            answer: |messages| match messages[0].1.as_str() {
                "You sell." => "Bad answer.".into(),
                _ => "Good answer.".into(),
            },
        }),
        judge: Arc::new(Rule {
            name: "scorer",
            answer: |messages| {
                let good = messages[1].1.contains("Good answer.");
                json!({"score": if good { 0.8 } else { 0.3 }, "reason": "by rule"}).to_string()
            },
        }),
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
    // Then the candidate scores 0.9, the current prompt 0.5.
    openai.push_chats_for("scorer", [Reply::Hang, score(0.9)]);
    openai.chat_fallback_for("scorer", score(0.5));
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

#[tokio::test]
async fn a_deployment_whose_trace_was_lost_is_not_deployed_again_and_its_trace_is_rebuilt() {
    let setup = setup("", "", 1).await;
    let (openai, store, redis) = (&setup.openai, &setup.store, &setup.redis);
    openai.chat_fallback_for("writer", candidate("Kept."));
    openai.push_chats_for("scorer", [score(0.9)]);
    openai.chat_fallback_for("scorer", score(0.5));
    failed_call(&setup, "s1").await;
    let worker = setup.runtime.worker("w1").unwrap();
    assert_eq!(worker.drain().await.unwrap(), 1);
    let key = segment_key();
    assert_eq!(store.prompt_state(&key).await.unwrap().version, 1);

    // On Redis the trace is a SET apart from the deployment's script: a
    // worker that died (or a Redis blip) between the two leaves the
    // deployment without its trace.
    let mut client = redis.client().await;
    let deleted: i64 = redis::cmd("DEL")
        .arg("optimisation:s1")
        .query_async(&mut client)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    openai.chat_fallback_for("writer", candidate("Deployed twice."));
    openai.chat_fallback_for("scorer", score(0.9));
    let asked = openai.chat_requests().len();

    // The job runs again (the verdict stored is reused).
    let evaluator = setup.runtime.evaluator().unwrap();
    evaluator.evaluate("s1", false).await.unwrap();

    assert_eq!(
        openai.chat_requests().len(),
        asked,
        "no candidate written or scored again"
    );
    assert_eq!(store.prompt_state(&key).await.unwrap().version, 1);
    let history = store.prompt_history(&key).await.unwrap();
    assert_eq!(history.len(), 2, "{history:#?}");
    let trace = store.optimisation("s1").await.unwrap().unwrap();
    assert_eq!(trace.decision, Decision::Deployed);
    assert_eq!(trace.deployed_version, Some(1));
    assert_eq!(trace.candidate, "Kept.");
    assert_eq!(trace.base_version, 0);
    assert!(trace.reason.contains("rebuilt"), "{}", trace.reason);
}
