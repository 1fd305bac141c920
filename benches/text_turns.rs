//! Text turn overhead and idle conversation memory.
//!
//! Run with: `cargo bench --bench text_turns -- --messages 300 --conversations 1000 --runs 3`
//!
//! 1. **Turn overhead**: WhatsApp messages posted to `POST /twilio/messaging`
//!    (signed, as the fake Twilio posts them) of a server whose model is the
//!    fake OpenAI server answering at once, conversations kept in a real
//!    Redis (`redis-server` must be installed). For each message: `in`, from
//!    the webhook leaving the client to the model's request arriving at the
//!    fake (signature check, dedup, conversation lookup, history read,
//!    pipeline built); `out`, from that request to the TwiML answer back at
//!    the client (the fake's streamed answer, the pipeline draining, the
//!    TwiML). Both include loopback HTTP both ways, so they bound voxpipe's
//!    own share from above.
//! 2. **Idle memory**: `--conversations` conversations, one message each,
//!    then at rest: the process's resident memory grown per conversation,
//!    what voxpipe keeps in memory for them after a sweep (entries), and
//!    the Redis memory per conversation (`INFO memory`, the store record).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use support::fake::openai::{FakeOpenAi, Reply, text_answer};
use support::fake::twilio_rest::FakeTwilioRest;
use support::redis_server::RedisServer;
use support::server::{Setup, TestServer};
use support::text::{AUTH_TOKEN, MESSAGING_URL, config, env, pipeline_toml, runtime};
use voxpipe::text::{Channel, ConversationKey, Inbound, TextConversations};

#[derive(Debug, Parser)]
struct Args {
    /// Messages per run (turn overhead).
    #[arg(long, default_value_t = 300)]
    messages: usize,
    /// Conversations (idle memory).
    #[arg(long, default_value_t = 1000)]
    conversations: usize,
    /// Runs.
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

async fn redis_used_memory(redis: &RedisServer) -> u64 {
    let mut conn = redis.client().await;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// (in p50, in p99, out p50, out p99)
async fn overhead(args: &Args) -> [Duration; 4] {
    let redis = RedisServer::start();
    let openai = FakeOpenAi::start().await;
    openai.chat_fallback(Reply::Sse(text_answer("Fine, thanks.")));
    let twilio = FakeTwilioRest::start(AUTH_TOKEN).await;
    let toml = pipeline_toml(&openai, &twilio.base_url, "");
    let env = env(&redis.url());
    let context = runtime(&config(&toml), &env);
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start(Setup {
        toml: Some(&toml),
        path: "text.toml",
        env: &env_refs,
        context: Some(context),
        ..Setup::default()
    })
    .await;
    twilio.deliver_to(server.addr);
    let mut ins = Vec::with_capacity(args.messages);
    let mut outs = Vec::with_capacity(args.messages);
    for i in 0..args.messages {
        let from = format!("whatsapp:+1555{:07}", i % 50);
        let sid = format!("SM{i:032x}");
        let sent = tokio::time::Instant::now();
        let (status, twiml) = twilio
            .message(
                MESSAGING_URL,
                &sid,
                (&from, "whatsapp:+15550000000"),
                "How are you?",
                0,
            )
            .await;
        let answered = tokio::time::Instant::now();
        assert_eq!(status, 200);
        assert!(twiml.contains("Fine, thanks."), "{twiml}");
        let asked = openai.received("/v1/chat/completions").pop().unwrap().at;
        ins.push(asked - sent);
        outs.push(answered - asked);
    }
    server.shutdown(Duration::from_secs(30)).await.unwrap();
    ins.sort();
    outs.sort();
    [
        percentile(&ins, 0.5),
        percentile(&ins, 0.99),
        percentile(&outs, 0.5),
        percentile(&outs, 0.99),
    ]
}

/// (resident bytes per conversation, entries at rest, Redis bytes per
/// conversation)
async fn idle_memory(args: &Args) -> (f64, usize, f64) {
    let redis = RedisServer::start();
    let openai = FakeOpenAi::start().await;
    openai.chat_fallback(Reply::Sse(text_answer("Noted, thank you.")));
    let toml = pipeline_toml(&openai, "http://127.0.0.1:9", "");
    let config = config(&toml);
    let agent = runtime(&config, &env(&redis.url()));
    let conversations = Arc::new(
        TextConversations::new(
            &config.processors,
            config.session_setup("bench"),
            Arc::clone(&agent),
            config.text.clone(),
        )
        .unwrap(),
    );
    // One conversation first, so one-off allocations are not counted.
    let warm = ConversationKey::new(Channel::Chat, &["warm-up"]);
    let message = |key: ConversationKey| Inbound {
        key,
        text: "Please note my order.".into(),
        media: 0,
        parameters: Default::default(),
    };
    conversations.message(message(warm), None).await.unwrap();
    let redis_before = redis_used_memory(&redis).await;
    let rss_before = rss_bytes();
    for i in 0..args.conversations {
        let key = ConversationKey::new(Channel::Chat, &[&format!("idle-{i}")]);
        conversations.message(message(key), None).await.unwrap();
    }
    // At rest: the idle sweep (nothing idle yet) drops finished entries.
    conversations
        .sweep(voxpipe::store::time::unix_ms())
        .await
        .unwrap();
    let rss_after = rss_bytes();
    let redis_after = redis_used_memory(&redis).await;
    let n = args.conversations as f64;
    (
        rss_after.saturating_sub(rss_before) as f64 / n,
        conversations.in_memory(),
        redis_after.saturating_sub(redis_before) as f64 / n,
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut overheads = Vec::new();
    let mut memories = Vec::new();
    for run in 1..=args.runs {
        let started = Instant::now();
        let [in50, in99, out50, out99] = runtime.block_on(overhead(&args));
        println!(
            "run {run}: {} messages: in p50 {:.2} ms p99 {:.2} ms; out p50 {:.2} ms p99 {:.2} ms ({:.1} s)",
            args.messages,
            ms(in50),
            ms(in99),
            ms(out50),
            ms(out99),
            started.elapsed().as_secs_f64()
        );
        overheads.push([ms(in50), ms(in99), ms(out50), ms(out99)]);
        let (rss, entries, redis) = runtime.block_on(idle_memory(&args));
        println!(
            "run {run}: {} idle conversations: process +{:.0} B each, {entries} entries in memory, Redis {:.0} B each",
            args.conversations, rss, redis
        );
        memories.push([rss, entries as f64, redis]);
    }
    let column = |rows: &[[f64; 4]], i: usize| median(rows.iter().map(|r| r[i]).collect());
    let mcolumn = |rows: &[[f64; 3]], i: usize| median(rows.iter().map(|r| r[i]).collect());
    println!(
        "median of {}: in p50 {:.2} ms p99 {:.2} ms; out p50 {:.2} ms p99 {:.2} ms; \
         idle: process +{:.0} B, {} entries, Redis {:.0} B per conversation",
        args.runs,
        column(&overheads, 0),
        column(&overheads, 1),
        column(&overheads, 2),
        column(&overheads, 3),
        mcolumn(&memories, 0),
        mcolumn(&memories, 1),
        mcolumn(&memories, 2),
    );
}
