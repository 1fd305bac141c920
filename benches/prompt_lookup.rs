//! Call setup's prompt lookup (`SessionPrompt::load`: the segment's prompt
//! keys and both tactics lists) on a real redis-server, with the segment
//! key at version 1 and at version 1,000 (its `:history` list beside it
//! holding 1,001 entries), and on the embedded store. The live key stays a
//! plain string, so the history should cost the lookup nothing; the
//! figures go against `[context] prompt_timeout_ms` (default 200 ms).
//!
//! Run with: `cargo bench --bench prompt_lookup`

#![allow(clippy::expect_used)]

use std::sync::Arc;

use criterion::Criterion;
use voxpipe::agent::SessionPrompt;
use voxpipe::agent::optimiser::set_prompt_version;
use voxpipe::store::{MemoryStore, PromptKey, RedisStore, Segment, Store, StoreSettings};

#[path = "../tests/support/mod.rs"]
mod support;
use support::redis_server::RedisServer;

fn segment() -> Segment {
    Segment {
        country: Some("US".into()),
        industry: Some("healthcare".into()),
    }
}

/// Deploys `versions` versions of the segment's prompt.
async fn versions(store: &dyn Store, versions: usize) {
    let key = PromptKey::candidates(&segment()).remove(0);
    for n in 0..versions {
        set_prompt_version(store, &key, &format!("Prompt {n}: sell value, not price."))
            .await
            .expect("a version");
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let short = RedisServer::start();
    let long = RedisServer::start();
    let (short_store, long_store, memory) = rt.block_on(async {
        let connect = |redis: &RedisServer| -> Arc<dyn Store> {
            Arc::new(
                RedisStore::connect(&redis.url(), "REDIS_URL", StoreSettings::default())
                    .expect("a store"),
            )
        };
        let (short_store, long_store) = (connect(&short), connect(&long));
        let memory: Arc<dyn Store> = Arc::new(MemoryStore::new(StoreSettings::default()));
        versions(&*short_store, 1).await;
        versions(&*long_store, 1_000).await;
        versions(&*memory, 1_000).await;
        (short_store, long_store, memory)
    });
    let mut group = criterion.benchmark_group("prompt_lookup");
    for (name, store) in [
        ("redis_history_1", &short_store),
        ("redis_history_1000", &long_store),
        ("embedded_history_1000", &memory),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(SessionPrompt::load(&**store, &segment(), "Tactics:"))
                    .expect("a prompt")
            });
        });
    }
    group.finish();
    criterion.final_summary();
}
