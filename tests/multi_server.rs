//! Many servers, many workers, one Redis Cluster, as an operator deploys
//! them: two `voxpipe serve` processes and two `voxpipe worker`s (the
//! binary, spawned) on a three-master cluster started by the test, Twilio
//! calls spread over both servers against fake providers. Every call's
//! turns are written once and in order, every evaluation and webhook is
//! done once, WebRTC session ids name the server that holds them, and a
//! server killed mid-call leaves its spoken turns in the store and its
//! queued work to the survivors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use support::fake::openai::{FakeOpenAi, Reply, text_answer, verdict};
use support::fake::twilio_media::{CallConfig, FakeCall};
use support::fake::webhook_receiver::WebhookReceiver;
use support::mulaw::{silence, speech};
use support::redis_cluster::RedisCluster;
use support::wait::eventually;
use voxpipe::conversation::Role;
use voxpipe::store::{CallRecord, CallStatus, Keys, RedisStore, Store, StoreSettings};

const WAIT: Duration = Duration::from_secs(60);

const AGENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/agent.toml");

/// The judge's model: its chat answers are verdicts, the agent's are words.
const JUDGE: &str = "judge-model";

/// `pipelines/agent.toml` on the cluster, its providers the fakes, with an
/// evaluator and a webhook.
fn pipeline(dir: &Path, openai: &str, webhook: &str) -> PathBuf {
    let mut table: toml::Table = std::fs::read_to_string(AGENT).unwrap().parse().unwrap();
    for processor in table["processor"].as_array_mut().unwrap() {
        let processor = processor.as_table_mut().unwrap();
        // Earshot: Silero unoptimised (a test build) cannot keep up with
        // several calls on a loaded two-core machine.
        if processor["type"].as_str() == Some("vad") {
            processor.insert("engine".into(), "earshot".into());
            // The fake transcribes each utterance as one "Hello.": the
            // agent's short stop (0.2 s) would split the caller's sample
            // at its pause into two.
            processor.insert("stop_secs".into(), 0.8.into());
        }
        if processor.contains_key("base_url") {
            processor.insert("base_url".into(), openai.into());
            // Generous on a loaded CI machine: a slow answer is no failure.
            let connection: toml::Table = "response_timeout_secs = 60".parse().unwrap();
            processor.insert("connection".into(), connection.into());
        }
    }
    let extra: toml::Table = format!(
        "[context]\nstore = \"redis\"\nurl_env = \"TEST_REDIS\"\ncluster = true\n\
         op_timeout_ms = 10000\ncountry = \"US\"\nindustry = \"retail\"\n\
         [evaluator]\nenabled = true\nbase_url = \"{openai}\"\nmodel = \"{JUDGE}\"\n\
         api_key_env = \"OPENAI_API_KEY\"\n\
         [webhook]\nurl = \"{webhook}\"\nsecret_env = \"HOOK_SECRET\"\n\
         [server]\nsession_key_env = \"SESSION_KEY\"\nidle_timeout_secs = 600\n"
    )
    .parse()
    .unwrap();
    table.remove("optimiser");
    table.extend(extra);
    let path = dir.join("agent.toml");
    std::fs::write(&path, toml::to_string(&table).unwrap()).unwrap();
    path
}

/// A spawned `voxpipe` process, killed on drop.
struct Process {
    child: Child,
    addr: Option<SocketAddr>,
}

impl Process {
    fn spawn(args: &[&str], cluster: &RedisCluster) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_voxpipe"))
            .arg("--log-format")
            .arg("json")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("TEST_REDIS", cluster.urls())
            .env("OPENAI_API_KEY", "sk-test")
            .env("HOOK_SECRET", "s3cret")
            .env("SESSION_KEY", "one key for every server")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("voxpipe starts");
        let stderr = child.stderr.take().unwrap();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        // Reads the log to its end (a full pipe would stall the process);
        // the first "listening on" line gives the address.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                let json: Value = serde_json::from_str(&line).unwrap_or_default();
                // Shown with the test's output when it fails.
                if std::env::var_os("SHOW_ALL").is_some()
                    || matches!(json["level"].as_str(), Some("WARN" | "ERROR"))
                {
                    eprintln!("{line}");
                }
                if json["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("listening on "))
                {
                    let _ = addr_tx.send(json["addr"].as_str().unwrap().parse().unwrap());
                }
            }
        });
        let serving = args.first() == Some(&"serve");
        let addr = serving.then(|| addr_rx.recv_timeout(WAIT).expect("the server listens"));
        Process { child, addr }
    }

    fn addr(&self) -> SocketAddr {
        self.addr.unwrap()
    }

    /// SIGKILL: the process dies as a crashed machine's would.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn server(file: &Path, id: &str, cluster: &RedisCluster) -> Process {
    let file = file.to_str().unwrap();
    let id = format!("server.server_id={id}");
    Process::spawn(
        &["serve", file, "--bind", "127.0.0.1:0", "--set", &id],
        cluster,
    )
}

fn worker(file: &Path, cluster: &RedisCluster) -> Process {
    Process::spawn(&["worker", "-p", file.to_str().unwrap()], cluster)
}

/// The stored call of caller `n` (its Twilio `From`).
async fn call_of_caller(store: &dyn Store, n: u32) -> Option<CallRecord> {
    let from = format!("+1555{n:07}");
    store
        .calls_between(0, u64::MAX, 1000)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.custom_parameters.get("From") == Some(&from))
}

