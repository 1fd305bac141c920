//! Analytics: calls found by creation time through `calls:by_created` (in a
//! real Redis and in the embedded store), and `GET /api/analytics` adding
//! them up by status, outcome and direction, with the success rate, the
//! mean score and the duration and turn-latency percentiles; bad input is a
//! 400 naming the parameter, and the API key is required.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use serde_json::Value;
use support::processors::registry;
use support::redis_server::RedisServer;
use support::server::{Setup, TestServer};
use voxpipe::conversation::Role;
use voxpipe::pipeline::EnvSource;
use voxpipe::pipeline_file::parse_pipeline;
use voxpipe::store::time::{rfc3339, unix_ms};
use voxpipe::store::{
    CallChange, CallDirection, CallRecord, CallStatus, CallStore, Evaluation, Interaction,
    MemoryStore, Outcome, RedisStore, Segment, Store, StoreSettings,
};

const HOUR_MS: u64 = 3_600_000;

fn call(id: &str, created_ms: u64, country: &str, industry: &str) -> CallRecord {
    let segment = Segment {
        country: Some(country.into()),
        industry: Some(industry.into()),
    };
    CallRecord::pending(id, "twilio", segment, BTreeMap::new(), created_ms)
}

fn answer(index: u64, latency_ms: Option<u64>) -> Interaction {
    Interaction {
        index,
        role: Role::Assistant,
        text: "Sure.".into(),
        timestamp: rfc3339(0),
        session_ms: 0,
        interrupted: false,
        tool_calls: Vec::new(),
        latency_ms,
        agent: None,
        reflection: None,
    }
}

fn ids(calls: &[CallRecord]) -> Vec<&str> {
    calls.iter().map(|c| c.call_id.as_str()).collect()
}

