//! The store contract, run against both backends: the embedded store and a
//! real redis-server. Same keys, same answers, idempotent writes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use support::redis_server::RedisServer;
use voxpipe::conversation::Role;
use voxpipe::store::{
    Appended, CallStore, Keys, MemoryStore, RedisStore, RefinementStore, SkillStore, Store,
    StoreSettings,
};
use voxpipe::store::{
    CallChange, CallRecord, CallStatus, Interaction, PromptKey, Segment, TacticsList,
};
use voxpipe::store::{Enqueued, Skill, TestCase};

pub(crate) const HOUR_MS: u64 = 3_600_000;

pub(crate) enum Backend {
    Memory(Arc<MemoryStore>),
    Redis(Arc<RedisStore>, RedisServer),
}

impl Backend {
    fn settings() -> StoreSettings {
        StoreSettings {
            keys: Keys::new("t:"),
            ..StoreSettings::default()
        }
    }

    fn memory() -> Self {
        Backend::Memory(Arc::new(MemoryStore::new(Self::settings())))
    }

    pub(crate) fn redis() -> Self {
        let server = RedisServer::start();
        let store = RedisStore::connect(&server.url(), "REDIS_URL", Self::settings()).unwrap();
        Backend::Redis(Arc::new(store), server)
    }

    pub(crate) fn store(&self) -> Arc<dyn Store> {
        match self {
            Backend::Memory(store) => store.clone(),
            Backend::Redis(store, _) => store.clone(),
        }
    }

    /// Milliseconds left on `key` (prefix included).
    pub(crate) async fn ttl_ms(&self, key: &str) -> Option<u64> {
        match self {
            Backend::Memory(store) => store.ttl_ms(key).unwrap(),
            Backend::Redis(_, server) => {
                let ttl: i64 = server.client().await.pttl(key).await.unwrap();
                u64::try_from(ttl).ok()
            }
        }
    }
}

pub(crate) fn backends() -> [Backend; 2] {
    [Backend::memory(), Backend::redis()]
}

fn turn(index: u64, text: &str) -> Interaction {
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

fn call(id: &str) -> CallRecord {
    CallRecord::pending(
        id,
        "twilio",
        Segment {
            country: Some("US".into()),
            industry: None,
        },
        BTreeMap::from([("lead".to_owned(), "42".to_owned())]),
        1_000,
    )
}

#[tokio::test]
async fn calls_are_created_once_and_move_forward() {
    for backend in backends() {
        let store = backend.store();
        assert!(store.create_call(&call("c1")).await.unwrap());
        assert!(
            !store.create_call(&call("c1")).await.unwrap(),
            "a second create never resets"
        );
        assert!(
            store
                .update_call("nope", &CallChange::Started { at_ms: 5 })
                .await
                .unwrap()
                .is_none()
        );

        let active = store
            .update_call("c1", &CallChange::Started { at_ms: 2_000 })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(active.status, CallStatus::Active);
        let ended = CallChange::Ended {
            reason: "hangup".into(),
            at_ms: 3_000,
        };
        store.update_call("c1", &ended).await.unwrap();
        store
            .update_call("c1", &CallChange::Started { at_ms: 4_000 })
            .await
            .unwrap();
        let stored = store.call("c1").await.unwrap().unwrap();
        assert_eq!(stored.status, CallStatus::Completed);
        assert_eq!(
            stored.started_at.as_deref(),
            Some("1970-01-01T00:00:02.000Z")
        );
        assert_eq!(stored.end_reason.as_deref(), Some("hangup"));
        assert_eq!(stored.custom_parameters["lead"], "42");

        let ttl = backend.ttl_ms("t:call:c1").await.unwrap();
        assert!(ttl > 47 * HOUR_MS && ttl <= 48 * HOUR_MS, "{ttl}");
    }
}

#[tokio::test]
async fn turns_are_appended_only_at_their_index() {
    for backend in backends() {
        let store = backend.store();
        assert_eq!(
            store.append_turn("c2", &turn(0, "a")).await.unwrap(),
            Appended::Added
        );
        assert_eq!(
            store.append_turn("c2", &turn(1, "b")).await.unwrap(),
            Appended::Added
        );
        // A retry of turn 1 whose reply was lost.
        assert_eq!(
            store.append_turn("c2", &turn(1, "b")).await.unwrap(),
            Appended::AlreadyStored { stored: 2 }
        );
        assert_eq!(
            store.append_turn("c2", &turn(5, "f")).await.unwrap(),
            Appended::AddedAfterGap { stored: 2 }
        );
        let texts: Vec<String> = store
            .turns("c2")
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.text)
            .collect();
        assert_eq!(texts, ["a", "b", "f"]);
        let ttl = backend.ttl_ms("t:call:c2:interactions").await.unwrap();
        assert!(ttl > 47 * HOUR_MS && ttl <= 48 * HOUR_MS, "{ttl}");
    }
}

