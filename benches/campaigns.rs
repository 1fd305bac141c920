//! How long queuing a 10,000-number campaign takes on a real Redis: the
//! CSV read and checked (`CampaignRequest::plan`), then stored
//! (`create_campaign`: in Redis, a claim script then one write script).
//! Three runs; the median is reported.
//!
//! Run: `cargo bench --bench campaigns` (needs `redis-server`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Instant;

use support::redis_server::RedisServer;
use voxpipe::outbound::campaign::CampaignRequest;
use voxpipe::store::{RedisStore, Store, StoreSettings};

const NUMBERS: usize = 10_000;
const RUNS: usize = 3;

fn main() {
    let redis = RedisServer::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store: Arc<dyn Store> = {
        let _entered = runtime.enter();
        Arc::new(RedisStore::connect(&redis.url(), "REDIS_URL", StoreSettings::default()).unwrap())
    };
    let csv: String = std::iter::once("to,country,industry\n".to_owned())
        .chain((0..NUMBERS).map(|i| format!("+1555{i:07},US,healthcare\n")))
        .collect();
    let body =
        serde_json::json!({"csv": csv, "calls_per_second": 30, "max_concurrent": 200}).to_string();
    let mut totals = Vec::new();
    let mut stores = Vec::new();
    for run in 0..RUNS {
        let started = Instant::now();
        let request: CampaignRequest = serde_json::from_str(&body).unwrap();
        let (campaign, created) = request.plan(format!("bench{run}"), 0).unwrap();
        let planned = started.elapsed();
        runtime.block_on(store.create_campaign(&campaign)).unwrap();
        let total = started.elapsed();
        assert_eq!(created.queued as usize, NUMBERS);
        let stored = runtime
            .block_on(store.campaign(&campaign.id))
            .unwrap()
            .unwrap();
        assert_eq!(stored.pending as usize, NUMBERS);
        println!(
            "run {run}: {NUMBERS} numbers queued in {:.1} ms (read and checked {:.1} ms, stored {:.1} ms)",
            total.as_secs_f64() * 1000.0,
            planned.as_secs_f64() * 1000.0,
            (total - planned).as_secs_f64() * 1000.0
        );
        totals.push(total);
        stores.push(total - planned);
    }
    totals.sort();
    stores.sort();
    println!(
        "median of {RUNS}: {:.1} ms in all, {:.1} ms of it storing",
        totals[RUNS / 2].as_secs_f64() * 1000.0,
        stores[RUNS / 2].as_secs_f64() * 1000.0
    );
}
