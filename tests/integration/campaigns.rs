//! Campaigns: the store's entry states on both backends, the worker on a
//! real Redis (two workers sharing a campaign, one of them crashing), and
//! the `/api/campaigns` endpoints.
//!
//! The workers dial through `ScriptedDialer`, a dialler of this file that
//! keeps the call records as the Twilio dialler does and settles each call
//! after its scripted outcome (busy, no-answer, answered for a while,
//! failed, or a 429 before it); it stands in for Twilio's status callbacks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use support::redis_server::RedisServer;
use support::wait::until_notified;
use tokio::sync::Notify;
use voxpipe::outbound::campaign::{
    CampaignRequest, CampaignRunner, CampaignSettlement, RunnerOptions, attempt_call_id,
};
use voxpipe::outbound::{CallRequest, CallSettled, DialError, Dialer, PlacedCall};
use voxpipe::store::time::unix_ms;
use voxpipe::store::{
    CallChange, CallDirection, CallRecord, CallStatus, CampaignCommand, CampaignEntry,
    CampaignState, EntryOutcome, LeaseRequest, MemoryStore, NewCampaign, OutboundCall, RedisStore,
    Segment, Store, StoreSettings, TwilioReport,
};

fn redis_store(server: &RedisServer) -> Arc<dyn Store> {
    Arc::new(RedisStore::connect(&server.url(), "REDIS_URL", StoreSettings::default()).unwrap())
}

fn numbers(n: u64) -> Vec<CampaignEntry> {
    (0..n)
        .map(|i| CampaignEntry {
            to: format!("+1555{:07}", i),
            parameters: BTreeMap::new(),
        })
        .collect()
}

fn lease(now_ms: u64, max_concurrent: u64) -> LeaseRequest {
    LeaseRequest {
        now_ms,
        max: 100,
        lease_ms: 1000,
        max_concurrent,
        interval_us: 1000,
        horizon_ms: 1000,
    }
}