#[tokio::test]
async fn ttls_too_long_for_a_clock_are_capped_not_rejected() {
    // `call_ttl_secs = 9223372036854775807` in TOML: far past any clock.
    let settings = StoreSettings {
        call_ttl: Duration::from_secs(i64::MAX as u64),
        session_tactics_ttl: Duration::MAX,
        outbox_ttl: Duration::MAX,
        ..Backend::settings()
    };
    let server = RedisServer::start();
    let stores: [Arc<dyn Store>; 2] = [
        Arc::new(MemoryStore::new(settings.clone())),
        Arc::new(RedisStore::connect(&server.url(), "REDIS_URL", settings).unwrap()),
    ];
    for store in stores {
        assert!(store.create_call(&call("long")).await.unwrap());
        assert_eq!(
            store.append_turn("long", &turn(0, "kept")).await.unwrap(),
            Appended::Added
        );
        assert_eq!(store.turns("long").await.unwrap()[0].text, "kept");
        assert!(store.call("long").await.unwrap().is_some());
        store
            .set_session_tactics("long", &["x".to_owned()])
            .await
            .unwrap();
        assert_eq!(store.session_tactics("long").await.unwrap(), ["x"]);
        assert_eq!(
            store.enqueue_delivery("long", "p", 0).await.unwrap(),
            Enqueued::Queued
        );
        assert_eq!(
            store.claim_deliveries(0, u64::MAX, 1).await.unwrap().len(),
            1
        );
    }
}

#[tokio::test]
async fn writes_refused_at_maxmemory_are_retried_not_given_up() {
    let backend = Backend::redis();
    let store = backend.store();
    let Backend::Redis(_, server) = &backend else {
        unreachable!()
    };
    let set_maxmemory = |bytes: &'static str| async move {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(bytes)
            .query_async(&mut server.client().await)
            .await
            .unwrap();
    };
    set_maxmemory("1").await;
    let err = store.append_turn("oom", &turn(0, "a")).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    let err = store.create_call(&call("oom")).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    // Memory freed (or the limit raised): the same write goes through.
    set_maxmemory("0").await;
    assert_eq!(
        store.append_turn("oom", &turn(0, "a")).await.unwrap(),
        Appended::Added
    );
}

#[tokio::test]
async fn tactics_lists_never_hold_a_tactic_twice() {
    for backend in backends() {
        let store = backend.store();
        let base = ["Anchor high".to_owned(), "Mirror the buyer".to_owned()];
        assert_eq!(
            store.add_tactics(TacticsList::Base, &base).await.unwrap(),
            2
        );
        let more = [
            "  anchor   HIGH ".to_owned(),
            "Offer a pilot".to_owned(),
            "offer a pilot".to_owned(),
            "   ".to_owned(),
        ];
        assert_eq!(
            store.add_tactics(TacticsList::Base, &more).await.unwrap(),
            1
        );
        assert_eq!(
            store.tactics(TacticsList::Base).await.unwrap(),
            ["Mirror the buyer", "Anchor high", "Offer a pilot"],
            "a tactic that comes back moves to the end, its text kept"
        );
        assert!(
            store
                .tactics(TacticsList::Winning)
                .await
                .unwrap()
                .is_empty()
        );

        store.set_session_tactics("c3", &base).await.unwrap();
        store
            .set_session_tactics("c3", &["Offer a pilot".to_owned()])
            .await
            .unwrap();
        assert_eq!(
            store.session_tactics("c3").await.unwrap(),
            ["Offer a pilot"]
        );
        let ttl = backend.ttl_ms("t:session:c3:tactics").await.unwrap();
        assert!(ttl > 23 * HOUR_MS && ttl <= 24 * HOUR_MS, "{ttl}");
    }
}

