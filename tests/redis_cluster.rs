//! The Redis store on a real Redis Cluster started by the test on loopback
//! ports: every operation that touches several keys keeps them in one slot
//! (none is refused with `CROSSSLOT`), scans find keys on every master, a
//! store deployed against the wrong kind of Redis is refused at start, and
//! a master killed mid-call, its replica promoted, loses no turn.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use support::redis_cluster::RedisCluster;
use support::redis_server::RedisServer;
use support::turns::turn;
use voxpipe::agent::writer::{WriterSettings, spawn_writer};
use voxpipe::conversation::Role;
use voxpipe::store::{
    Appended, CallChange, CallRecord, CampaignCommand, CampaignEntry, CampaignState, Deployed,
    Enqueued, EntryOutcome, Interaction, Keys, LeaseRequest, NewCampaign, PromptKey, PromptVersion,
    RedisStore, Segment, Skill, Store, StoreError, StoreSettings, TacticsList,
};
use voxpipe::store::{
    CallStore, CampaignStore, JobQueue, Outbox, PromptHistoryStore, RefinementStore, SkillStore,
};

fn settings() -> StoreSettings {
    StoreSettings {
        keys: Keys::new("t:"),
        op_timeout: Duration::from_secs(5),
        ..StoreSettings::default()
    }
}

fn interaction(index: u64, text: &str) -> Interaction {
    Interaction {
        index,
        role: Role::User,
        text: text.to_owned(),
        timestamp: "2026-01-01T00:00:00.000Z".into(),
        session_ms: index * 1000,
        interrupted: false,
        tool_calls: Vec::new(),
        latency_ms: None,
        agent: None,
        reflection: None,
    }
}

fn call(id: &str, created_ms: u64) -> CallRecord {
    CallRecord::pending(
        id,
        "twilio",
        Segment::default(),
        BTreeMap::new(),
        created_ms,
    )
}

