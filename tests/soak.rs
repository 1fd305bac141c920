//! Soak: Twilio calls to `pipelines/parrot.toml` (the Silero VAD, then the
//! parrot) arriving and leaving continuously at a fixed concurrency, for a
//! bounded time. Each call says one utterance and hangs up (`stop`); the
//! session drains, the parrot's reply comes back in real time, the server
//! closes the stream, and a new call takes its place.
//!
//! Asserted: every call heard its reply on time (no frame later than the
//! slack below); RSS flat after the warm-up; afterwards every session
//! ended, none active, and the process's tasks and file descriptors back
//! to what they were before the first call.
//!
//! Short by default (60 s, 12 calls at a time), for CI on a loaded 2-core
//! machine. Longer:
//!
//! ```sh
//! VOXPIPE_SOAK_SECS=3600 VOXPIPE_SOAK_CALLS=100 cargo test --release --test soak -- --nocapture
//! ```
//!
//! The server and its callers share this process, so RSS, tasks and
//! descriptors are both sides' together; the callers keep nothing once
//! their call is over.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use support::fake::twilio_media::{CallConfig, FakeCall};
use support::mulaw::{silence, speech};
use support::server::TestServer;
use support::wait::eventually;
use tokio::time::Instant;

/// A guard against a hang of any one wait, not a measure.
const WAIT: Duration = Duration::from_secs(60);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The process's resident set, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

fn median(mut samples: Vec<u64>) -> u64 {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// One call, start to hang-up: the worst lateness of its reply's frames.
/// The caller speaks, then hangs up (`stop`); the session drains, so the
/// parrot's reply still comes back, in real time, before the server
/// closes the stream.
async fn one_call(server: std::net::SocketAddr, n: u32, words: Vec<u8>) -> Duration {
    let call = FakeCall::connect(server, CallConfig::new(n)).await;
    call.say([words, silence(500)].concat());
    call.said(WAIT).await;
    call.stop();
    let record = call.closed(WAIT).await;
    let replied = record.heard.len() + record.unplayed_at_close.len();
    assert!(
        replied >= 8_000,
        "call {n} heard its words back: {replied} bytes"
    );
    record.media_late_max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_come_and_go_for_minutes_and_leave_nothing_behind() {
    let secs: u64 = env_or("VOXPIPE_SOAK_SECS", 60);
    let concurrency: u32 = env_or("VOXPIPE_SOAK_CALLS", 12);
    // A frame more than this late would be a gap the caller hears. The
    // generous default is for a loaded CI machine where the fake callers
    // share the cores; the bench measures the 20 ms goal.
    let slack = Duration::from_millis(env_or("VOXPIPE_SOAK_MAX_LATE_MS", 500));

    let server = TestServer::parrot(&[&format!("server.max_sessions={}", concurrency + 4)]).await;
    let words = speech(1_400, 3_400);
    // One call first: what the first call starts once for the process (a
    // pool, a sweep) is not a leak; what each call leaves would be.
    one_call(server.addr, 0, words.clone()).await;
    let (fds_before, tasks_before) = (open_fds(), alive_tasks());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let next_call = Arc::new(AtomicU32::new(1));

    // RSS once a second while the calls go on.
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::new();
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        while Instant::now() < deadline {
            ticker.tick().await;
            samples.push((started.elapsed(), rss_kib()));
        }
        samples
    });
    let callers: Vec<_> = (0..concurrency)
        .map(|_| {
            let next_call = Arc::clone(&next_call);
            let words = words.clone();
            let addr = server.addr;
            tokio::spawn(async move {
                let mut worst = Vec::new();
                while Instant::now() < deadline {
                    let n = next_call.fetch_add(1, Ordering::Relaxed);
                    worst.push((n, one_call(addr, n, words.clone()).await));
                }
                worst
            })
        })
        .collect();
    let mut lateness = Vec::new();
    for caller in callers {
        lateness.extend(caller.await.unwrap());
    }
    let samples = sampler.await.unwrap();
    let calls = next_call.load(Ordering::Relaxed) as usize;

    // Every call heard its reply on time.
    let (worst_call, worst) = lateness.iter().copied().max_by_key(|(_, l)| *l).unwrap();
    eprintln!(
        "soak: {calls} calls in {secs} s at {concurrency} at a time; worst frame {worst:?} late (call {worst_call})"
    );
    let late: Vec<_> = lateness.iter().filter(|(_, l)| *l > slack).collect();
    assert!(
        late.is_empty(),
        "calls with a frame over {slack:?} late: {late:?}"
    );
    assert!(
        calls >= concurrency as usize,
        "every caller finished a call"
    );

    // RSS flat after the warm-up (the first quarter): the last quarter's
    // median within 10% (at least 8 MiB) of the second quarter's.
    let quarter = Duration::from_secs(secs) / 4;
    let between = |from: Duration, to: Duration| -> Vec<u64> {
        samples
            .iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .map(|(_, kib)| *kib)
            .collect()
    };
    let warm = median(between(quarter, quarter * 2));
    let last = median(between(quarter * 3, quarter * 4 + Duration::from_secs(1)));
    let allowance = (warm / 10).max(8 * 1024);
    eprintln!("soak: RSS after warm-up {warm} KiB, at the end {last} KiB");
    assert!(
        last <= warm + allowance,
        "RSS grew from {warm} KiB to {last} KiB: {samples:?}"
    );

    // Every session ended; nothing is left running or open.
    let ended = server.sessions.ended(calls, WAIT).await;
    assert!(
        ended
            .iter()
            .all(|s| s.end_reason.as_deref() == Some("hangup")),
        "every call ended by its hang-up"
    );
    assert!(
        eventually(WAIT, async || alive_tasks() <= tasks_before).await,
        "tasks: {tasks_before} before the calls, {} after",
        alive_tasks()
    );
    assert!(
        eventually(WAIT, async || open_fds() <= fds_before).await,
        "file descriptors: {fds_before} before the calls, {} after",
        open_fds()
    );
    let (status, health) = server.get("/health").await;
    assert_eq!(status, 200, "{health}");
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["sessions"]["active"], 0, "{health}");
}