#[tokio::test]
async fn test_cases_are_listed_once_per_objection() {
    for backend in backends() {
        let store = backend.store();
        let case = |input: &str, target: &str| TestCase {
            input: input.to_owned(),
            target: target.to_owned(),
        };
        let first = [
            case("It's too expensive", "Reframes the price as value"),
            case("We already have a vendor", "Asks what the vendor misses"),
            case("it's   TOO expensive", "A second spelling, dropped"),
        ];
        assert_eq!(store.add_test_cases(&first).await.unwrap(), 2);
        let again = [
            case("IT'S TOO EXPENSIVE", "Dropped: listed"),
            case("Send me an email", "Books a call instead"),
            case("   ", "No objection, dropped"),
        ];
        assert_eq!(store.add_test_cases(&again).await.unwrap(), 1);
        let listed = store.test_cases().await.unwrap();
        assert_eq!(
            listed,
            [
                case("It's too expensive", "Reframes the price as value"),
                case("We already have a vendor", "Asks what the vendor misses"),
                case("Send me an email", "Books a call instead"),
            ]
        );
    }
}

#[tokio::test]
async fn prompts_resolve_from_the_most_specific_key() {
    for backend in backends() {
        let store = backend.store();
        let segment = Segment {
            country: Some("US".into()),
            industry: Some("retail".into()),
        };
        let candidates = PromptKey::candidates(&segment);
        assert_eq!(store.first_prompt(&candidates).await.unwrap(), None);
        store.set_prompt(&PromptKey::Base, "base").await.unwrap();
        let industry = PromptKey::Industry {
            industry: "retail".into(),
        };
        store
            .set_prompt(&industry, "any-country retail")
            .await
            .unwrap();
        assert_eq!(
            store.first_prompt(&candidates).await.unwrap(),
            Some((industry, "any-country retail".to_owned()))
        );
        let exact = PromptKey::Segment {
            country: "US".into(),
            industry: "retail".into(),
        };
        store.set_prompt(&exact, "  ").await.unwrap();
        assert_eq!(
            store.first_prompt(&candidates).await.unwrap().unwrap().1,
            "any-country retail",
            "a blank prompt does not count"
        );
        store.set_prompt(&exact, "US retail").await.unwrap();
        assert_eq!(
            store.first_prompt(&candidates).await.unwrap().unwrap().1,
            "US retail"
        );
    }
}

#[tokio::test]
async fn skills_round_trip_with_their_vectors() {
    for backend in backends() {
        let store = backend.store();
        let a = Skill::new("too expensive", "show the ROI", vec![0.25, -1.0, 3.5]);
        let b = Skill::new("no time", "offer a 5 minute slot", vec![1.0, 0.0, 0.0]);
        store.put_skill(&a).await.unwrap();
        store.put_skill(&b).await.unwrap();
        let mut hashes = store.skill_hashes().await.unwrap();
        hashes.sort();
        let mut expected = vec![a.hash.clone(), b.hash.clone()];
        expected.sort();
        assert_eq!(hashes, expected);
        let got = store
            .skills(&[a.hash.clone(), "missing".into(), b.hash.clone()])
            .await
            .unwrap();
        assert_eq!(got, [Some(a.clone()), None, Some(b)]);
    }
}

#[tokio::test]
async fn both_stores_keep_the_newest_skills() {
    use voxpipe::store::MAX_SKILLS_KEPT;
    for backend in backends() {
        let store = backend.store();
        let mut last = None;
        for n in 0..=MAX_SKILLS_KEPT {
            let skill = Skill::new(format!("objection {n}"), "answer", vec![1.0]);
            store.put_skill(&skill).await.unwrap();
            last = Some(skill);
        }
        let last = last.unwrap();
        let hashes = store.skill_hashes().await.unwrap();
        assert_eq!(hashes.len(), MAX_SKILLS_KEPT, "one went");
        assert!(hashes.contains(&last.hash), "the newest stays");
        // Stored again, a skill is the newest, and nothing more goes.
        store.put_skill(&last).await.unwrap();
        assert_eq!(store.skill_hashes().await.unwrap().len(), MAX_SKILLS_KEPT);
    }
}