/// The entry states on one backend: leases within the cap and the rate,
/// finishing once, retries, releases, reclaiming, cancel.
async fn entry_states(store: Arc<dyn Store>) {
    let now = unix_ms();
    store
        .create_campaign(&NewCampaign {
            id: "c1".into(),
            settings: "{}".into(),
            entries: numbers(5),
            rejected: 2,
            created_ms: now,
        })
        .await
        .unwrap();
    assert_eq!(store.active_campaigns().await.unwrap(), ["c1"]);
    let leased = store.lease_entries("c1", &lease(now, 2)).await.unwrap();
    assert_eq!(leased.iter().map(|l| l.entry).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(leased[0].attempt, 1);
    assert_eq!(leased[0].target.to, "+15550000000");
    // One slot per millisecond (interval 1000 µs), from now.
    assert_eq!(leased[1].slot_ms, leased[0].slot_ms + 1);
    assert!(
        store
            .lease_entries("c1", &lease(now, 2))
            .await
            .unwrap()
            .is_empty(),
        "at the cap"
    );

    // Done once: a second settlement of the same try changes nothing.
    let done = EntryOutcome::Done(CallStatus::Completed);
    assert!(store.finish_entry("c1", 0, 1, done).await.unwrap());
    assert!(!store.finish_entry("c1", 0, 1, done).await.unwrap());
    // A retry comes back as the next attempt once due.
    let retry = EntryOutcome::Retry {
        due_ms: now + 60_000,
    };
    assert!(store.finish_entry("c1", 1, 1, retry).await.unwrap());
    assert!(
        !store.finish_entry("c1", 1, 1, retry).await.unwrap(),
        "that try is over"
    );
    let progress = store.campaign("c1").await.unwrap().unwrap();
    assert_eq!(
        (
            progress.total,
            progress.rejected,
            progress.pending,
            progress.scheduled_retries,
            progress.active
        ),
        (5, 2, 4, 1, 0)
    );
    assert_eq!(progress.done["completed"], 1);
    let later = store
        .lease_entries("c1", &lease(now + 61_000, 10))
        .await
        .unwrap();
    let tries = |leased: &[voxpipe::store::LeasedEntry]| {
        leased
            .iter()
            .map(|l| (l.entry, l.attempt))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        tries(&later),
        [(2, 1), (3, 1), (4, 1), (1, 2)],
        "in due order; the retry is try 2"
    );

    // A lease not renewed comes back to whoever reclaims it.
    assert!(
        store
            .reclaim_entries("c1", now + 61_000, now + 70_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let reclaimed = store
        .reclaim_entries("c1", now + 70_000, now + 80_000, 10)
        .await
        .unwrap();
    assert_eq!(tries(&reclaimed), tries(&later));
    for (entry, attempt) in tries(&reclaimed) {
        let back = EntryOutcome::Release { due_ms: now };
        assert!(
            store
                .finish_entry("c1", entry, attempt, back)
                .await
                .unwrap()
        );
    }

    // Paused: nothing leased; cancel finishes what is pending.
    let paused = store
        .command_campaign("c1", CampaignCommand::Pause)
        .await
        .unwrap();
    assert_eq!(paused, Some(CampaignState::Paused));
    assert!(
        store
            .lease_entries("c1", &lease(now + 90_000, 5))
            .await
            .unwrap()
            .is_empty()
    );
    let canceled = store
        .command_campaign("c1", CampaignCommand::Cancel)
        .await
        .unwrap();
    assert_eq!(canceled, Some(CampaignState::Canceled));
    let resumed = store
        .command_campaign("c1", CampaignCommand::Resume)
        .await
        .unwrap();
    assert_eq!(
        resumed,
        Some(CampaignState::Canceled),
        "a canceled campaign stays so"
    );
    let progress = store.campaign("c1").await.unwrap().unwrap();
    assert_eq!((progress.pending, progress.active), (0, 0));
    assert_eq!(progress.done["canceled"], 4);
    assert!(store.active_campaigns().await.unwrap().is_empty());
    assert_eq!(
        store
            .command_campaign("nope", CampaignCommand::Pause)
            .await
            .unwrap(),
        None
    );
    assert!(store.campaign("nope").await.unwrap().is_none());
}

#[tokio::test]
async fn entry_states_in_the_embedded_store() {
    entry_states(Arc::new(MemoryStore::new(StoreSettings::default()))).await;
}

#[tokio::test]
async fn entry_states_in_redis() {
    let server = RedisServer::start();
    entry_states(redis_store(&server)).await;
}

/// What a scripted callee does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Callee {
    Busy,
    NoAnswer,
    Fails,
    /// Answers and talks this long.
    Answers(u64),
}

impl Callee {
    fn status(self) -> CallStatus {
        match self {
            Callee::Busy => CallStatus::Busy,
            Callee::NoAnswer => CallStatus::NoAnswer,
            Callee::Fails => CallStatus::Failed,
            Callee::Answers(_) => CallStatus::Completed,
        }
    }

    fn lasts(self) -> Duration {
        Duration::from_millis(match self {
            Callee::Busy => 100,
            Callee::NoAnswer => 300,
            Callee::Fails => 50,
            Callee::Answers(ms) => ms,
        })
    }
}

/// Everything the scripted dialler saw, shared by every worker's dialler.
#[derive(Default)]
struct Seen {
    /// Calls placed (a call id dialled again is not placed again), with the
    /// number and the worker.
    placed: HashMap<String, (String, &'static str)>,
    /// When each call was placed.
    dial_times: Vec<Instant>,
    live: u64,
    max_live: u64,
    settled: u64,
    /// When each 429 was answered.
    rate_limited: Vec<Instant>,
}

/// What the callee of a number does at a try.
type Script = Box<dyn Fn(&str, u32) -> Callee + Send + Sync>;

struct Calls {
    store: Arc<dyn Store>,
    settlement: CampaignSettlement,
    script: Script,
    /// 429s to answer before placing anything.
    refuse_first: AtomicU32,
    seen: Mutex<Seen>,
    changed: Notify,
}

impl Calls {
    fn new(
        store: Arc<dyn Store>,
        script: impl Fn(&str, u32) -> Callee + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Calls {
            settlement: CampaignSettlement::new(Arc::clone(&store)),
            store,
            script: Box::new(script),
            refuse_first: AtomicU32::new(0),
            seen: Mutex::new(Seen::default()),
            changed: Notify::new(),
        })
    }

    fn dialler(self: &Arc<Self>, worker: &'static str) -> Arc<dyn Dialer> {
        Arc::new(ScriptedDialer {
            calls: Arc::clone(self),
            worker,
        })
    }
}

struct ScriptedDialer {
    calls: Arc<Calls>,
    worker: &'static str,
}

#[async_trait]
impl Dialer for ScriptedDialer {
    async fn dial(&self, call_id: &str, request: &CallRequest) -> Result<PlacedCall, DialError> {
        let calls = &self.calls;
        let placed = PlacedCall {
            call_id: call_id.to_owned(),
            twilio_sid: format!("CA{call_id}"),
        };
        {
            let mut seen = calls.seen.lock().unwrap();
            if calls
                .refuse_first
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                seen.rate_limited.push(Instant::now());
                return Err(DialError::RateLimited {
                    retry_after: Duration::from_millis(700),
                });
            }
            if seen.placed.contains_key(call_id) {
                return Ok(placed);
            }
            seen.placed.insert(
                call_id.to_owned(),
                (request.to.as_str().to_owned(), self.worker),
            );
            seen.dial_times.push(Instant::now());
            seen.live += 1;
            seen.max_live = seen.max_live.max(seen.live);
        }
        let attempt = request.campaign.clone().unwrap();
        let mut record = CallRecord::pending(
            call_id,
            "twilio",
            Segment::default(),
            BTreeMap::new(),
            unix_ms(),
        );
        record.status = CallStatus::Initiated;
        record.direction = Some(CallDirection::Outbound);
        record.outbound = Some(OutboundCall {
            to: request.to.as_str().to_owned(),
            phone_hash: "0123456789abcdef".into(),
            twilio_sid: Some(placed.twilio_sid.clone()),
            campaign: Some(attempt.clone()),
            ..OutboundCall::default()
        });
        calls.store.create_call(&record).await?;
        let callee = (calls.script)(request.to.as_str(), attempt.attempt);
        let calls = Arc::clone(calls);
        let call_id = call_id.to_owned();
        // On the worker's runtime: a crashed worker's calls never settle,
        // as status callbacks to a dead server are lost.
        tokio::spawn(async move {
            tokio::time::sleep(callee.lasts()).await;
            let report = TwilioReport {
                status: Some(callee.status()),
                sequence: None,
                twilio_sid: None,
                answered_by: None,
                call_duration_secs: None,
                error: None,
                at_ms: unix_ms(),
            };
            let change = CallChange::TwilioReported(report);
            let record = calls
                .store
                .update_call(&call_id, &change)
                .await
                .unwrap()
                .unwrap();
            // Off the line before its slot is free.
            calls.seen.lock().unwrap().live -= 1;
            calls.settlement.call_settled(&record).await;
            calls.seen.lock().unwrap().settled += 1;
            calls.changed.notify_waiters();
        });
        Ok(placed)
    }
}

/// Short leases, so a crashed worker's entries come back within seconds.
fn quick() -> RunnerOptions {
    RunnerOptions {
        poll: Duration::from_millis(100),
        dial_lease: Duration::from_secs(2),
        call_lease: Duration::from_secs(4),
        horizon: Duration::from_millis(500),
        unavailable_backoff: Duration::from_millis(200),
    }
}

/// A worker on its own runtime: shutting the runtime down drops every
/// task at once, as a killed process would (no lease is handed back).
struct Worker {
    runtime: tokio::runtime::Runtime,
}

impl Worker {
    fn start(store_url: &str, calls: &Arc<Calls>, name: &'static str) -> Worker {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let store: Arc<dyn Store> = {
            let _entered = runtime.enter();
            Arc::new(RedisStore::connect(store_url, "REDIS_URL", StoreSettings::default()).unwrap())
        };
        let runner = CampaignRunner::new(store, calls.dialler(name), quick());
        runtime.spawn(async move { runner.run(std::future::pending()).await });
        Worker { runtime }
    }

    fn kill(self) {
        self.runtime.shutdown_background();
    }
}