#[tokio::test]
async fn every_store_operation_works_across_the_masters_of_a_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let store = RedisStore::connect_cluster(&cluster.urls(), "REDIS_URL", settings()).unwrap();
    store.check_topology().await.unwrap();
    store.ping().await.unwrap();
    let now = voxpipe::store::time::unix_ms();

    // Calls: created once, indexed by time (another slot), read back in
    // one MGET that the client splits by slot.
    for i in 0..12 {
        let id = format!("call-{i}");
        assert!(store.create_call(&call(&id, now)).await.unwrap());
        assert!(!store.create_call(&call(&id, now)).await.unwrap());
        store
            .update_call(&id, &CallChange::Started { at_ms: now })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            store.append_turn(&id, &interaction(0, "hi")).await.unwrap(),
            Appended::Added
        );
        assert_eq!(
            store.append_turn(&id, &interaction(0, "hi")).await.unwrap(),
            Appended::AlreadyStored { stored: 1 }
        );
    }
    let listed = store.calls_between(0, u64::MAX, 100).await.unwrap();
    assert_eq!(listed.len(), 12);

    // Skills: written to many slots, found by a scan of every master, read
    // back by one request per skill.
    for i in 0..20 {
        store
            .put_skill(&Skill::new(
                format!("too expensive {i}"),
                "value",
                vec![0.5; 4],
            ))
            .await
            .unwrap();
    }
    let hashes = store.skill_hashes().await.unwrap();
    assert_eq!(hashes.len(), 20);
    let skills = store.skills(&hashes).await.unwrap();
    assert!(skills.iter().all(Option::is_some));

    // Prompts: the live key, its version and its history in one slot.
    let key = PromptKey::Segment {
        country: "US".into(),
        industry: "retail".into(),
    };
    store.set_prompt(&PromptKey::Base, "Base.").await.unwrap();
    let entry = PromptVersion {
        version: 1,
        prompt: "Sell.".into(),
        scores: None,
        deployed_at: "2026-01-01T00:00:00Z".into(),
        deployed_at_ms: now,
        call_id: None,
        optimisation: None,
        reason: "test".into(),
    };
    assert_eq!(
        store.deploy_prompt(&key, 0, &entry, None).await.unwrap(),
        Deployed::Deployed(1)
    );
    assert_eq!(
        store.deploy_prompt(&key, 0, &entry, None).await.unwrap(),
        Deployed::Conflict(1)
    );
    assert_eq!(store.prompt_state(&key).await.unwrap().version, 1);
    assert_eq!(store.prompt_history(&key).await.unwrap().len(), 2);
    let mut prompt_keys = store.prompt_keys().await.unwrap();
    prompt_keys.sort_by_key(ToString::to_string);
    assert_eq!(prompt_keys, [PromptKey::Base, key.clone()]);
    let found = store
        .first_prompt(&[key.clone(), PromptKey::Base])
        .await
        .unwrap();
    assert_eq!(found, Some((key, "Sell.".to_owned())));

    // Tactics and test cases: one key each.
    store
        .add_tactics(TacticsList::Winning, &["Ask twice.".to_owned()])
        .await
        .unwrap();
    store
        .set_session_tactics("call-0", &["Ask twice.".to_owned()])
        .await
        .unwrap();
    assert_eq!(store.session_tactics("call-0").await.unwrap().len(), 1);
    // A list and the calls noted beside it, in its slot: one script.
    store
        .add_call_tactics(TacticsList::Winning, "call-0", &["Ask twice.".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        store.tactic_calls(TacticsList::Winning).await.unwrap()["ask twice."],
        1
    );
    assert!(
        store
            .remove_tactic(TacticsList::Winning, "ask TWICE.")
            .await
            .unwrap()
    );

    // The webhook outbox: a delivery and its payload in one slot.
    assert_eq!(
        store.enqueue_delivery("e1", "{}", now).await.unwrap(),
        Enqueued::Queued
    );
    assert_eq!(
        store.enqueue_delivery("e1", "{}", now).await.unwrap(),
        Enqueued::Pending
    );
    assert_eq!(
        store.enqueue_delivery("e2", "{}", now).await.unwrap(),
        Enqueued::Queued
    );
    let claimed = store.claim_deliveries(now, 60_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    store.complete_delivery("e1").await.unwrap();
    store.bury_delivery("e2", "{}").await.unwrap();
    assert_eq!(store.outbox_len().await.unwrap(), 0);

    // Evaluation jobs: a stream and its consumer group.
    let id = store.push_job("{\"call_id\":\"call-0\"}").await.unwrap();
    let jobs = store
        .read_jobs("w1", 10, Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    store.ack_job(&id).await.unwrap();

    // Campaigns: a campaign's parts in its slot, the list of active
    // campaigns in another.
    let entries = (0..3)
        .map(|i| CampaignEntry {
            to: format!("+1555000000{i}"),
            parameters: BTreeMap::new(),
        })
        .collect();
    store
        .create_campaign(&NewCampaign {
            id: "camp".into(),
            settings: "{}".into(),
            entries,
            rejected: 0,
            created_ms: now,
        })
        .await
        .unwrap();
    assert_eq!(store.active_campaigns().await.unwrap(), ["camp"]);
    let request = LeaseRequest {
        now_ms: now,
        max: 3,
        lease_ms: 60_000,
        max_concurrent: 10,
        interval_us: 1,
        horizon_ms: 60_000,
    };
    let leased = store.lease_entries("camp", &request).await.unwrap();
    assert_eq!(leased.len(), 3);
    for entry in &leased {
        let done = EntryOutcome::Done(voxpipe::store::CallStatus::Completed);
        assert!(
            store
                .finish_entry("camp", entry.entry, entry.attempt, done)
                .await
                .unwrap()
        );
    }
    let progress = store.campaign("camp").await.unwrap().unwrap();
    assert_eq!(progress.state, CampaignState::Finished);
    assert!(
        store.active_campaigns().await.unwrap().is_empty(),
        "a finished campaign leaves the active list"
    );
    assert_eq!(
        store
            .command_campaign("camp", CampaignCommand::Pause)
            .await
            .unwrap(),
        Some(CampaignState::Finished)
    );

    // The keys are spread: every master holds some.
    for role in cluster.roles().iter().filter(|r| r.is_master) {
        assert!(
            cluster.dbsize(role.port) > 0,
            "master {} is empty",
            role.port
        );
    }
}

#[tokio::test]
async fn a_store_not_deployed_as_configured_is_refused_at_start() {
    let standalone = RedisServer::start();
    let as_cluster =
        RedisStore::connect_cluster(&standalone.url(), "REDIS_URL", settings()).unwrap();
    let err = as_cluster.check_topology().await.unwrap_err();
    assert!(matches!(err, StoreError::Topology { .. }), "{err}");
    assert!(err.to_string().contains("standalone"), "{err}");
    assert!(!err.is_transient());

    let cluster = RedisCluster::start(3, 0);
    let first_node = cluster.urls().split(',').next().unwrap().to_owned();
    let as_standalone = RedisStore::connect(&first_node, "REDIS_URL", settings()).unwrap();
    let err = as_standalone.check_topology().await.unwrap_err();
    assert!(err.to_string().contains("cluster = true"), "{err}");

    // What an operator sees: the command stops at once with the reason.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_voxpipe"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["tactics", "list", "-p", "pipelines/agent.toml"])
        .args([
            "--set",
            "context.store=redis",
            "--set",
            "context.url_env=TEST_REDIS",
        ])
        .args(["--set", "context.cluster=true"])
        .env("TEST_REDIS", standalone.url())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("is a standalone Redis, not a cluster node"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_master_killed_mid_call_and_its_replica_promoted_loses_no_turn() {
    let mut cluster = RedisCluster::start(3, 1);
    let store: Arc<dyn Store> = Arc::new(
        RedisStore::connect_cluster(
            &cluster.urls(),
            "REDIS_URL",
            StoreSettings {
                op_timeout: Duration::from_millis(1000),
                // A turn counts as written once a replica holds it too.
                wait_replicas: 1,
                ..settings()
            },
        )
        .unwrap(),
    );
    let writer_settings = WriterSettings {
        retry_initial: Duration::from_millis(50),
        retry_max: Duration::from_millis(500),
        flush_timeout: Duration::from_secs(120),
        on_completed: Vec::new(),
        // The failover is ridden out in memory; no disk involved.
        spool: None,
        lease_holder: None,
    };
    let (recorder, mut progress) =
        spawn_writer(Arc::clone(&store), call("failover", 0), writer_settings);
    recorder.started();
    for i in 0..5 {
        recorder.record(Arc::new(turn(
            i,
            Role::User,
            &format!("before {i}"),
            i * 100,
        )));
    }
    progress.wait_for(|s| s.turns_written == 5).await.unwrap();

    // The master holding the transcript dies; its replica takes over.
    let master = cluster.master_of_key("t:call:failover:interactions");
    cluster.kill(master);
    for i in 5..10 {
        recorder.record(Arc::new(turn(
            i,
            Role::User,
            &format!("after {i}"),
            i * 100,
        )));
    }
    recorder.ended("hangup");
    let status = progress
        .wait_for(|s| s.done.is_some())
        .await
        .unwrap()
        .clone();
    let report = status.done.unwrap();
    assert!(report.unwritten.is_empty(), "{:?}", report.unwritten);
    assert_eq!(report.turns_written, 10);

    cluster.wait_ok();
    let turns = store.turns("failover").await.unwrap();
    let texts: Vec<&str> = turns.iter().map(|t| t.text.as_str()).collect();
    let expected: Vec<String> = (0..10)
        .map(|i| format!("{} {i}", if i < 5 { "before" } else { "after" }))
        .collect();
    assert_eq!(texts, expected, "every turn once, in order");
    assert!(
        cluster
            .roles()
            .iter()
            .all(|r| r.port != master || !r.is_master),
        "the killed master no longer serves"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_share_one_cluster_connection() {
    let cluster = RedisCluster::start(3, 0);
    let store: Arc<dyn Store> =
        Arc::new(RedisStore::connect_cluster(&cluster.urls(), "REDIS_URL", settings()).unwrap());
    let candidates = PromptKey::candidates(&Segment {
        country: Some("US".into()),
        industry: Some("retail".into()),
    });
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = Arc::clone(&store);
        let candidates = candidates.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("c{i}");
            store.first_prompt(&candidates).await.unwrap();
            store.tactics(TacticsList::Winning).await.unwrap();
            store.create_call(&call(&id, 1)).await.unwrap();
            store.append_turn(&id, &interaction(0, "hi")).await.unwrap();
        }));
    }
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("no request hangs")
            .unwrap();
    }
}
