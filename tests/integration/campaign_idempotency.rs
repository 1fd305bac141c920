//! A campaign is written once per id, in both stores: a request retried
//! with its `Idempotency-Key` makes no second campaign, a key used for
//! another campaign is refused, and a campaign stored but never listed for
//! the runners (the store failed in between) is listed by the retry. In
//! Redis, a request that stalls past its claim's takeover (by this release
//! or the one before) writes nothing, and an ended campaign is not left
//! listed (a runner unlists one whose unlisting failed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::support::holding_proxy::HoldingProxy;
use crate::support::redis_server::RedisServer;
use voxpipe::outbound::campaign::{CampaignRunner, CampaignStats, RunnerOptions};
use voxpipe::outbound::{CallRequest, DialError, Dialer, PlacedCall};
use voxpipe::store::time::unix_ms;
use voxpipe::store::{
    CAMPAIGN_CLAIM_MS, CampaignCommand, CampaignEntry, CampaignState, CampaignStore, CampaignWrite,
    MemoryStore, NewCampaign, RedisStore, Store, StoreSettings,
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

/// Settings for a store whose command a test holds at a proxy: a long
/// `op_timeout`, so the store waits for its held command however long the
/// test takes to release it (the default 2 s would fail it on the clock).
fn held_settings() -> StoreSettings {
    StoreSettings {
        op_timeout: Duration::from_secs(60),
        ..StoreSettings::default()
    }
}

/// Dates campaign `id`'s claim at `ms` (Redis's clock dates claims, so a
/// test moves them rather than waiting out the takeover).
async fn set_claimed_ms(redis: &mut impl redis::aio::ConnectionLike, id: &str, ms: u64) {
    let _: i64 = redis::cmd("HSET")
        .arg(StoreSettings::default().keys.campaign(id, None))
        .arg("claimed_ms")
        .arg(ms)
        .query_async(redis)
        .await
        .unwrap();
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

/// In Redis the id is claimed first and the campaign written after, by
/// the claim's owner only: a claim not yet written keeps
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

/// A request that stalls between its claim and its write past the claim's
/// age has its claim taken over by a retry; when it goes on, it writes
/// nothing: the retry's campaign alone is stored, and an entry the retry's
/// campaign leased is not made due again (dialled twice).
#[tokio::test]
async fn a_write_whose_claim_was_taken_over_writes_nothing() {
    let server = RedisServer::start();
    // The first request's store reaches Redis through a proxy that holds
    // its write (the first command carrying a number).
    let proxy = HoldingProxy::start(server.addr(), b"+15550000001").await;
    let stalled =
        Arc::new(RedisStore::connect(&proxy.redis_url(), "REDIS_URL", held_settings()).unwrap());
    let store = RedisStore::connect(&server.url(), "REDIS_URL", StoreSettings::default()).unwrap();
    let mut redis = server.client().await;
    let first = campaign("c3", &["+15550000001", "+15550000002"]);
    let first_write = tokio::spawn({
        let (stalled, first) = (stalled.clone(), first.clone());
        async move { stalled.create_campaign(&first).await }
    });
    proxy.held().await;
    // The claim ages past its takeover (Redis's clock dates it, so the
    // test moves the claim back rather than waiting 30 s).
    set_claimed_ms(&mut redis, "c3", unix_ms() - CAMPAIGN_CLAIM_MS - 1).await;
    let mut retry = first.clone();
    retry.created_ms += CAMPAIGN_CLAIM_MS + 1_000;
    assert_eq!(
        store.create_campaign(&retry).await.unwrap(),
        CampaignWrite::Created
    );
    let lease = voxpipe::store::LeaseRequest {
        now_ms: unix_ms() + CAMPAIGN_CLAIM_MS + 2_000,
        max: 1,
        lease_ms: 60_000,
        max_concurrent: 5,
        interval_us: 1_000,
        horizon_ms: 1_000,
    };
    assert_eq!(store.lease_entries("c3", &lease).await.unwrap().len(), 1);

    proxy.release();
    assert_eq!(
        first_write.await.unwrap().unwrap(),
        CampaignWrite::Existing,
        "the stalled request is answered with the retry's campaign"
    );
    let progress = store.campaign("c3").await.unwrap().unwrap();
    assert_eq!(
        (progress.total, progress.pending, progress.active),
        (2, 1, 1),
        "the leased entry is not due again"
    );
    assert_eq!(progress.created_ms, retry.created_ms);
    assert_eq!(store.active_campaigns().await.unwrap(), ["c3"]);
}

/// A retry finds its campaign running and lists it; the campaign ends
/// before the listing lands: it is not left listed.
#[tokio::test]
async fn a_retry_does_not_list_a_campaign_that_ended_meanwhile() {
    let server = RedisServer::start();
    let keys = StoreSettings::default().keys;
    let store = RedisStore::connect(&server.url(), "REDIS_URL", StoreSettings::default()).unwrap();
    let written = campaign("c4", &["+15550000001"]);
    assert_eq!(
        store.create_campaign(&written).await.unwrap(),
        CampaignWrite::Created
    );
    // Its listing failed.
    let mut redis = server.client().await;
    let _: i64 = redis::cmd("ZREM")
        .arg(keys.active_campaigns())
        .arg("c4")
        .query_async(&mut redis)
        .await
        .unwrap();
    // The retry's store holds its listing at a proxy.
    let proxy = HoldingProxy::start(server.addr(), keys.active_campaigns().as_bytes()).await;
    let retrying =
        Arc::new(RedisStore::connect(&proxy.redis_url(), "REDIS_URL", held_settings()).unwrap());
    let retry = tokio::spawn({
        let retrying = retrying.clone();
        async move { retrying.create_campaign(&written).await }
    });
    proxy.held().await;
    store
        .command_campaign("c4", voxpipe::store::CampaignCommand::Cancel)
        .await
        .unwrap();
    proxy.release();
    assert_eq!(retry.await.unwrap().unwrap(), CampaignWrite::Existing);
    assert!(store.active_campaigns().await.unwrap().is_empty());
}

/// Both requests stall at their write, the first past the claim's age:
/// the first, whose claim the retry took over, writes nothing and is told
/// the campaign is still being stored; the retry writes it.
#[tokio::test]
async fn a_write_whose_claim_was_taken_over_before_the_retry_wrote_is_in_progress() {
    let server = RedisServer::start();
    let connect =
        |url: String| Arc::new(RedisStore::connect(&url, "REDIS_URL", held_settings()).unwrap());
    let first_proxy = HoldingProxy::start(server.addr(), b"+15550000001").await;
    let retry_proxy = HoldingProxy::start(server.addr(), b"+15550000001").await;
    let (first_store, retry_store) = (
        connect(first_proxy.redis_url()),
        connect(retry_proxy.redis_url()),
    );
    let mut redis = server.client().await;
    let first = campaign("c5", &["+15550000001"]);
    let first_write = tokio::spawn({
        let first = first.clone();
        async move { first_store.create_campaign(&first).await }
    });
    first_proxy.held().await;
    set_claimed_ms(&mut redis, "c5", unix_ms() - CAMPAIGN_CLAIM_MS - 1).await;
    let mut retry = first.clone();
    retry.created_ms += CAMPAIGN_CLAIM_MS + 1_000;
    let retry_write = tokio::spawn({
        let retry = retry.clone();
        async move { retry_store.create_campaign(&retry).await }
    });
    retry_proxy.held().await;

    first_proxy.release();
    assert_eq!(
        first_write.await.unwrap().unwrap(),
        CampaignWrite::InProgress
    );
    let store = connect(server.url());
    assert!(store.campaign("c5").await.unwrap().is_none());
    retry_proxy.release();
    assert_eq!(retry_write.await.unwrap().unwrap(), CampaignWrite::Created);
    let progress = store.campaign("c5").await.unwrap().unwrap();
    assert_eq!((progress.total, progress.pending), (1, 1));
    assert_eq!(progress.created_ms, retry.created_ms);
}

/// During a rolling deploy a server of the release before owners takes
/// the claim over: its claim rewrites `claimed_ms` and leaves the owner.
/// The stalled request sees the takeover by the changed `claimed_ms` and
/// writes nothing.
#[tokio::test]
async fn a_takeover_by_the_release_before_owners_is_seen() {
    let server = RedisServer::start();
    let keys = StoreSettings::default().keys;
    let proxy = HoldingProxy::start(server.addr(), b"+15550000001").await;
    let stalled = RedisStore::connect(&proxy.redis_url(), "REDIS_URL", held_settings()).unwrap();
    let mut redis = server.client().await;
    let first = campaign("c6", &["+15550000001"]);
    let first_write = tokio::spawn({
        let first = first.clone();
        async move { stalled.create_campaign(&first).await }
    });
    proxy.held().await;
    // The old release's takeover: `claimed_ms` set anew, the owner kept.
    let claimed: Option<u64> = redis::cmd("HGET")
        .arg(keys.campaign("c6", None))
        .arg("claimed_ms")
        .query_async(&mut redis)
        .await
        .unwrap();
    set_claimed_ms(&mut redis, "c6", claimed.unwrap() + CAMPAIGN_CLAIM_MS + 1).await;
    proxy.release();
    assert_eq!(
        first_write.await.unwrap().unwrap(),
        CampaignWrite::InProgress
    );
    let store = RedisStore::connect(&server.url(), "REDIS_URL", StoreSettings::default()).unwrap();
    assert!(store.campaign("c6").await.unwrap().is_none());
}

/// Rounds of a runner, told as they end.
struct Rounds(tokio::sync::mpsc::UnboundedSender<()>);

impl CampaignStats for Rounds {
    fn dialled(&self, _result: &'static str, _seconds: f64) {}
    fn entries(&self, _pending: u64, _active: u64, _done: u64) {
        let _ = self.0.send(());
    }
}

/// Never called: the campaigns of the test below do not dial.
struct NoDialer;

#[async_trait::async_trait]
impl Dialer for NoDialer {
    async fn dial(&self, _call_id: &str, _request: &CallRequest) -> Result<PlacedCall, DialError> {
        panic!("nothing is dialled");
    }
}

/// A campaign that ended but whose unlisting failed stays listed; a runner
/// unlists it, and leaves a paused one listed.
#[tokio::test]
async fn a_runner_unlists_a_campaign_left_listed_after_it_ended() {
    let server = RedisServer::start();
    let keys = StoreSettings::default().keys;
    let store: Arc<dyn Store> = Arc::new(
        RedisStore::connect(&server.url(), "REDIS_URL", StoreSettings::default()).unwrap(),
    );
    let mut redis = server.client().await;
    for id in ["ended", "paused"] {
        let new = campaign(id, &["+15550000001"]);
        assert_eq!(
            store.create_campaign(&new).await.unwrap(),
            CampaignWrite::Created
        );
    }
    store
        .command_campaign("paused", CampaignCommand::Pause)
        .await
        .unwrap();
    store
        .command_campaign("ended", CampaignCommand::Cancel)
        .await
        .unwrap();
    // Its unlisting failed.
    let _: i64 = redis::cmd("ZADD")
        .arg(keys.active_campaigns())
        .arg(0)
        .arg("ended")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(store.active_campaigns().await.unwrap(), ["ended", "paused"]);
    let (rounds, mut ended) = tokio::sync::mpsc::unbounded_channel();
    let runner = CampaignRunner::new(
        Arc::clone(&store),
        Arc::new(NoDialer),
        RunnerOptions::default(),
    )
    .with_stats(Arc::new(Rounds(rounds)));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        runner
            .run(async {
                let _ = stopped.await;
            })
            .await;
    });
    tokio::time::timeout(Duration::from_secs(10), ended.recv())
        .await
        .expect("a round within 10 s")
        .unwrap();
    assert_eq!(store.active_campaigns().await.unwrap(), ["paused"]);
    let _ = stop.send(());
    running.await.unwrap();
}

/// `unlist_ended_campaign` leaves running and paused campaigns listed, and
/// one canceled with a call still live; the last call's end unlists it.
async fn only_ended_campaigns_without_calls_are_unlisted(store: Arc<dyn Store>) {
    for id in ["running", "paused", "live"] {
        let new = campaign(id, &["+15550000001", "+15550000002"]);
        store.create_campaign(&new).await.unwrap();
    }
    store
        .command_campaign("paused", CampaignCommand::Pause)
        .await
        .unwrap();
    let lease = voxpipe::store::LeaseRequest {
        now_ms: unix_ms(),
        max: 1,
        lease_ms: 60_000,
        max_concurrent: 5,
        interval_us: 1_000,
        horizon_ms: 1_000,
    };
    let leased = store.lease_entries("live", &lease).await.unwrap();
    store
        .command_campaign("live", CampaignCommand::Cancel)
        .await
        .unwrap();
    for id in ["running", "paused", "live"] {
        store.unlist_ended_campaign(id).await.unwrap();
    }
    assert_eq!(listed(&store).await, ["live", "paused", "running"]);
    let outcome = voxpipe::store::EntryOutcome::Done(voxpipe::store::CallStatus::Completed);
    let entry = &leased[0];
    store
        .finish_entry("live", entry.entry, entry.attempt, outcome)
        .await
        .unwrap();
    store.unlist_ended_campaign("live").await.unwrap();
    assert_eq!(listed(&store).await, ["paused", "running"]);
}

/// The listed campaigns, by name.
async fn listed(store: &Arc<dyn Store>) -> Vec<String> {
    let mut ids = store.active_campaigns().await.unwrap();
    ids.sort();
    ids
}

#[tokio::test]
async fn only_ended_campaigns_without_calls_are_unlisted_in_both_stores() {
    only_ended_campaigns_without_calls_are_unlisted(Arc::new(MemoryStore::new(
        StoreSettings::default(),
    )))
    .await;
    let server = RedisServer::start();
    only_ended_campaigns_without_calls_are_unlisted(Arc::new(
        RedisStore::connect(&server.url(), "REDIS_URL", StoreSettings::default()).unwrap(),
    ))
    .await;
}