async fn create(store: &Arc<dyn Store>, id: &str, json: serde_json::Value) -> u64 {
    let request: CampaignRequest = serde_json::from_value(json).unwrap();
    let (campaign, created) = request.plan(id.into(), unix_ms()).unwrap();
    store.create_campaign(&campaign).await.unwrap();
    created.queued
}

/// Waits for the campaign to finish (its progress is store state, changed
/// by every worker: polled, with a generous limit).
async fn finished(
    store: &Arc<dyn Store>,
    id: &str,
    limit: Duration,
) -> voxpipe::store::CampaignProgress {
    let deadline = Instant::now() + limit;
    loop {
        let progress = store.campaign(id).await.unwrap().unwrap();
        if progress.state == CampaignState::Finished
            || progress.state == CampaignState::Canceled && progress.active == 0
        {
            return progress;
        }
        assert!(
            Instant::now() < deadline,
            "campaign not finished: {progress:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The most calls placed in any `window`.
fn busiest(times: &[Instant], window: Duration) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort();
    let mut best = 0;
    let mut start = 0;
    for end in 0..sorted.len() {
        while sorted[end] - sorted[start] >= window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_a_thousand_numbers_and_survive_a_crash() {
    const NUMBERS: u64 = 1000;
    const RATE: f64 = 50.0;
    let redis = RedisServer::start();
    let store = redis_store(&redis);
    // 3 in 10 answer and talk 1-2 s; the rest are busy, unanswered or fail.
    let script = |to: &str, _attempt: u32| {
        let n: u64 = to[to.len() - 4..].parse().unwrap();
        match n % 10 {
            0..=2 => Callee::Answers(1000 + (n % 7) * 150),
            3..=5 => Callee::Busy,
            6..=8 => Callee::NoAnswer,
            _ => Callee::Fails,
        }
    };
    let calls = Calls::new(Arc::clone(&store), script);
    let csv: String = std::iter::once("to,country\n".to_owned())
        .chain((0..NUMBERS).map(|i| format!("+1555{i:07},US\n")))
        .collect();
    let queued = create(
        &store,
        "big",
        serde_json::json!({"csv": csv, "calls_per_second": RATE, "max_concurrent": 200}),
    )
    .await;
    assert_eq!(queued, NUMBERS);
    let (a, b) = std::thread::scope(|_| {
        (
            Worker::start(&redis.url(), &calls, "a"),
            Worker::start(&redis.url(), &calls, "b"),
        )
    });
    // Kill worker a once 400 calls have settled.
    let settled = until_notified(&calls.changed, Duration::from_secs(120), || {
        (calls.seen.lock().unwrap().settled >= 400).then_some(())
    })
    .await;
    assert!(settled.is_some(), "400 calls settled");
    let (before_kill, placed_by_a_live) = {
        let seen = calls.seen.lock().unwrap();
        (
            seen.dial_times.clone(),
            seen.placed.values().filter(|(_, w)| *w == "a").count(),
        )
    };
    tokio::task::spawn_blocking(move || a.kill()).await.unwrap();
    assert!(
        placed_by_a_live > 50,
        "both workers dialled: a placed {placed_by_a_live}"
    );

    let progress = finished(&store, "big", Duration::from_secs(180)).await;
    b.kill();
    let seen = calls.seen.lock().unwrap();
    // Every number reached a final status exactly once, and none was
    // dialled twice (no retries in this campaign).
    assert_eq!((progress.pending, progress.active), (0, 0), "{progress:?}");
    assert_eq!(progress.done.values().sum::<u64>(), NUMBERS, "{progress:?}");
    let mut per_number: HashMap<&str, usize> = HashMap::new();
    for (to, _) in seen.placed.values() {
        *per_number.entry(to.as_str()).or_default() += 1;
    }
    assert_eq!(per_number.len() as u64, NUMBERS, "every number dialled");
    assert!(
        per_number.values().all(|&n| n == 1),
        "a number dialled twice"
    );
    // Each entry's status is its callee's, or failed for a call lost with
    // the crashed worker.
    let mut redis_conn = redis::Client::open(redis.url()).unwrap();
    let done: HashMap<String, String> = redis::cmd("HGETALL")
        .arg("{campaign:big}:done")
        .query(&mut redis_conn)
        .unwrap();
    assert_eq!(done.len() as u64, NUMBERS);
    let mut lost = 0;
    for (entry, status) in &done {
        let to = format!("+1555{:07}", entry.parse::<u64>().unwrap());
        let expected = script(&to, 1).status().as_str();
        if status != expected {
            assert_eq!(status, "failed", "entry {entry}");
            let call_id = attempt_call_id("big", entry.parse().unwrap(), 1);
            assert_eq!(
                seen.placed[&call_id].1, "a",
                "only the crashed worker's calls are lost"
            );
            lost += 1;
        }
    }
    // The rate: no 5 s stretch above 10% over the rate, and the rate
    // reached (within 10%) while both workers ran.
    let most = busiest(&seen.dial_times, Duration::from_secs(5));
    assert!(
        most as f64 <= RATE * 5.0 * 1.1,
        "{most} calls in 5 s at {RATE}/s"
    );
    let mut early = before_kill;
    early.sort();
    let span = (*early.last().unwrap() - early[0]).as_secs_f64();
    let achieved = (early.len() - 1) as f64 / span;
    assert!(
        (achieved - RATE).abs() <= RATE * 0.1,
        "{achieved:.1} calls per second, asked {RATE}"
    );
    eprintln!(
        "1000 numbers: {achieved:.1} calls/s before the crash, busiest 5 s {most}, {lost} lost with the crashed worker, max live {}",
        seen.max_live
    );
}

/// Runs `workers` workers until the campaign `id` finishes.
async fn run_to_the_end(
    redis: &RedisServer,
    calls: &Arc<Calls>,
    id: &str,
    workers: usize,
) -> voxpipe::store::CampaignProgress {
    let names = ["a", "b"];
    let running: Vec<Worker> = names[..workers]
        .iter()
        .map(|name| Worker::start(&redis.url(), calls, name))
        .collect();
    let progress = finished(&calls.store, id, Duration::from_secs(120)).await;
    tokio::task::spawn_blocking(move || running.into_iter().for_each(Worker::kill))
        .await
        .unwrap();
    progress
}

fn list(n: u64) -> serde_json::Value {
    (0..n)
        .map(|i| serde_json::json!({"to": format!("+1555{i:07}")}))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_holds_across_workers() {
    let redis = RedisServer::start();
    let store = redis_store(&redis);
    let calls = Calls::new(Arc::clone(&store), |_, _| Callee::Answers(400));
    let json =
        serde_json::json!({"numbers": list(30), "calls_per_second": 100, "max_concurrent": 4});
    create(&store, "capped", json).await;
    let progress = run_to_the_end(&redis, &calls, "capped", 2).await;
    assert_eq!(progress.done["completed"], 30);
    let seen = calls.seen.lock().unwrap();
    assert_eq!(seen.placed.len(), 30);
    assert!(seen.max_live <= 4, "{} live at once", seen.max_live);
    assert_eq!(seen.max_live, 4, "the cap was reached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_numbers_are_retried_by_the_policy() {
    let redis = RedisServer::start();
    let store = redis_store(&redis);
    // Number 0 is busy once then answers; 1 is always busy; 2 always fails
    // (not retried: the policy names busy and no-answer only).
    let calls = Calls::new(Arc::clone(&store), |to, attempt| {
        match (to.ends_with('0'), to.ends_with('1')) {
            (true, _) if attempt == 1 => Callee::Busy,
            (true, _) => Callee::Answers(50),
            (_, true) => Callee::Busy,
            _ => Callee::Fails,
        }
    });
    let json = serde_json::json!({
        "numbers": list(3), "calls_per_second": 20,
        "retry": {"attempts": 3, "backoff_secs": 1, "on": ["busy", "no-answer"]}
    });
    create(&store, "retry", json).await;
    let progress = run_to_the_end(&redis, &calls, "retry", 1).await;
    assert_eq!(progress.done.get("completed"), Some(&1));
    assert_eq!(progress.done.get("busy"), Some(&1));
    assert_eq!(progress.done.get("failed"), Some(&1));
    let seen = calls.seen.lock().unwrap();
    let mut ids: Vec<&String> = seen.placed.keys().collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "retry-0-1",
            "retry-0-2",
            "retry-1-1",
            "retry-1-2",
            "retry-1-3",
            "retry-2-1"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_backs_the_whole_campaign_off() {
    let redis = RedisServer::start();
    let store = redis_store(&redis);
    let calls = Calls::new(Arc::clone(&store), |_, _| Callee::Busy);
    calls.refuse_first.store(2, Ordering::SeqCst);
    create(
        &store,
        "limited",
        serde_json::json!({"numbers": list(10), "calls_per_second": 20}),
    )
    .await;
    let progress = run_to_the_end(&redis, &calls, "limited", 1).await;
    assert_eq!(progress.done["busy"], 10, "every number dialled in the end");
    let seen = calls.seen.lock().unwrap();
    assert_eq!(seen.rate_limited.len(), 2);
    assert_eq!(seen.placed.len(), 10, "each once");
    // No call went out during the 700 ms Twilio asked for.
    let first_429 = seen.rate_limited[0];
    let first_call = *seen.dial_times.iter().min().unwrap();
    assert!(
        first_call - first_429 >= Duration::from_millis(650),
        "dialled {:?} after the 429",
        first_call - first_429
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_dialled_outside_the_window() {
    let redis = RedisServer::start();
    let store = redis_store(&redis);
    let calls = Calls::new(Arc::clone(&store), |_, _| Callee::Busy);
    let hour = (unix_ms() / 3_600_000 % 24) as u8;
    let closed = serde_json::json!({"time_zone": "UTC", "start_hour": (hour + 2) % 24, "end_hour": (hour + 3) % 24});
    let open = serde_json::json!({"time_zone": "Europe/Paris", "start_hour": 0, "end_hour": 24});
    create(
        &store,
        "closed",
        serde_json::json!({"numbers": list(3), "window": closed, "calls_per_second": 20}),
    )
    .await;
    create(
        &store,
        "open",
        serde_json::json!({"numbers": [{"to": "+15559999999"}], "window": open}),
    )
    .await;
    // The open campaign's call shows the worker ran its rounds.
    let progress = run_to_the_end(&redis, &calls, "open", 1).await;
    assert_eq!(progress.done["busy"], 1);
    let closed = store.campaign("closed").await.unwrap().unwrap();
    assert_eq!((closed.pending, closed.active), (3, 0));
    assert_eq!(calls.seen.lock().unwrap().placed.len(), 1);
}

/// A server with the API behind `Bearer s3cret`, keeping campaigns in an
/// embedded store and dialling through `calls`.
async fn api_server(
    store: Arc<dyn Store>,
    calls: &Arc<Calls>,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    use voxpipe::agent::{AgentRuntime, ContextSection, RuntimeParts};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/parrot.toml");
    let config = voxpipe::pipeline_file::load_pipeline(
        &path,
        &["server.api_token_env=API_TOKEN".parse().unwrap()],
        &support::processors::registry(),
    )
    .unwrap();
    let runtime = AgentRuntime::from_parts(RuntimeParts {
        store,
        section: ContextSection::default(),
        evaluator: None,
        webhook: None,
        skills: None,
        post_call: Vec::new(),
        objects: None,
        phone_hasher: None,
        learning: None,
    });
    let env = HashMap::from([("API_TOKEN".to_owned(), "s3cret".to_owned())]);
    let server = voxpipe::server::Server::builder(config)
        .env(voxpipe::pipeline::EnvSource::Fixed(Arc::new(env)))
        .context(Arc::new(runtime))
        .dialer(calls.dialler("api"))
        .campaign_options(quick())
        .build()
        .unwrap();
    let listener = support::net::loopback_listener().await;
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(listener, async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_creates_reports_pauses_resumes_and_cancels() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(StoreSettings::default()));
    let calls = Calls::new(Arc::clone(&store), |_, _| Callee::NoAnswer);
    let (addr, _stop) = api_server(Arc::clone(&store), &calls).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");
    let post = |path: &str, body: serde_json::Value| {
        http.post(url(path))
            .bearer_auth("s3cret")
            .json(&body)
            .send()
    };

    let unauthorized = http
        .post(url("/api/campaigns"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    let unknown = post(
        "/api/campaigns",
        serde_json::json!({"numbers": [], "rate": 2}),
    )
    .await
    .unwrap();
    assert_eq!(unknown.status(), 400);
    assert!(unknown.text().await.unwrap().contains("rate"));
    let all_bad = post("/api/campaigns", serde_json::json!({"csv": "to\n12345\n"}))
        .await
        .unwrap();
    assert_eq!(all_bad.status(), 400);
    let body: serde_json::Value = all_bad.json().await.unwrap();
    assert_eq!(body["rejected"][0]["line"], 2);

    // A window closed now: nothing is dialled while the API is exercised.
    let hour = (unix_ms() / 3_600_000 % 24) as u8;
    let window = serde_json::json!({"time_zone": "UTC", "start_hour": (hour + 2) % 24, "end_hour": (hour + 3) % 24});
    let csv = "to,country,industry\n+15551230001,US,retail\nnot-a-number,US,retail\n\
               +15551230002,GB,\n+15551230001,US,retail\n+15551230003,US,retail,extra\n";
    let created = post(
        "/api/campaigns",
        serde_json::json!({"csv": csv, "calls_per_second": 5, "window": window}),
    )
    .await
    .unwrap();
    assert_eq!(created.status(), 201);
    let created: serde_json::Value = created.json().await.unwrap();
    assert_eq!(created["queued"], 2);
    assert_eq!(created["duplicates"], 1);
    let lines: Vec<u64> = created["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [3, 6]);
    let id = created["campaign_id"].as_str().unwrap().to_owned();

    let paused: serde_json::Value =
        post(&format!("/api/campaigns/{id}/pause"), serde_json::json!({}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(paused["state"], "paused");
    let resumed: serde_json::Value = post(
        &format!("/api/campaigns/{id}/resume"),
        serde_json::json!({}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(resumed["state"], "running");
    let canceled: serde_json::Value = post(
        &format!("/api/campaigns/{id}/cancel"),
        serde_json::json!({}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(canceled["state"], "canceled");
    let shown = http
        .get(url(&format!("/api/campaigns/{id}")))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(shown.status(), 200);
    let shown: serde_json::Value = shown.json().await.unwrap();
    assert_eq!(shown["total"], 2);
    assert_eq!(shown["pending"], 0);
    assert_eq!(shown["by_status"]["canceled"], 2);
    assert_eq!(shown["rejected_rows"], 2);
    assert_eq!(shown["settings"]["calls_per_second"], 5.0);
    let missing = http
        .get(url("/api/campaigns/nope"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(calls.seen.lock().unwrap().placed.is_empty());

    // A body well over the other routes' 64 KiB: 10,000 numbers, dialled
    // by the server's own worker.
    let csv: String = std::iter::once("to\n".to_owned())
        .chain((0..10_000).map(|i| format!("+1666{i:07}\n")))
        .collect();
    let big = post(
        "/api/campaigns",
        serde_json::json!({"csv": csv, "calls_per_second": 50}),
    )
    .await
    .unwrap();
    assert_eq!(big.status(), 201);
    let big: serde_json::Value = big.json().await.unwrap();
    assert_eq!(big["queued"], 10_000);
    let dialled = until_notified(&calls.changed, Duration::from_secs(60), || {
        (calls.seen.lock().unwrap().settled >= 5).then_some(())
    })
    .await;
    assert!(dialled.is_some(), "the server's worker dials");
    let metrics = http
        .get(url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("voxpipe_campaign_dials_total{result=\"placed\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("voxpipe_campaign_entries{state=\"pending\"}"));
    let big_id = big["campaign_id"].as_str().unwrap();
    let canceled = post(
        &format!("/api/campaigns/{big_id}/cancel"),
        serde_json::json!({}),
    )
    .await
    .unwrap();
    assert_eq!(canceled.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_with_one_idempotency_key_create_one_campaign() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(StoreSettings::default()));
    let calls = Calls::new(Arc::clone(&store), |_, _| Callee::NoAnswer);
    let (addr, _stop) = api_server(Arc::clone(&store), &calls).await;
    let http = reqwest::Client::new();
    // A window closed now: nothing is dialled while the API is exercised.
    let hour = (unix_ms() / 3_600_000 % 24) as u8;
    let window = serde_json::json!({"time_zone": "UTC", "start_hour": (hour + 2) % 24, "end_hour": (hour + 3) % 24});
    let post = |key: &str, numbers: serde_json::Value| {
        let request = http
            .post(format!("http://{addr}/api/campaigns"))
            .bearer_auth("s3cret")
            .header("idempotency-key", key)
            .json(&serde_json::json!({"numbers": numbers, "window": window}));
        async move {
            let response = request.send().await.unwrap();
            let replayed = response.headers().get("idempotent-replayed").is_some();
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap();
            (status, replayed, body)
        }
    };
    let numbers = serde_json::json!([{"to": "+15551230001"}, {"to": "+15551230002"}, {"to": "+15551230001"}, {"to": "bad"}]);
    let (status, replayed, first) = post("list-9", numbers.clone()).await;
    assert_eq!((status, replayed), (201, false), "{first}");
    let id = first["campaign_id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 16, "a campaign id like any other: {id}");
    // The client's answer was lost: it sends the request again.
    let (status, replayed, again) = post("list-9", numbers.clone()).await;
    assert_eq!((status, replayed), (201, true), "{again}");
    assert_eq!(again, first, "answered as the first time");
    assert_eq!(store.active_campaigns().await.unwrap(), [id.as_str()]);
    // The key names that campaign only.
    let (status, _, other) = post("list-9", serde_json::json!([{"to": "+15551230009"}])).await;
    assert_eq!(status, 422, "{other}");
    let (status, _, bad) = post("two words", numbers.clone()).await;
    assert_eq!(status, 400, "{bad}");
    let (status, replayed, second) = post("list-10", numbers).await;
    assert_eq!((status, replayed), (201, false), "{second}");
    assert_ne!(second["campaign_id"], id.as_str());
    assert_eq!(store.active_campaigns().await.unwrap().len(), 2);
    let progress = store.campaign(&id).await.unwrap().unwrap();
    assert_eq!((progress.total, progress.rejected), (2, 1));
}