#[tokio::test]
async fn skills_written_by_another_program_are_read() {
    // The learning loop writes `skill:{hash}` itself: HSET with a packed
    // little-endian f32 vector.
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url(), "REDIS_URL", StoreSettings::default()).unwrap();
    let vector: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut client = server.client().await;
    let _: () = client
        .hset_multiple(
            "skill:abc",
            &[
                ("trigger", b"Too pricey".as_slice()),
                ("rebuttal", b"ROI"),
                ("vector", &vector),
            ],
        )
        .await
        .unwrap();
    let _: () = client.set("skill:not-a-hash", "x").await.unwrap();
    assert_eq!(store.skill_hashes().await.unwrap(), ["abc"]);
    let skill = store
        .skills(&["abc".into()])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    assert_eq!(skill.trigger, "Too pricey");
    assert_eq!(skill.vector, [1.0, 2.0]);
}

#[tokio::test]
async fn jobs_stay_pending_until_acknowledged_and_can_be_reclaimed() {
    for backend in backends() {
        let store = backend.store();
        let first = store.push_job("one").await.unwrap();
        store.push_job("two").await.unwrap();

        let got = store.read_jobs("a", 1, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            (
                got[0].id.as_str(),
                got[0].payload.as_str(),
                got[0].deliveries
            ),
            (first.as_str(), "one", 1)
        );
        let got = store.read_jobs("a", 10, Duration::ZERO).await.unwrap();
        assert_eq!(
            got.iter().map(|j| j.payload.as_str()).collect::<Vec<_>>(),
            ["two"]
        );
        assert!(
            store
                .read_jobs("a", 10, Duration::ZERO)
                .await
                .unwrap()
                .is_empty()
        );

        // Not idle long enough: nothing to reclaim.
        assert!(
            store
                .reclaim_jobs("b", Duration::from_secs(3600), 10)
                .await
                .unwrap()
                .is_empty()
        );
        store.ack_job(&first).await.unwrap();
        // Worker `a` died holding "two": `b` takes it over.
        let reclaimed = store.reclaim_jobs("b", Duration::ZERO, 10).await.unwrap();
        assert_eq!(reclaimed.len(), 1);
        assert_eq!(
            (reclaimed[0].payload.as_str(), reclaimed[0].deliveries),
            ("two", 2)
        );
        store.ack_job(&reclaimed[0].id).await.unwrap();
        assert!(
            store
                .reclaim_jobs("b", Duration::ZERO, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn a_blocking_read_wakes_when_a_job_arrives() {
    for backend in backends() {
        let store = backend.store();
        // Create the group first (a read before any job).
        assert!(
            store
                .read_jobs("w", 1, Duration::ZERO)
                .await
                .unwrap()
                .is_empty()
        );
        let reader = {
            let store = store.clone();
            tokio::spawn(async move { store.read_jobs("w", 1, Duration::from_secs(10)).await })
        };
        tokio::task::yield_now().await;
        store.push_job("late").await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("the read returned before its 10 s limit")
            .unwrap()
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].payload, "late");
    }
}

#[tokio::test]
async fn the_embedded_file_is_shared_between_processes_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("context.jsonl");
    let server_side = MemoryStore::open(&path, StoreSettings::default()).unwrap();
    let operator = MemoryStore::open(&path, StoreSettings::default()).unwrap();

    server_side.create_call(&call("c9")).await.unwrap();
    server_side
        .append_turn("c9", &turn(0, "hello"))
        .await
        .unwrap();
    operator
        .add_tactics(TacticsList::Base, &["Anchor high".to_owned()])
        .await
        .unwrap();
    // Each sees the other's writes at its next operation.
    assert_eq!(operator.turns("c9").await.unwrap()[0].text, "hello");
    assert_eq!(
        server_side.tactics(TacticsList::Base).await.unwrap(),
        ["Anchor high"]
    );
    // A conditional write decides on the other's latest state.
    assert_eq!(
        operator.append_turn("c9", &turn(0, "hello")).await.unwrap(),
        Appended::AlreadyStored { stored: 1 }
    );
    let skill = Skill::new("too expensive", "ROI", vec![0.5, 0.25]);
    operator.put_skill(&skill).await.unwrap();
    drop((server_side, operator));

    let restarted = MemoryStore::open(&path, StoreSettings::default()).unwrap();
    assert_eq!(restarted.call("c9").await.unwrap().unwrap().call_id, "c9");
    assert_eq!(restarted.turns("c9").await.unwrap().len(), 1);
    assert_eq!(
        restarted
            .skills(std::slice::from_ref(&skill.hash))
            .await
            .unwrap(),
        [Some(skill)]
    );
    let ttl = restarted.ttl_ms("call:c9").unwrap().unwrap();
    assert!(ttl > 47 * HOUR_MS, "TTLs survive the restart: {ttl}");
}
