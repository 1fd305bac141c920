//! A campaign is written once per id, in both stores: a request retried
//! with its `Idempotency-Key` makes no second campaign, a key used for
//! another campaign is refused, and a campaign stored but never listed for
//! the runners (the store failed in between) is listed by the retry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::support::redis_server::RedisServer;
use voxpipe::store::time::unix_ms;
use voxpipe::store::{
    CAMPAIGN_CLAIM_MS, CampaignEntry, CampaignState, CampaignWrite, MemoryStore, NewCampaign,
    RedisStore, Store, StoreSettings,
};

fn campaign(id: &str, numbers: &[&str]) -> NewCampaign {
    NewCampaign {
        id: id.into(),
        settings: r#"{"calls_per_second":1.0}"#.into(),
        entries: numbers
            .iter()
            .map(|to| CampaignEntry {
                to: (*to).to_owned(),
                parameters: BTreeMap::new(),
            })
            .collect(),
        rejected: 0,
        created_ms: unix_ms(),
    }
}

async fn written_once(store: Arc<dyn Store>) {
    let first = campaign("c1", &["+15550000001", "+15550000002"]);
    assert_eq!(
        store.create_campaign(&first).await.unwrap(),
        CampaignWrite::Created
    );
    // One entry leased: a second write would make it due again.
    let lease = voxpipe::store::LeaseRequest {
        now_ms: unix_ms(),
        max: 1,
        lease_ms: 60_000,
        max_concurrent: 5,
        interval_us: 1_000,
        horizon_ms: 1_000,
    };
    assert_eq!(store.lease_entries("c1", &lease).await.unwrap().len(), 1);
    // The retry plans the same campaign a moment later.
    let mut retry = first.clone();
    retry.created_ms += 1_500;
    assert_eq!(
        store.create_campaign(&retry).await.unwrap(),
        CampaignWrite::Existing
    );
    let progress = store.campaign("c1").await.unwrap().unwrap();
    assert_eq!(
        (progress.total, progress.pending, progress.active),
        (2, 1, 1)
    );
    assert_eq!(progress.created_ms, first.created_ms);
    // The same id for other numbers, other settings, or more refused rows.
    let mut others = vec![campaign("c1", &["+15550000001", "+15550000003"])];
    let mut settings = first.clone();
    settings.settings = r#"{"calls_per_second":2.0}"#.into();
    let mut rejected = first.clone();
    rejected.rejected = 1;
    others.extend([settings, rejected]);
    for other in &others {
        assert_eq!(
            store.create_campaign(other).await.unwrap(),
            CampaignWrite::Conflict
        );
    }
    assert_eq!(store.campaign("c1").await.unwrap().unwrap(), progress);
    assert_eq!(store.active_campaigns().await.unwrap(), ["c1"]);
}

#[tokio::test]
async fn a_campaign_is_written_once_in_the_embedded_store() {
    written_once(Arc::new(MemoryStore::new(StoreSettings::default()))).await;
}

#[tokio::test]
async fn a_campaign_is_written_once_in_redis() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url(), "REDIS_URL", StoreSettings::default()).unwrap();
    written_once(Arc::new(store)).await;
}

/// In Redis the id is claimed first and the campaign written after (its
/// entries are too many for one script): a claim not yet written keeps
/// other requests for it waiting, and a claim whose request failed is
/// taken over once old; a campaign written but not listed is listed.
#[tokio::test]
async fn redis_claims_take_over_failed_writes_and_list_unlisted_campaigns() {
    let server = RedisServer::start();
    let keys = StoreSettings::default().keys;
    let store: Arc<dyn Store> = Arc::new(
        RedisStore::connect(&server.url(), "REDIS_URL", StoreSettings::default()).unwrap(),
    );
    let mut redis = server.client().await;
    let pending = campaign("c2", &["+15550000001"]);
    let claim = |claimed_ms: u64| {
        redis::cmd("HSET")
            .arg(keys.campaign("c2", None))
            .arg("fingerprint")
            .arg(pending.fingerprint())
            .arg("claimed_ms")
            .arg(claimed_ms)
            .clone()
    };
    // Another request claimed it a moment ago and is writing it.
    let _: i64 = claim(unix_ms()).query_async(&mut redis).await.unwrap();
    assert_eq!(
        store.create_campaign(&pending).await.unwrap(),
        CampaignWrite::InProgress
    );
    assert!(store.campaign("c2").await.unwrap().is_none());
    // That request failed long ago: the retry writes it.
    let _: i64 = claim(unix_ms() - CAMPAIGN_CLAIM_MS - 1)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(
        store.create_campaign(&pending).await.unwrap(),
        CampaignWrite::Created
    );
    let written = store.campaign("c2").await.unwrap().unwrap();
    assert_eq!(
        (written.state, written.pending),
        (CampaignState::Running, 1)
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg(keys.campaign("c2", None))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(ttl, -1, "a written campaign keeps no claim's expiry");

    // Written, but the listing failed: the retry lists it.
    let _: i64 = redis::cmd("ZREM")
        .arg(keys.active_campaigns())
        .arg("c2")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(store.active_campaigns().await.unwrap().is_empty());
    assert_eq!(
        store.create_campaign(&pending).await.unwrap(),
        CampaignWrite::Existing
    );
    assert_eq!(store.active_campaigns().await.unwrap(), ["c2"]);
    // A campaign that has ended is not listed again.
    store
        .command_campaign("c2", voxpipe::store::CampaignCommand::Cancel)
        .await
        .unwrap();
    let _: i64 = redis::cmd("ZREM")
        .arg(keys.active_campaigns())
        .arg("c2")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(
        store.create_campaign(&pending).await.unwrap(),
        CampaignWrite::Existing
    );
    assert!(store.active_campaigns().await.unwrap().is_empty());
}