/// A caller says something and waits for the answer to be spoken.
async fn exchange(call: &FakeCall) {
    let heard = call.record().heard.len();
    call.say([speech(1_400, 2_600), silence(1_200)].concat());
    // The answer: half a second of the fake's tone at least.
    call.wait_until(WAIT, |r| r.heard.len() >= heard + 4_000)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_and_two_workers_share_one_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let openai = FakeOpenAi::start().await;
    openai.chat_fallback(Reply::Sse(text_answer("Sure, I can help.")));
    openai.chat_fallback_for(JUDGE, verdict("success", 0.9, &["Listen first"]));
    let hooks = WebhookReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(dir.path(), &openai.base_url, &hooks.url());
    let store: Arc<dyn Store> = Arc::new(
        RedisStore::connect_cluster(
            &cluster.urls(),
            "TEST_REDIS",
            StoreSettings {
                keys: Keys::default(),
                ..StoreSettings::default()
            },
        )
        .unwrap(),
    );

    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let s1 = server(&file, "s1", &cluster);
    let mut s2 = server(&file, "s2", &cluster);
    let _w1 = worker(&file, &cluster);
    let _w2 = worker(&file, &cluster);

    // Each server reaches the store: its readiness says so.
    for server in [&s1, &s2] {
        let health: Value = http
            .get(format!("http://{}/health", server.addr()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(health["checks"]["store"]["ok"], true, "{health}");
    }

    // WebRTC: a session started on a server is named by it, so a proxy
    // sends its offer there (deploy/nginx.conf); the other server does
    // not know it.
    for (server, id) in [(&s1, "s1"), (&s2, "s2")] {
        let started: Value = http
            .post(format!("http://{}/start", server.addr()))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = started["sessionId"].as_str().unwrap();
        assert!(session.starts_with(&format!("{id}-")), "{session}");
        let other = if id == "s1" { &s2 } else { &s1 };
        let pc_id = session.split('.').next().unwrap();
        let status = http
            .patch(format!(
                "http://{}/sessions/{session}/api/offer",
                other.addr()
            ))
            .json(&serde_json::json!({"pc_id": pc_id, "candidates": []}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 404, "another server does not hold the session");
    }

    // Redis commands from here to the end, for README "Scaling out".
    cluster.reset_stats();
    let began = std::time::Instant::now();

    // Four calls, two on each server (callers 1 and 3 on s1, 2 and 4 on
    // s2), one exchange each.
    let mut calls = Vec::new();
    for n in 1..=4 {
        let server = if n % 2 == 1 { &s1 } else { &s2 };
        calls.push(FakeCall::connect(server.addr(), CallConfig::new(n)).await);
    }
    for call in &calls {
        exchange(call).await;
    }
    // Caller 4 says one more thing and hears the answer; then s2 dies in
    // the middle of its two calls.
    exchange(&calls[3]).await;
    let mut cut_off = Vec::new();
    for (n, spoken) in [(2, 2), (4, 4)] {
        let id = call_of_caller(&*store, n).await.unwrap().call_id;
        assert!(
            eventually(WAIT, async || store.turns(&id).await.unwrap().len()
                >= spoken)
            .await,
            "the turns of caller {n} are written as they happen"
        );
        cut_off.push((id, spoken));
    }
    s2.kill();
    // The calls on s1 go on and end.
    for call in [&calls[0], &calls[2]] {
        exchange(call).await;
        call.stop();
    }

    // Every completed call: turns once, in order; evaluated once; one
    // webhook each.
    let mut completed = BTreeMap::new();
    for n in [1, 3] {
        assert!(
            eventually(WAIT, async || {
                call_of_caller(&*store, n)
                    .await
                    .is_some_and(|c| c.status == CallStatus::Completed && c.evaluation.is_some())
            })
            .await,
            "call {n} completed and evaluated"
        );
        let call = call_of_caller(&*store, n).await.unwrap();
        let turns = store.turns(&call.call_id).await.unwrap();
        let indices: Vec<u64> = turns.iter().map(|t| t.index).collect();
        assert_eq!(indices, (0..indices.len() as u64).collect::<Vec<_>>());
        assert_eq!(turns.len(), 4, "two exchanges: {turns:?}");
        for pair in turns.chunks(2) {
            assert_eq!(pair[0].role, Role::User, "{turns:?}");
        }
        completed.insert(call.call_id.clone(), call);
    }
    assert!(
        eventually(WAIT, async || hooks.received().len() >= 2).await,
        "a webhook for each completed call"
    );
    // Late duplicates would come from a second worker running the same
    // job: the stream is acknowledged once every job is done.
    assert!(
        eventually(WAIT, async || store.outbox_len().await.unwrap() == 0).await,
        "the outbox drains"
    );
    let mut hooked: Vec<String> = hooks
        .received()
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            body["call_id"].as_str().unwrap().to_owned()
        })
        .collect();
    hooked.sort();
    assert_eq!(
        hooked,
        completed.keys().cloned().collect::<Vec<_>>(),
        "once each"
    );
    let judged = openai
        .received("chat/completions")
        .iter()
        .filter(|r| r.json()["model"] == JUDGE)
        .count();
    assert_eq!(judged, 2, "each completed call judged once");

    let stats = cluster.command_stats();
    let total: u64 = stats.values().sum();
    eprintln!(
        "redis commands for 4 calls (2 completed, evaluated, hooked) in {:.1} s with 2 servers and 2 workers idle-polling: {total} {stats:?}",
        began.elapsed().as_secs_f64()
    );

    // The killed server's calls: cut off, their spoken turns kept, in
    // order, once.
    for (id, spoken) in cut_off {
        let turns = store.turns(&id).await.unwrap();
        let indices: Vec<u64> = turns.iter().map(|t| t.index).collect();
        assert_eq!(indices, (0..spoken as u64).collect::<Vec<_>>(), "{turns:?}");
    }
    assert!(calls[1].closed(WAIT).await.ended);
    assert!(calls[3].closed(WAIT).await.ended);
}
