//! A store that fails between renewals: [`FaultyLeases`] fails the lease
//! calls a test chooses, and a session's keeper renews through it while
//! the sweeper reads the store as it is.

use std::sync::Mutex;

use super::*;

/// A call to the lease part of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LeaseCall {
    Note,
    Claim,
    NextDue,
    Checked,
    /// A renewal of a hold, renewed at `renewed_ms`.
    Renew {
        renewed_ms: u64,
    },
    Forget,
    Holds,
    Due,
}

/// What [`FaultyLeases`] does to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Passed on, its answer returned.
    None,
    /// Never reaches the store: fails.
    Refused,
    /// Reaches the store, and its answer is lost: fails.
    ReplyLost,
}

/// Chooses what is done to each call.
type Faults = Box<dyn Fn(&LeaseCall) -> Fault + Send + Sync>;

/// The lease part of `inner`, failing the calls `faults` chooses; every
/// call is logged, with what was done to it, for a test to wait on.
struct FaultyLeases {
    inner: Arc<dyn Store>,
    faults: Faults,
    log: tokio::sync::watch::Sender<Vec<(LeaseCall, Fault)>>,
}

impl FaultyLeases {
    fn new(inner: &Arc<dyn Store>, faults: Faults) -> Arc<Self> {
        Arc::new(FaultyLeases {
            inner: Arc::clone(inner),
            faults,
            log: tokio::sync::watch::Sender::new(Vec::new()),
        })
    }

    /// Runs `call` (`work`, on the inner store) with the fault chosen for
    /// it.
    async fn call<T>(
        &self,
        call: LeaseCall,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let fault = (self.faults)(&call);
        let result = match fault {
            Fault::None => work.await,
            Fault::Refused => Err(StoreError::Timeout(Duration::from_secs(2))),
            Fault::ReplyLost => work
                .await
                .and_then(|_| Err(StoreError::Timeout(Duration::from_secs(2)))),
        };
        self.log.send_modify(|log| log.push((call, fault)));
        result
    }

    /// Waits until the log satisfies `done`.
    async fn until(&self, done: impl Fn(&[(LeaseCall, Fault)]) -> bool) {
        let mut log = self.log.subscribe();
        log.wait_for(|log| done(log)).await.unwrap();
    }

