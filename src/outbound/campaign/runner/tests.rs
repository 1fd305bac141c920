//! The worker's dial of one leased entry, against the embedded store.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;

use super::*;
use crate::outbound::PlacedCall;
use crate::store::{CampaignCommand, CampaignEntry, MemoryStore, NewCampaign, StoreSettings};

/// Answers every dial with what `answer` makes, counting them.
struct CountingDialer {
    dials: AtomicU32,
    answer: fn() -> Result<PlacedCall, DialError>,
}

#[async_trait]
impl Dialer for CountingDialer {
    async fn dial(&self, _call_id: &str, _request: &CallRequest) -> Result<PlacedCall, DialError> {
        self.dials.fetch_add(1, Ordering::SeqCst);
        (self.answer)()
    }
}

struct Rig {
    store: Arc<dyn Store>,
    dialer: Arc<CountingDialer>,
    runner: CampaignRunner,
    /// Kept, so that the runner's `stopped` never fires.
    stopping: watch::Sender<bool>,
}

impl Rig {
    fn new(answer: fn() -> Result<PlacedCall, DialError>) -> Rig {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(StoreSettings::default()));
        let dialer = Arc::new(CountingDialer {
            dials: AtomicU32::new(0),
            answer,
        });
        let runner = CampaignRunner::new(
            Arc::clone(&store),
            Arc::clone(&dialer) as Arc<dyn Dialer>,
            RunnerOptions::default(),
        );
        let (stopping, _) = watch::channel(false);
        Rig {
            store,
            dialer,
            runner,
            stopping,
        }
    }

    /// A campaign of `n` numbers, all leased at once with slots 200 ms
    /// apart (the first now).
    async fn leased(&self, id: &str, n: u64) -> Vec<LeasedEntry> {
        let now = unix_ms();
        let settings = serde_json::to_string(&CampaignSettings::default()).unwrap();
        let entries = (0..n)
            .map(|i| CampaignEntry {
                to: format!("+1555000{i:04}"),
                parameters: BTreeMap::new(),
            })
            .collect();
        let campaign = NewCampaign {
            id: id.to_owned(),
            settings,
            entries,
            rejected: 0,
            created_ms: now,
        };
        self.store.create_campaign(&campaign).await.unwrap();
        let request = LeaseRequest {
            now_ms: now,
            max: 100,
            lease_ms: 30_000,
            max_concurrent: 100,
            interval_us: 200_000,
            horizon_ms: 1_000,
        };
        let leased = self.store.lease_entries(id, &request).await.unwrap();
        assert_eq!(leased.len() as u64, n);
        leased
    }

    async fn dial_all(&self, id: &str, leased: Vec<LeasedEntry>) {
        let settings = CampaignSettings::default();
        for entry in leased {
            self.runner
                .dial(id, &settings, entry, self.stopping.subscribe())
                .await;
        }
    }
}

fn placed() -> Result<PlacedCall, DialError> {
    Ok(PlacedCall {
        call_id: "c".to_owned(),
        twilio_sid: "CA00000000000000000000000000000000".to_owned(),
    })
}

#[tokio::test]
async fn entries_leased_before_a_pause_are_handed_back_undialled() {
    let rig = Rig::new(placed);
    let leased = rig.leased("paused", 3).await;
    rig.store
        .command_campaign("paused", CampaignCommand::Pause)
        .await
        .unwrap();
    rig.dial_all("paused", leased).await;
    assert_eq!(
        rig.dialer.dials.load(Ordering::SeqCst),
        0,
        "dialled after the pause"
    );
    let progress = rig.store.campaign("paused").await.unwrap().unwrap();
    assert_eq!((progress.pending, progress.active), (3, 0), "due again");
}

#[tokio::test]
async fn entries_leased_before_a_cancel_end_canceled_undialled() {
    let rig = Rig::new(placed);
    let leased = rig.leased("canceled", 2).await;
    rig.store
        .command_campaign("canceled", CampaignCommand::Cancel)
        .await
        .unwrap();
    rig.dial_all("canceled", leased).await;
    assert_eq!(
        rig.dialer.dials.load(Ordering::SeqCst),
        0,
        "dialled after the cancel"
    );
    let progress = rig.store.campaign("canceled").await.unwrap().unwrap();
    assert_eq!((progress.pending, progress.active), (0, 0));
    assert_eq!(progress.done.get("canceled"), Some(&2));
}

#[tokio::test]
async fn a_running_campaign_is_dialled() {
    let rig = Rig::new(placed);
    let leased = rig.leased("running", 2).await;
    rig.dial_all("running", leased).await;
    assert_eq!(rig.dialer.dials.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_huge_retry_after_holds_the_campaign_back_a_minute_at_most() {
    for answer in [
        (|| {
            Err(DialError::RateLimited {
                retry_after: Duration::from_secs(86_400),
            })
        }) as fn() -> Result<PlacedCall, DialError>,
        || {
            Err(DialError::RateLimited {
                retry_after: Duration::MAX,
            })
        },
    ] {
        let rig = Rig::new(answer);
        let mut leased = rig.leased("limited", 1).await;
        rig.dial_all("limited", vec![leased.remove(0)]).await;
        assert_eq!(rig.dialer.dials.load(Ordering::SeqCst), 1);
        // The entry is due again, and the shared slot free, within about
        // a minute (not a day, nor never).
        let later = LeaseRequest {
            now_ms: unix_ms() + MAX_RATE_LIMIT_BACK_OFF.as_millis() as u64 + 1_000,
            max: 10,
            lease_ms: 30_000,
            max_concurrent: 10,
            interval_us: 1_000_000,
            horizon_ms: 1_000,
        };
        let again = rig.store.lease_entries("limited", &later).await.unwrap();
        assert_eq!(again.len(), 1, "held back past the cap");
    }
}