/// The index answers by time, oldest first, up to a limit; calls created
/// twice keep their first place; a call older than the TTL is not indexed.
async fn calls_are_found_by_creation_time(store: &dyn Store) {
    let now = unix_ms();
    for (id, ago_hours) in [("c-3h", 3), ("c-1h", 1), ("c-2h", 2), ("c-30h", 30)] {
        assert!(
            store
                .create_call(&call(id, now - ago_hours * HOUR_MS, "US", "retail"))
                .await
                .unwrap()
        );
    }
    // A second create (a retry, another process) changes nothing.
    assert!(
        !store
            .create_call(&call("c-3h", now, "US", "retail"))
            .await
            .unwrap()
    );
    // Created before the TTL (48 h): out of the index at once.
    store
        .create_call(&call("c-50h", now - 50 * HOUR_MS, "US", "retail"))
        .await
        .unwrap();

    let last_day = store
        .calls_between(now - 24 * HOUR_MS, now, 100)
        .await
        .unwrap();
    assert_eq!(ids(&last_day), ["c-3h", "c-2h", "c-1h"]);
    let everything = store.calls_between(0, now, 100).await.unwrap();
    assert_eq!(ids(&everything), ["c-30h", "c-3h", "c-2h", "c-1h"]);
    let first_two = store.calls_between(0, now, 2).await.unwrap();
    assert_eq!(ids(&first_two), ["c-30h", "c-3h"]);
    let between = store
        .calls_between(now - 2 * HOUR_MS, now - 2 * HOUR_MS, 10)
        .await
        .unwrap();
    assert_eq!(ids(&between), ["c-2h"], "both ends are included");
    assert!(
        store
            .calls_between(now + HOUR_MS, now + 2 * HOUR_MS, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn redis_finds_calls_by_creation_time_from_its_index() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url(), "REDIS_URL", StoreSettings::default()).unwrap();
    calls_are_found_by_creation_time(&store).await;

    // The index is the documented sorted set; a call whose record is gone
    // (expired, deleted) is left out rather than failing the read.
    let mut client = redis.client().await;
    let indexed: Vec<(String, u64)> = client
        .zrange_withscores("calls:by_created", 0, -1)
        .await
        .unwrap();
    let members: Vec<&str> = indexed.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(members, ["c-30h", "c-3h", "c-2h", "c-1h"]);
    let _: () = client.del("call:c-2h").await.unwrap();
    let found = store.calls_between(0, unix_ms(), 100).await.unwrap();
    assert_eq!(ids(&found), ["c-30h", "c-3h", "c-1h"]);
}

#[tokio::test]
async fn the_embedded_store_finds_calls_by_creation_time_from_its_index() {
    let store = MemoryStore::new(StoreSettings::default());
    calls_are_found_by_creation_time(&store).await;
}

/// A server keeping its calls in `store` (`redis` with `REDIS_URL`, or
/// `memory`), its API behind the key `s3cret`.
async fn server(store: &str, redis_url: &str) -> (TestServer, Arc<dyn Store>) {
    let toml = format!(
        "[pipeline]\nname = \"analytics\"\n\n[[processor]]\ntype = \"parrot\"\n\n\
         [context]\nstore = \"{store}\"\nurl_env = \"REDIS_URL\"\n\n\
         [server]\napi_token_env = \"API_TOKEN\"\n"
    );
    let env = [("REDIS_URL", redis_url), ("API_TOKEN", "s3cret")];
    let config = parse_pipeline(Path::new("analytics.toml"), &toml, &registry()).unwrap();
    let fixed = EnvSource::Fixed(Arc::new(
        env.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    ));
    let runtime = Arc::new(config.agent_runtime(&fixed).unwrap());
    let store = runtime.store().clone();
    let server = TestServer::start(Setup {
        toml: Some(&toml),
        path: "analytics.toml",
        env: &env,
        context: Some(runtime),
        ..Setup::default()
    })
    .await;
    (server, store)
}

/// Three calls of the last hours (two of them US:healthcare) and one of
/// last week.
async fn seed(store: &dyn Store) -> u64 {
    let now = unix_ms();
    let judged = |outcome, score| {
        CallChange::Evaluated(Evaluation::Evaluated {
            outcome,
            score,
            tactics: Vec::new(),
            reason: "r".into(),
            model: "m".into(),
            at: rfc3339(now),
        })
    };
    // An inbound call, 60 s long, a success, latencies 700 and 900 ms.
    let a = call("a", now - 3 * HOUR_MS, "US", "healthcare");
    store.create_call(&a).await.unwrap();
    for change in [
        CallChange::Started {
            at_ms: now - 3 * HOUR_MS,
        },
        CallChange::Ended {
            reason: "hangup".into(),
            at_ms: now - 3 * HOUR_MS + 60_000,
        },
        judged(Outcome::Success, 0.9),
    ] {
        store.update_call("a", &change).await.unwrap();
    }
    store.append_turn("a", &answer(0, None)).await.unwrap();
    store.append_turn("a", &answer(1, Some(700))).await.unwrap();
    store.append_turn("a", &answer(2, Some(900))).await.unwrap();
    // An outbound call, 20 s long, a failure, latency 1500 ms.
    let mut b = call("b", now - 2 * HOUR_MS, "US", "healthcare");
    b.direction = Some(CallDirection::Outbound);
    store.create_call(&b).await.unwrap();
    for change in [
        CallChange::Started {
            at_ms: now - 2 * HOUR_MS,
        },
        CallChange::Ended {
            reason: "end_call".into(),
            at_ms: now - 2 * HOUR_MS + 20_000,
        },
        judged(Outcome::Failure, 0.5),
    ] {
        store.update_call("b", &change).await.unwrap();
    }
    store
        .append_turn("b", &answer(0, Some(1500)))
        .await
        .unwrap();
    // An outbound call that found the line busy, of another segment.
    let mut c = call("c", now - HOUR_MS, "FR", "retail");
    c.direction = Some(CallDirection::Outbound);
    c.status = CallStatus::Busy;
    store.create_call(&c).await.unwrap();
    now
}

async fn get(server: &TestServer, query: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(server.url(&format!("/api/analytics{query}")));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn query(from_ms: u64, to_ms: u64) -> String {
    format!("?from={}&to={}", rfc3339(from_ms), rfc3339(to_ms))
}

async fn analytics_add_up_the_calls_of_a_range(backend: &str, redis_url: &str) {
    let (server, store) = server(backend, redis_url).await;
    let now = seed(store.as_ref()).await;

    let (status, all) = get(&server, &query(now - 5 * HOUR_MS, now), Some("s3cret")).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["calls"], 3);
    assert_eq!(all["capped"], false);
    assert_eq!(all["truncated"], false);
    assert_eq!(all["scan_capped"], false);
    let by_status = all["by_status"].as_object().unwrap();
    assert_eq!(by_status.len(), CallStatus::ALL.len(), "{by_status:?}");
    assert_eq!(by_status["completed"], 2);
    assert_eq!(by_status["busy"], 1);
    assert_eq!(by_status["no-answer"], 0);
    assert_eq!(all["by_outcome"]["success"], 1);
    assert_eq!(all["by_outcome"]["failure"], 1);
    assert_eq!(all["by_outcome"]["unevaluated"], 1);
    assert_eq!(all["by_direction"]["inbound"], 1);
    assert_eq!(all["by_direction"]["outbound"], 2);
    assert_eq!(all["success_rate"], 0.5);
    assert!(
        (all["mean_score"].as_f64().unwrap() - 0.7).abs() < 1e-9,
        "{all}"
    );
    assert_eq!(all["duration_secs"]["count"], 2);
    assert_eq!(all["duration_secs"]["p50"], 20.0);
    assert_eq!(all["duration_secs"]["p99"], 60.0);
    assert_eq!(all["turn_latency_ms"]["count"], 3);
    assert_eq!(all["turn_latency_ms"]["p50"], 900.0);
    assert_eq!(all["turn_latency_ms"]["p90"], 1500.0);

    // One segment.
    let (status, health) = get(
        &server,
        &format!("{}&segment=US:healthcare", query(now - 5 * HOUR_MS, now)),
        Some("s3cret"),
    )
    .await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["segment"], "US:healthcare");
    assert_eq!(health["calls"], 2);
    assert_eq!(health["by_status"]["busy"], 0);
    // A narrower range: only the busy call.
    let (_, last_hours) = get(&server, &query(now - 90 * 60_000, now), Some("s3cret")).await;
    assert_eq!(last_hours["calls"], 1);
    assert_eq!(last_hours["by_status"]["busy"], 1);
    assert_eq!(last_hours["success_rate"], Value::Null);
    assert_eq!(last_hours["duration_secs"]["p50"], Value::Null);

    // A year is narrowed to the 31 days ending at `to`.
    let (status, year) = get(
        &server,
        &query(now - 365 * 24 * HOUR_MS, now),
        Some("s3cret"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(year["capped"], true);
    assert_eq!(year["from"], rfc3339(now - 31 * 24 * HOUR_MS));
    assert_eq!(year["calls"], 3);

    // Bad input: 400, naming the parameter; nothing without the key.
    let (status, bad) = get(&server, "?from=yesterday", Some("s3cret")).await;
    assert_eq!(status, 400);
    assert_eq!(bad["parameter"], "from", "{bad}");
    let (status, bad) = get(&server, "?to=2026-13-01T00:00:00Z", Some("s3cret")).await;
    assert_eq!((status, bad["parameter"].as_str()), (400, Some("to")));
    let (status, bad) = get(&server, "?segment=US:", Some("s3cret")).await;
    assert_eq!((status, bad["parameter"].as_str()), (400, Some("segment")));
    let (status, _) = get(&server, "", None).await;
    assert_eq!(status, 401);
    let (status, _) = get(&server, "", Some("wrong")).await;
    assert_eq!(status, 401);
    server.shutdown(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_over_redis() {
    let redis = RedisServer::start();
    analytics_add_up_the_calls_of_a_range("redis", &redis.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_over_the_embedded_store() {
    analytics_add_up_the_calls_of_a_range("memory", "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voxpipe_calls_stats_prints_the_same_report() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url(), "REDIS_URL", StoreSettings::default()).unwrap();
    let now = seed(&store).await;
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("stats.toml");
    std::fs::write(
        &pipeline,
        "[pipeline]\nname = \"stats\"\n\n[[processor]]\ntype = \"parrot\"\n\n\
         [context]\nstore = \"redis\"\nurl_env = \"REDIS_URL\"\n",
    )
    .unwrap();
    let url = redis.url();
    let run = move |args: Vec<String>| {
        let (url, pipeline) = (url.clone(), pipeline.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_voxpipe"))
                .args(["calls", "stats", "-p"])
                .arg(&pipeline)
                .args(args)
                .env("REDIS_URL", url)
                .output()
                .unwrap()
        })
    };
    let out = run(vec![
        "--from".into(),
        rfc3339(now - 5 * HOUR_MS),
        "--to".into(),
        rfc3339(now),
        "--segment".into(),
        "US:healthcare".into(),
    ])
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["calls"], 2);
    assert_eq!(report["by_outcome"]["success"], 1);
    assert_eq!(report["turn_latency_ms"]["count"], 3);

    let out = run(vec!["--to".into(), "soon".into()]).await.unwrap();
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains("--to") && error.contains("RFC 3339"),
        "{error}"
    );
}