    /// The renewals that reached the store (their answers lost or not), by
    /// their renewal times.
    fn landed_renewals(&self) -> Vec<u64> {
        self.log
            .borrow()
            .iter()
            .filter_map(|(call, fault)| match call {
                LeaseCall::Renew { renewed_ms } if *fault != Fault::Refused => Some(*renewed_ms),
                _ => None,
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl LostSessionStore for FaultyLeases {
    async fn note_lost_session(
        &self,
        check: &LostSessionCheck,
        due_ms: u64,
    ) -> Result<(), StoreError> {
        let work = self.inner.note_lost_session(check, due_ms);
        self.call(LeaseCall::Note, work).await
    }

    async fn claim_lost_sessions(
        &self,
        now_ms: u64,
        lease_ms: u64,
        max: usize,
    ) -> Result<Vec<LostSessionCheck>, StoreError> {
        let work = self.inner.claim_lost_sessions(now_ms, lease_ms, max);
        self.call(LeaseCall::Claim, work).await
    }

    async fn next_lost_session_due(&self) -> Result<Option<u64>, StoreError> {
        let work = self.inner.next_lost_session_due();
        self.call(LeaseCall::NextDue, work).await
    }

    async fn lost_session_checked(&self, check: &LostSessionCheck) -> Result<(), StoreError> {
        let work = self.inner.lost_session_checked(check);
        self.call(LeaseCall::Checked, work).await
    }

    async fn renew_lease(
        &self,
        call_id: &str,
        hold: &LeaseHold,
        only_held: bool,
    ) -> Result<bool, StoreError> {
        let work = self.inner.renew_lease(call_id, hold, only_held);
        let renewed_ms = hold.renewed_ms;
        self.call(LeaseCall::Renew { renewed_ms }, work).await
    }

    async fn forget_lease(&self, call_id: &str, holder: Option<&str>) -> Result<(), StoreError> {
        let work = self.inner.forget_lease(call_id, holder);
        self.call(LeaseCall::Forget, work).await
    }

    async fn lease_holds(&self, call_id: &str) -> Result<Vec<LeaseHold>, StoreError> {
        let work = self.inner.lease_holds(call_id);
        self.call(LeaseCall::Holds, work).await
    }

    async fn lost_session_due(&self, check: &LostSessionCheck) -> Result<Option<u64>, StoreError> {
        let work = self.inner.lost_session_due(check);
        self.call(LeaseCall::Due, work).await
    }
}

/// A live call whose process sweeps `store` and keeps the session's hold
/// through `faulty`: the sweeper, the writer (running until dropped) and
/// the keeper.
async fn live_through(
    store: &Arc<dyn Store>,
    faulty: &Arc<FaultyLeases>,
    call_id: &str,
) -> (
    Arc<LostSessionSweeper>,
    tokio::sync::watch::Sender<WriterStatus>,
    tokio::task::JoinHandle<()>,
) {
    inbound_started(store, call_id).await;
    let sweeper = process(store);
    let sweeper = Arc::try_unwrap(sweeper)
        .unwrap()
        .with_lease_store(Arc::clone(faulty) as Arc<dyn LostSessionStore>);
    let sweeper = Arc::new(sweeper);
    let (writer, done) = running_writer();
    let (_holder, lease) = keep(&sweeper, call_id, done);
    (sweeper, writer, lease)
}

/// The first `passed` renewals pass; the ones after fail (the first of
/// them reaching the store, its answer lost, with `first_lands`) until
/// `for_ms` after the last that passed.
fn failing_after(passed: usize, for_ms: u64, first_lands: bool) -> Faults {
    let seen = Mutex::new((0_usize, 0_u64));
    let first_lands = std::sync::atomic::AtomicBool::new(first_lands);
    Box::new(move |call| {
        let LeaseCall::Renew { renewed_ms } = call else {
            return Fault::None;
        };
        let mut seen = seen.lock().unwrap();
        let (count, last_passed) = &mut *seen;
        *count += 1;
        if *count <= passed || *renewed_ms >= last_passed.saturating_add(for_ms) {
            *last_passed = *renewed_ms;
            return Fault::None;
        }
        if first_lands.swap(false, Ordering::SeqCst) {
            Fault::ReplyLost
        } else {
            Fault::Refused
        }
    })
}

#[tokio::test(start_paused = true)]
async fn renewals_failing_for_less_than_the_grace_end_no_live_call() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(StoreSettings::default()));
    // Renewals fail from the second on, until 5 s before the first one
    // falls due: the next one lands within the grace.
    let faults = failing_after(1, millis(GRACE) - 5_000, false);
    let faulty = FaultyLeases::new(&store, faults);
    let (sweeper, _writer, _lease) = live_through(&store, &faulty, "flaky").await;
    let sweeping = sweep(&sweeper);
    // Failed, then landed again.
    faulty
        .until(|log| {
            let failed = log.iter().any(|(_, fault)| *fault == Fault::Refused);
            failed && matches!(log.last(), Some((LeaseCall::Renew { .. }, Fault::None)))
        })
        .await;
    let landed = faulty.landed_renewals();
    assert_eq!(landed.len(), 2, "{landed:?}");
    assert!(landed[1] - landed[0] < millis(GRACE), "{landed:?}");
    // However long the sweeper goes on, the call is not ended.
    let jobs = store.read_jobs("w", 8, GRACE * 3).await.unwrap();
    assert!(jobs.is_empty(), "{jobs:?}");
    let call = store.call("flaky").await.unwrap().unwrap();
    assert_eq!(call.ended_at, None, "a live call ended");
    sweeping.abort();
}

#[tokio::test(start_paused = true)]
async fn renewals_failing_past_the_grace_end_the_call_as_of_the_last_landed_one() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(StoreSettings::default()));
    // From the third renewal on, every renewal fails; that third one
    // reaches the store, its answer lost.
    let faulty = FaultyLeases::new(&store, failing_after(2, u64::MAX, true));
    let (sweeper, _writer, _lease) = live_through(&store, &faulty, "cut-off").await;
    let sweeping = sweep(&sweeper);
    // The sweeper, which reaches the store, ends the call once the grace
    // has passed since the last renewal that landed.
    let jobs = store.read_jobs("w", 8, GRACE * 3).await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let landed = faulty.landed_renewals();
    assert_eq!(landed.len(), 3, "{landed:?}");
    let call = store.call("cut-off").await.unwrap().unwrap();
    assert_eq!(call.end_reason.as_deref(), Some(SESSION_LOST));
    assert_eq!(call.ended_at, Some(rfc3339(landed[2])));
    sweeping.abort();
}
