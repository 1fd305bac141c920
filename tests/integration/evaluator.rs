//! The session-end evaluator and the refinement loop, against a real
//! redis-server and a fake OpenAI-compatible judge.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use support::fake::openai::{FakeOpenAi, Reply, verdict};
use support::processors::registry;
use support::redis_server::RedisServer;
use support::turns::converse;
use voxpipe::agent::{AgentRuntime, SessionMemory};
use voxpipe::pipeline::EnvSource;
use voxpipe::pipeline_file::parse_pipeline;
use voxpipe::store::Store;
use voxpipe::store::{CallStatus, Evaluation, Outcome, TacticsList};

const HOUR_MS: i64 = 3_600_000;

struct Setup {
    redis: RedisServer,
    judge: FakeOpenAi,
    runtime: AgentRuntime,
}

impl Setup {
    /// The redis-server (killed when dropped), the judge, the runtime and
    /// its store.
    fn parts(self) -> (RedisServer, FakeOpenAi, AgentRuntime, Arc<dyn Store>) {
        let store = self.runtime.store().clone();
        (self.redis, self.judge, self.runtime, store)
    }
}

async fn setup(evaluator: &str) -> Setup {
    let redis = RedisServer::start();
    let judge = FakeOpenAi::judge().await;
    let toml = format!(
        "[pipeline]\nname = \"agent\"\n\n[context]\nstore = \"redis\"\nurl_env = \"TEST_REDIS\"\n\n\
         [evaluator]\nbase_url = \"{}\"\nmodel = \"judge-1\"\nconnection = {{ response_timeout_secs = 5, max_retries = 0 }}\n{evaluator}\n",
        judge.base_url
    );
    let config = parse_pipeline(Path::new("agent.toml"), &toml, &registry()).unwrap();
    let env = EnvSource::Fixed(Arc::new(HashMap::from([(
        "TEST_REDIS".to_owned(),
        redis.url(),
    )])));
    let runtime = config.agent_runtime(&env).unwrap();
    Setup {
        redis,
        judge,
        runtime,
    }
}

async fn session(runtime: &AgentRuntime, id: &str, lines: &[&str]) -> SessionMemory {
    converse(runtime, id, "webrtc", lines, "client_disconnected").await
}

const CALL: &[&str] = &["user: It's too expensive.", "assistant: Consider the ROI."];

#[tokio::test]
async fn tactics_lists_follow_the_refinement_loop_over_a_success_and_a_failure() {
    let (redis, judge, runtime, store) = setup("").await.parts();
    // Seeded once by the operator.
    store
        .add_tactics(
            TacticsList::Base,
            &["Anchor on ROI".into(), "Ask about budget".into()],
        )
        .await
        .unwrap();
    let worker = runtime.worker("w1").unwrap();

    // Session 1, judged a success: its tactics are promoted.
    judge.push_chats([verdict(
        "success",
        0.85,
        &["Anchor on ROI", "Offer a pilot"],
    )]);
    let first = session(&runtime, "s1", CALL).await;
    assert_eq!(
        first.prompt().tactics,
        ["Anchor on ROI", "Ask about budget"],
        "no winning tactics yet: the base tactics only"
    );
    assert_eq!(worker.drain().await.unwrap(), 1);
    assert_eq!(
        store.tactics(TacticsList::Winning).await.unwrap(),
        ["Anchor on ROI", "Offer a pilot"]
    );
    assert!(store.tactics(TacticsList::Failed).await.unwrap().is_empty());
    assert_eq!(
        store.session_tactics("s1").await.unwrap(),
        ["Anchor on ROI", "Offer a pilot"]
    );
    let call = store.call("s1").await.unwrap().unwrap();
    assert_eq!(
        (call.outcome, call.score),
        (Some(Outcome::Success), Some(0.85))
    );

    // Session 2 starts from winning first, then base, without repeats.
    judge.push_chats([verdict(
        "failure",
        0.2,
        &["Discount early", "offer a PILOT"],
    )]);
    let second = session(&runtime, "s2", CALL).await;
    assert_eq!(
        second.prompt().tactics,
        ["Anchor on ROI", "Offer a pilot", "Ask about budget"]
    );
    assert!(second
        .system_prompt("You sell.")
        .ends_with("Winning tactics to use when appropriate:\n- Anchor on ROI\n- Offer a pilot\n- Ask about budget"));
    assert_eq!(worker.drain().await.unwrap(), 1);
    // A failure records its tactics for analysis and never touches the
    // winning list.
    assert_eq!(
        store.tactics(TacticsList::Failed).await.unwrap(),
        ["Discount early", "offer a PILOT"]
    );
    assert_eq!(
        store.tactics(TacticsList::Winning).await.unwrap(),
        ["Anchor on ROI", "Offer a pilot"]
    );
    assert_eq!(
        store.tactics(TacticsList::Base).await.unwrap(),
        ["Anchor on ROI", "Ask about budget"],
        "agent:tactics is never written by voxpipe"
    );
    let call = store.call("s2").await.unwrap().unwrap();
    assert_eq!(call.outcome, Some(Outcome::Failure));
    assert_eq!(call.status, CallStatus::Completed);

    let mut client = redis.client().await;
    for key in ["session:s1:tactics", "session:s2:tactics"] {
        let ttl: i64 = client.pttl(key).await.unwrap();
        assert!(ttl > 23 * HOUR_MS && ttl <= 24 * HOUR_MS, "{key}: {ttl}");
    }
    // The judge read the transcript under its own instructions.
    let request = &judge.chat_requests()[0];
    assert!(
        request["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("\"outcome\"")
    );
    assert!(
        request["messages"][1]["content"]
            .as_str()
            .unwrap()
            .contains("user: It's too expensive.\nassistant: Consider the ROI.\n")
    );
}

