//! A campaign's rate at its extremes, in both stores: a slot interval far
//! beyond any accepted rate neither overflows the shared next slot (the
//! embedded store panicked in debug builds) nor corrupts it (Redis's Lua
//! formatted a double past 2^63 with `%d`), and the slot stays ahead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::support::redis_server::RedisServer;
use voxpipe::store::time::unix_ms;
use voxpipe::store::{
    CampaignEntry, LeaseRequest, MemoryStore, NewCampaign, RedisStore, Store, StoreSettings,
};

async fn huge_interval_holds_the_next_slot(store: Arc<dyn Store>) {
    let now = unix_ms();
    let entries = (0..3)
        .map(|i| CampaignEntry {
            to: format!("+1555000000{i}"),
            parameters: BTreeMap::new(),
        })
        .collect();
    store
        .create_campaign(&NewCampaign {
            id: "slow".into(),
            settings: "{}".into(),
            entries,
            rejected: 0,
            created_ms: now,
        })
        .await
        .unwrap();
    let lease = |now_ms| LeaseRequest {
        now_ms,
        max: 10,
        lease_ms: 1_000,
        max_concurrent: 10,
        interval_us: u64::MAX,
        horizon_ms: 1_000,
    };
    let first = store.lease_entries("slow", &lease(now)).await.unwrap();
    assert_eq!(first.len(), 1, "one slot within the horizon");
    assert!(
        store
            .lease_entries("slow", &lease(now))
            .await
            .unwrap()
            .is_empty(),
        "the next slot is ahead"
    );
    // Stored intervals are capped at one call per 100 s.
    let later = store
        .lease_entries("slow", &lease(now + 101_000))
        .await
        .unwrap();
    assert_eq!(later.len(), 1, "the next slot, 100 s on");
}

#[tokio::test]
async fn a_huge_slot_interval_in_the_embedded_store() {
    huge_interval_holds_the_next_slot(Arc::new(MemoryStore::new(StoreSettings::default()))).await;
}

#[tokio::test]
async fn a_huge_slot_interval_in_redis() {
    let server = RedisServer::start();
    let store: Arc<dyn Store> = Arc::new(
        RedisStore::connect(&server.url(), "REDIS_URL", StoreSettings::default()).unwrap(),
    );
    huge_interval_holds_the_next_slot(store).await;
}
