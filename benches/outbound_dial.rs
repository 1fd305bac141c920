//! Dialling overhead: from `POST /api/calls` leaving the client to Twilio's
//! create-call request arriving at a fake Twilio, at a steady rate, with the
//! call records in a real Redis (`redis-server` must be installed).
//!
//! Run with: `cargo bench --bench outbound_dial -- --rate 30 --calls 300 --runs 3`
//!
//! Each call dials a fresh number (no per-number limit in the way); the
//! fake answers 201 and posts no callbacks, so only the dial is measured:
//! the API handler, the record and the number's hold written to Redis, the
//! request to Twilio.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use support::fake::twilio_rest::{ACCOUNT_SID, FakeTwilioRest};
use support::redis_server::RedisServer;
use support::server::{Setup, TestServer};
use voxpipe::pipeline::EnvSource;
use voxpipe::pipeline_file::parse_pipeline;

#[derive(Debug, Parser)]
struct Args {
    /// Calls per second.
    #[arg(long, default_value_t = 30)]
    rate: u32,
    /// Calls per run.
    #[arg(long, default_value_t = 300)]
    calls: usize,
    /// Runs (each on a fresh server, Redis and fake).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Ignored (cargo bench passes `--bench`).
    #[arg(long)]
    bench: bool,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

async fn run(args: &Args) -> (Duration, Duration, Duration) {
    let redis = RedisServer::start();
    let twilio = FakeTwilioRest::start("token").await;
    let toml = format!(
        "[pipeline]\nname = \"bench\"\n\n[[processor]]\ntype = \"parrot\"\n\n\
         [server]\npublic_host = \"voice.example.test\"\napi_open = true\n\n\
         [context]\nstore = \"redis\"\nurl_env = \"TEST_REDIS\"\n\n\
         [transport.twilio]\nauth_token_env = \"TWILIO_AUTH_TOKEN\"\naccount_sid_env = \"TWILIO_ACCOUNT_SID\"\napi_base_url = \"{}\"\n\n\
         [outbound]\nfrom = \"+15550009999\"\n",
        twilio.base_url
    );
    let env = [
        ("TEST_REDIS", redis.url()),
        ("TWILIO_AUTH_TOKEN", "token".to_owned()),
        ("TWILIO_ACCOUNT_SID", ACCOUNT_SID.to_owned()),
    ];
    let vars: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let config = parse_pipeline(
        Path::new("bench.toml"),
        &toml,
        &support::processors::registry(),
    )
    .unwrap();
    let runtime = Arc::new(
        config
            .agent_runtime(&EnvSource::Fixed(Arc::new(vars)))
            .unwrap(),
    );
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start(Setup {
        toml: Some(&toml),
        path: "bench.toml",
        env: &env,
        context: Some(runtime),
        ..Setup::default()
    })
    .await;
    let http = reqwest::Client::new();
    let url = server.url("/api/calls");
    let period = Duration::from_secs_f64(1.0 / f64::from(args.rate));
    let mut ticker = tokio::time::interval(period);
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let mut requests = Vec::new();
    for n in 0..args.calls {
        ticker.tick().await;
        let to = format!("+1555{n:07}");
        sent.insert(to.clone(), Instant::now());
        let http = http.clone();
        let url = url.clone();
        requests.push(tokio::spawn(async move {
            let response = http
                .post(&url)
                .json(&serde_json::json!({ "to": to }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 202);
        }));
    }
    for request in requests {
        request.await.unwrap();
    }
    let creates = twilio
        .wait_creates(args.calls, Duration::from_secs(60))
        .await;
    let mut overheads: Vec<Duration> = creates
        .iter()
        .map(|c| c.at.duration_since(sent[c.field("To").unwrap()]))
        .collect();
    overheads.sort();
    (
        percentile(&overheads, 0.5),
        percentile(&overheads, 0.99),
        *overheads.last().unwrap(),
    )
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut p99s = Vec::new();
    for i in 0..args.runs {
        let (p50, p99, max) = runtime.block_on(run(&args));
        println!(
            "run {}: {} calls at {}/s: dial overhead p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            i + 1,
            args.calls,
            args.rate,
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
        p99s.push(p99);
    }
    p99s.sort();
    println!(
        "median p99 of {} runs: {:.2} ms",
        args.runs,
        p99s[p99s.len() / 2].as_secs_f64() * 1e3
    );
}