#[tokio::test]
async fn malformed_verdicts_are_asked_again_then_recorded_as_unevaluated() {
    let (_redis, judge, runtime, store) = setup("max_attempts = 3").await.parts();
    let worker = runtime.worker("w1").unwrap();

    judge.push_chats([
        Reply::Completion("The call went well!".into()),
        verdict("success", 0.7, &["Mirror the buyer"]),
    ]);
    session(&runtime, "ok-on-retry", CALL).await;
    worker.drain().await.unwrap();
    assert_eq!(
        store.call("ok-on-retry").await.unwrap().unwrap().outcome,
        Some(Outcome::Success)
    );
    let retry = &judge.chat_requests()[1]["messages"];
    assert_eq!(retry[2]["content"], "The call went well!");
    assert!(
        retry[3]["content"]
            .as_str()
            .unwrap()
            .starts_with("That answer cannot be used")
    );

    judge.push_chats([
        Reply::Completion(
            "{\"outcome\": \"maybe\", \"score\": 1, \"tactics\": [], \"reason\": \"\"}".into(),
        ),
        Reply::Completion("{\"outcome\": \"success\"}".into()),
        Reply::Completion("```\nnot json\n```".into()),
    ]);
    session(&runtime, "never-ok", CALL).await;
    worker.drain().await.unwrap();
    assert_eq!(judge.chat_requests().len(), 5);
    let call = store.call("never-ok").await.unwrap().unwrap();
    assert_eq!(call.outcome, None);
    match call.evaluation {
        Some(Evaluation::Unevaluated { reason, .. }) => {
            assert!(
                reason.starts_with("no usable verdict after 3 attempts"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(store.session_tactics("never-ok").await.unwrap().is_empty());
    assert_eq!(
        store.tactics(TacticsList::Winning).await.unwrap(),
        ["Mirror the buyer"]
    );
}

#[tokio::test]
async fn a_worker_killed_mid_evaluation_has_its_job_reclaimed_and_the_outcome_written_once() {
    let (redis, judge, runtime, store) = setup("claim_idle_secs = 0").await.parts();
    // The first worker's request never gets an answer.
    judge.push_chats([Reply::Hang]);
    judge.chat_fallback(verdict("success", 0.9, &["Anchor on ROI"]));
    session(&runtime, "s1", CALL).await;

    let doomed = runtime.worker("doomed").unwrap();
    let running = tokio::spawn(async move { doomed.run(std::future::pending()).await });
    judge
        .wait_for_requests("chat/completions", 1, Duration::from_secs(10))
        .await;
    running.abort();
    assert!(running.await.unwrap_err().is_cancelled());
    assert_eq!(
        redis.pending_jobs().await,
        1,
        "the job is still pending under the dead worker"
    );
    assert!(store.call("s1").await.unwrap().unwrap().outcome.is_none());

    let rescuer = runtime.worker("rescuer").unwrap();
    assert_eq!(rescuer.drain().await.unwrap(), 1);
    assert_eq!(redis.pending_jobs().await, 0);
    assert_eq!(judge.chat_requests().len(), 2);
    let call = store.call("s1").await.unwrap().unwrap();
    assert_eq!(call.outcome, Some(Outcome::Success));
    assert_eq!(
        store.tactics(TacticsList::Winning).await.unwrap(),
        ["Anchor on ROI"]
    );
    assert_eq!(
        store.session_tactics("s1").await.unwrap(),
        ["Anchor on ROI"]
    );
    // Nothing is left to run.
    assert_eq!(rescuer.drain().await.unwrap(), 0);
}

#[tokio::test]
async fn a_job_rerun_after_its_writes_reuses_the_verdict_and_doubles_nothing() {
    let (redis, judge, runtime, store) = setup("claim_idle_secs = 0").await.parts();
    judge.push_chats([verdict("success", 0.8, &["Anchor on ROI"])]);
    judge.chat_fallback(verdict("failure", 0.1, &["Something else"]));
    session(&runtime, "s1", CALL).await;

    // A worker takes the job, does every write, and dies before the ack.
    let taken = store
        .read_jobs("crashing", 1, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    runtime
        .evaluator()
        .unwrap()
        .evaluate("s1", false)
        .await
        .unwrap();
    assert_eq!(redis.pending_jobs().await, 1);

    let rescuer = runtime.worker("rescuer").unwrap();
    assert_eq!(rescuer.drain().await.unwrap(), 1);
    assert_eq!(
        judge.chat_requests().len(),
        1,
        "the stored verdict was reused"
    );
    assert_eq!(redis.pending_jobs().await, 0);
    let call = store.call("s1").await.unwrap().unwrap();
    assert_eq!(
        (call.outcome, call.score),
        (Some(Outcome::Success), Some(0.8))
    );
    assert_eq!(
        store.tactics(TacticsList::Winning).await.unwrap(),
        ["Anchor on ROI"]
    );
    assert!(store.tactics(TacticsList::Failed).await.unwrap().is_empty());

    // `voxpipe evaluate` asks the judge afresh.
    let fresh = runtime
        .evaluator()
        .unwrap()
        .evaluate("s1", true)
        .await
        .unwrap();
    assert!(matches!(
        fresh,
        Evaluation::Evaluated {
            outcome: Outcome::Failure,
            ..
        }
    ));
    assert_eq!(
        store.tactics(TacticsList::Failed).await.unwrap(),
        ["Something else"]
    );
}

#[tokio::test]
async fn a_job_that_keeps_killing_its_workers_is_given_up() {
    let (redis, judge, runtime, store) = setup("claim_idle_secs = 0\nmax_deliveries = 2")
        .await
        .parts();
    session(&runtime, "s1", CALL).await;
    // Delivered twice, to workers that never finish.
    store.read_jobs("first", 1, Duration::ZERO).await.unwrap();
    let again = store
        .reclaim_jobs("second", Duration::ZERO, 1)
        .await
        .unwrap();
    assert_eq!(again[0].deliveries, 2);
    // Each began running (noted on the call) before its worker died.
    for _ in 0..2 {
        store
            .update_call("s1", &voxpipe::store::CallChange::PostCallBegun)
            .await
            .unwrap();
    }

    let third = runtime.worker("third").unwrap();
    assert_eq!(third.drain().await.unwrap(), 1);
    assert!(judge.chat_requests().is_empty());
    assert_eq!(redis.pending_jobs().await, 0);
    match store.call("s1").await.unwrap().unwrap().evaluation {
        Some(Evaluation::Unevaluated { reason, .. }) => {
            assert!(reason.contains("after 2 deliveries"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_judge_that_is_down_defers_the_job_and_the_call_is_judged_once_it_is_back() {
    let (redis, judge, runtime, store) = setup("claim_idle_secs = 0").await.parts();
    judge.push_chats([Reply::error(503, "overloaded", "server_error")]);
    judge.chat_fallback(verdict("success", 0.9, &["Anchor on ROI"]));
    session(&runtime, "s1", CALL).await;
    let worker = runtime.worker("w1").unwrap();

    let err = worker.drain().await.unwrap_err();
    assert!(err.to_string().contains("judge unavailable"), "{err}");
    assert_eq!(redis.pending_jobs().await, 1, "the job is deferred");
    let call = store.call("s1").await.unwrap().unwrap();
    assert!(call.evaluation.is_none(), "down is not a bad answer");
    assert_eq!(call.post_call_deferrals, 1);

    // The judge is back: the next delivery judges the call and merges.
    assert_eq!(worker.drain().await.unwrap(), 1);
    assert_eq!(redis.pending_jobs().await, 0);
    assert_eq!(
        store.call("s1").await.unwrap().unwrap().outcome,
        Some(Outcome::Success)
    );
    assert_eq!(
        store.tactics(TacticsList::Winning).await.unwrap(),
        ["Anchor on ROI"]
    );
}

#[tokio::test]
async fn a_job_given_up_after_its_verdict_was_stored_still_merges_the_tactics() {
    let (redis, judge, runtime, store) = setup("claim_idle_secs = 0\nmax_deliveries = 2")
        .await
        .parts();
    session(&runtime, "s1", CALL).await;
    // A run stored the verdict and died before merging its tactics; then
    // one more run died.
    store.read_jobs("first", 1, Duration::ZERO).await.unwrap();
    let evaluation = Evaluation::Evaluated {
        outcome: Outcome::Success,
        score: 0.9,
        tactics: vec!["Anchor on ROI".into()],
        reason: "Booked.".into(),
        model: "judge-1".into(),
        at: "2026-01-01T00:00:00Z".into(),
    };
    store
        .update_call("s1", &voxpipe::store::CallChange::Evaluated(evaluation))
        .await
        .unwrap();
    // Each began running (noted on the call) before its worker died.
    for _ in 0..2 {
        store
            .update_call("s1", &voxpipe::store::CallChange::PostCallBegun)
            .await
            .unwrap();
    }
    store
        .reclaim_jobs("second", Duration::ZERO, 1)
        .await
        .unwrap();
    assert!(
        store
            .tactics(TacticsList::Winning)
            .await
            .unwrap()
            .is_empty()
    );

    let third = runtime.worker("third").unwrap();
    assert_eq!(third.drain().await.unwrap(), 1);
    assert!(judge.chat_requests().is_empty(), "given up, not judged");
    assert_eq!(redis.pending_jobs().await, 0, "given up and acknowledged");
    assert_eq!(
        store.tactics(TacticsList::Winning).await.unwrap(),
        ["Anchor on ROI"]
    );
    assert_eq!(
        store.session_tactics("s1").await.unwrap(),
        ["Anchor on ROI"]
    );
}

#[tokio::test]
async fn the_worker_holding_a_job_keeps_its_claim_and_no_one_else_can() {
    let (redis, _judge, runtime, store) = setup("").await.parts();
    session(&runtime, "s1", CALL).await;
    session(&runtime, "s2", CALL).await;
    let jobs = store.read_jobs("owner", 2, Duration::ZERO).await.unwrap();
    assert_eq!(jobs.len(), 2);
    let (id, unkept) = (&jobs[0].id, &jobs[1].id);
    // Redis measures idle time on its own clock: both go idle for real.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(store.keep_job("owner", id).await.unwrap());
    assert!(!store.keep_job("stranger", unkept).await.unwrap());
    // Kept: idle no more, so not reclaimed; the control, idle as long but
    // not kept, is (no keep, and the script cannot pass for one).
    let taken = store
        .reclaim_jobs("thief", Duration::from_millis(200), 8)
        .await
        .unwrap();
    let taken: Vec<&str> = taken.iter().map(|job| job.id.as_str()).collect();
    assert_eq!(taken, [unkept.as_str()], "only the job not kept is taken");
    store.ack_job(unkept).await.unwrap();
    let taken = store
        .reclaim_jobs("thief", Duration::ZERO, 8)
        .await
        .unwrap();
    assert_eq!(taken[0].deliveries, 2, "keeping counted no delivery");
    assert!(
        !store.keep_job("owner", id).await.unwrap(),
        "held by the thief now"
    );
    store.ack_job(id).await.unwrap();
    assert!(!store.keep_job("thief", id).await.unwrap(), "acknowledged");
    assert_eq!(redis.pending_jobs().await, 0);
}

/// A judge that, while it is asked, is overtaken: another worker running
/// the same job stores its verdict (a success) first; this one answers a
/// failure.
struct Overtaken {
    store: Arc<dyn Store>,
    first: Evaluation,
}

#[async_trait::async_trait]
impl voxpipe::agent::eval::JudgeModel for Overtaken {
    fn model(&self) -> &str {
        "judge-2"
    }

    async fn complete(
        &self,
        _messages: &[(&str, String)],
    ) -> Result<String, voxpipe::services::ServiceError> {
        self.store
            .update_call(
                "s1",
                &voxpipe::store::CallChange::Evaluated(self.first.clone()),
            )
            .await
            .unwrap();
        Ok(serde_json::json!({"outcome": "failure", "score": 0.1, "tactics": ["Gave up"], "reason": "late"}).to_string())
    }
}

#[tokio::test]
async fn two_workers_judging_one_call_go_on_with_the_first_verdict_stored() {
    use voxpipe::agent::eval::{Evaluator, EvaluatorSettings};
    let (_redis, _judge, runtime, store) = setup("").await.parts();
    session(&runtime, "s1", CALL).await;
    let first = Evaluation::Evaluated {
        outcome: Outcome::Success,
        score: 0.9,
        tactics: vec!["Anchor on ROI".into()],
        reason: "Booked.".into(),
        model: "judge-1".into(),
        at: "2026-01-01T00:00:00Z".into(),
    };
    let judge = Overtaken {
        store: store.clone(),
        first: first.clone(),
    };
    let evaluator = Evaluator::new(
        store.clone(),
        Arc::new(judge),
        EvaluatorSettings {
            prompt: "Judge.".into(),
            max_attempts: 1,
            steps: Vec::new(),
            webhook: None,
        },
    );

    let evaluation = evaluator.evaluate("s1", false).await.unwrap();

    assert_eq!(evaluation, first, "the verdict stored first is the one");
    let call = store.call("s1").await.unwrap().unwrap();
    assert_eq!(call.evaluation, Some(first));
    assert_eq!(call.outcome, Some(Outcome::Success));
    assert_eq!(
        store.tactics(TacticsList::Winning).await.unwrap(),
        ["Anchor on ROI"]
    );
    assert!(
        store.tactics(TacticsList::Failed).await.unwrap().is_empty(),
        "the overtaken verdict's tactics are not merged"
    );
}

#[tokio::test]
async fn a_callers_number_or_address_never_reaches_the_tactics_lists() {
    let (_redis, judge, runtime, store) = setup("").await.parts();
    judge.push_chats([verdict(
        "success",
        0.9,
        &[
            "Text them at +1 (615) 484-6056",
            "Send the deck to jane@example.com",
        ],
    )]);
    session(&runtime, "s1", CALL).await;
    assert_eq!(runtime.worker("w1").unwrap().drain().await.unwrap(), 1);
    assert_eq!(
        store.tactics(TacticsList::Winning).await.unwrap(),
        ["Text them at [phone]", "Send the deck to [email]"]
    );
    assert_eq!(
        store.session_tactics("s1").await.unwrap(),
        ["Text them at [phone]", "Send the deck to [email]"]
    );
    assert_eq!(
        store.tactic_calls(TacticsList::Winning).await.unwrap()["text them at [phone]"],
        1
    );
}
