//! The optimiser's store part: call set-up reads a prompt within its
//! budget beside a long history, and both stores keep versions by
//! compare-and-set. Uses the optimiser tests' set-up
//! (`prompt_optimiser.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use crate::prompt_optimiser::{SEGMENT_KEY, config, env, pipeline_toml, segment_key};
use crate::support::fake::openai::FakeOpenAi;
use crate::support::redis_server::RedisServer;
use voxpipe::agent::SessionPrompt;
use voxpipe::agent::optimiser::set_prompt_version;
use voxpipe::store::{Decision, Segment, Store};

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
    // Versions 0 to 1,000: the newest MAX_PROMPT_HISTORY are kept.
    let history = store.prompt_history(&key).await.unwrap();
    assert_eq!(history.len(), voxpipe::store::MAX_PROMPT_HISTORY);
    assert_eq!((history[0].version, history[999].version), (1, 1_000));
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

fn superseded_as(trace: &voxpipe::store::OptimisationTrace) -> voxpipe::store::OptimisationTrace {
    voxpipe::store::OptimisationTrace {
        decision: Decision::Superseded,
        ..trace.clone()
    }
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
    assert_eq!(store.optimisation("c1").await.unwrap(), Some(trace.clone()));
    assert_eq!(store.optimisation("c2").await.unwrap(), None);
    // A duplicate run of optimisation c1, evaluated against version 1:
    // c1 is deployed already, so it is a conflict and nothing is written.
    let twice = PromptVersion {
        version: 2,
        ..version(1, "One again.")
    };
    assert_eq!(
        store.deploy_prompt(&key, 1, &twice, None).await.unwrap(),
        Deployed::Conflict(1)
    );
    assert_eq!(store.prompt_state(&key).await.unwrap().version, 1);
    // Nor does its later trace replace the deployed one.
    let superseded = OptimisationTrace {
        decision: Decision::Superseded,
        deployed_version: None,
        ..trace.clone()
    };
    store.put_optimisation(&superseded).await.unwrap();
    assert_eq!(store.optimisation("c1").await.unwrap(), Some(trace));
    // A trace not deployed is replaced as before.
    let rejected = OptimisationTrace {
        id: "c9".into(),
        decision: Decision::Rejected,
        ..superseded.clone()
    };
    store.put_optimisation(&rejected).await.unwrap();
    store
        .put_optimisation(&superseded_as(&rejected))
        .await
        .unwrap();
    assert_eq!(
        store.optimisation("c9").await.unwrap().unwrap().decision,
        Decision::Superseded
    );
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
    // A slot given back (a deferred optimisation) is free again.
    store.give_back_optimisation_slot(&key, "b").await.unwrap();
    store
        .give_back_optimisation_slot(&key, "none")
        .await
        .unwrap();
    assert!(
        store
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

/// What the optimiser keeps is bounded on both stores: the newest test
/// cases, the newest versions of a key.
async fn bounded_contract(store: &dyn Store) {
    use voxpipe::store::{MAX_PROMPT_HISTORY, MAX_TEST_CASES_KEPT, TestCase};
    let cases: Vec<TestCase> = (0..MAX_TEST_CASES_KEPT + 5)
        .map(|i| TestCase {
            input: format!("objection {i}"),
            target: "answers it".into(),
        })
        .collect();
    assert_eq!(store.add_test_cases(&cases[..10]).await.unwrap(), 10);
    assert_eq!(
        store.add_test_cases(&cases[10..]).await.unwrap(),
        MAX_TEST_CASES_KEPT - 5
    );
    let kept = store.test_cases().await.unwrap();
    assert_eq!(kept.len(), MAX_TEST_CASES_KEPT);
    assert_eq!(kept[0].input, "objection 5", "the oldest went");
    assert_eq!(
        kept[MAX_TEST_CASES_KEPT - 1],
        cases[MAX_TEST_CASES_KEPT + 4]
    );

    let key = segment_key();
    for n in 0..=MAX_PROMPT_HISTORY {
        set_prompt_version(store, &key, &format!("Prompt {n}."))
            .await
            .unwrap();
    }
    // Versions 0 to MAX_PROMPT_HISTORY + 1: the first two went.
    let history = store.prompt_history(&key).await.unwrap();
    assert_eq!(history.len(), MAX_PROMPT_HISTORY);
    assert_eq!(history[0].version, 2);
    assert_eq!(
        history[MAX_PROMPT_HISTORY - 1].version,
        MAX_PROMPT_HISTORY as u64 + 1
    );
    assert_eq!(
        store.prompt_state(&key).await.unwrap().version,
        MAX_PROMPT_HISTORY as u64 + 1
    );
}

#[tokio::test]
async fn both_stores_keep_the_newest_test_cases_and_versions_and_traces_expire() {
    use voxpipe::store::{
        MemoryStore, OPTIMISATION_TRACE_TTL_MS, OptimisationTrace, PromptHistoryStore, RedisStore,
        StoreSettings,
    };
    bounded_contract(&MemoryStore::new(StoreSettings::default())).await;
    let redis = RedisServer::start();
    let on_redis =
        RedisStore::connect(&redis.url(), "TEST_REDIS", StoreSettings::default()).unwrap();
    bounded_contract(&on_redis).await;

    let trace = OptimisationTrace {
        id: "c1".into(),
        key: SEGMENT_KEY.into(),
        call_id: "c1".into(),
        base_version: 0,
        candidate: String::new(),
        candidate_scores: None,
        current_scores: None,
        threshold: 0.5,
        decision: Decision::Skipped,
        reason: "test".into(),
        deployed_version: None,
        llm_calls: 0,
        at: "2026-01-01T00:00:00.000Z".into(),
    };
    on_redis.put_optimisation(&trace).await.unwrap();
    let mut client = redis.client().await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg("optimisation:c1")
        .query_async(&mut client)
        .await
        .unwrap();
    assert!(
        ttl > 0 && ttl as u64 <= OPTIMISATION_TRACE_TTL_MS,
        "optimisation:c1 PTTL {ttl}"
    );
}
