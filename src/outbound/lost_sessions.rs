//! [`LostSessions`]: calls whose server died mid-call, ended by whichever
//! server is running once their grace has passed.
//!
//! A final status callback for a call that started, was never ended, and
//! has no session on the server it reached notes a check in the store
//! (`calls:lost_sessions`, due `lost_session_grace_secs` after the
//! callback), not a timer in that server: a server that restarts within
//! the grace, or stops for good, leaves the check to the sweeper of the
//! next server to run. Every server with `[outbound]` runs the sweeper: it
//! claims the checks that are due under a lease (of two sweepers, one
//! claims a check; one that dies doing it leaves it to be claimed again
//! when its lease ends) and ends their calls (see
//! [`Settlement::end_lost_session`]).
//!
//! The sweeper sleeps until the next check is due, woken at once by a
//! check noted on its own server, and looks at least every
//! [`MAX_WAIT`] for checks other servers noted and leases that ran out.
//! Due times are noted and compared on one clock, the wall clock
//! ([`unix_ms`]), the one other servers judge leases by.
//!
//! A page of claimed checks is worked through while its lease is less than
//! half spent; the rest wait for the lease to end, so that no other
//! server claims a check this one is still doing. A check whose call
//! cannot be ended for good (the store's error is not transient, such as
//! a record it cannot read) is logged and forgotten, not claimed again for
//! ever.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::store::time::unix_ms;
use crate::store::{LostSessionCheck, StoreError};

use super::settle::Settlement;

/// How long a claimed check is held: far more than ending one call and
/// queueing its work takes, short enough that a check whose sweeper died
/// is not late by much.
const LEASE: Duration = Duration::from_secs(60);
/// The longest a sweeper sleeps between looks.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// How long a sweeper waits after the store failed.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Checks claimed at once.
const PAGE: usize = 100;

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The sweeper's clock: Unix milliseconds now.
type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Notes lost-session checks and sweeps the due ones.
pub struct LostSessions {
    settlement: Settlement,
    grace: Duration,
    /// The wall clock ([`unix_ms`]); another in tests.
    clock: Clock,
    /// A check was noted on this server: the sweeper looks again.
    noted: Notify,
}

impl std::fmt::Debug for LostSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LostSessions")
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

impl LostSessions {
    /// Ends lost sessions through `settlement`, `grace` after their final
    /// status (`[outbound] lost_session_grace_secs`).
    pub fn new(settlement: Settlement, grace: Duration) -> Self {
        LostSessions {
            settlement,
            grace,
            clock: Arc::new(unix_ms),
            noted: Notify::new(),
        }
    }

    /// The same, with `clock` for the wall clock.
    #[cfg(test)]
    fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// How long after its final status a lost session is ended.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Notes that `call_id` started, reached its final status at `at_ms`,
    /// and nobody ended it: unless someone does within the grace, a
    /// sweeper ends it then, as of `at_ms`.
    pub async fn note(&self, call_id: &str, at_ms: u64) -> Result<(), StoreError> {
        let check = LostSessionCheck {
            call_id: call_id.to_owned(),
            at_ms,
        };
        let due = at_ms.saturating_add(millis(self.grace));
        self.settlement
            .store()
            .note_lost_session(&check, due)
            .await?;
        self.noted.notify_one();
        Ok(())
    }

    /// Ends the calls of the checks due at `now_ms`, a page at a time;
    /// how many it ended. A check that failed for now is left to be
    /// claimed again once its lease ends; the error is returned once the
    /// rest is done. One whose record cannot be read is logged and forgotten. A
    /// page whose lease is half spent is left there, its remaining checks
    /// to be claimed again once the lease ends.
    pub async fn end_due(&self, now_ms: u64) -> Result<usize, StoreError> {
        let store = self.settlement.store();
        let mut ended = 0;
        let mut failed = None;
        let started = Instant::now();
        loop {
            // Each page's lease from when it is claimed, not from the
            // sweep's start: a later page must not be claimed with a lease
            // already spent.
            let page_now = now_ms.saturating_add(millis(started.elapsed()));
            let checks = store
                .claim_lost_sessions(page_now, millis(LEASE), PAGE)
                .await?;
            let claimed = Instant::now();
            for (done, check) in checks.iter().enumerate() {
                if claimed.elapsed() >= LEASE / 2 {
                    tracing::warn!(
                        left = checks.len() - done,
                        "lost-session checks left to their lease: it is half spent"
                    );
                    return failed.map_or(Ok(ended), Err);
                }
                let forget = match self.settlement.end_lost_session(check).await {
                    Ok(ended_here) => {
                        ended += usize::from(ended_here);
                        true
                    }
                    // Only a record that cannot be read is hopeless; any
                    // other refusal (an ACL change, a script error) may be
                    // mended, and the after-call work must not be lost.
                    Err(err @ StoreError::Corrupt { .. }) => {
                        tracing::error!(call_id = check.call_id, error = %err, "cannot end a call whose session was lost, for good; its check is dropped");
                        true
                    }
                    Err(err) => {
                        tracing::warn!(call_id = check.call_id, error = %err, "cannot end a call whose session was lost; tried again after its lease");
                        failed = Some(err);
                        false
                    }
                };
                // Not forgotten: done again after the lease, which queues
                // the work again, harmlessly (the outbox keeps one delivery
                // per event; a second evaluation finds the verdict stored).
                if forget && let Err(err) = store.lost_session_checked(check).await {
                    tracing::warn!(call_id = check.call_id, error = %err, "cannot forget a lost-session check; done again later");
                }
            }
            if checks.len() < PAGE {
                return failed.map_or(Ok(ended), Err);
            }
        }
    }

    /// Sweeps until `stop` resolves: at start (a server that restarted
    /// finds the checks it or another left), then whenever the next check
    /// is due, a check is noted here, or 30 s have passed. A sweep
    /// cut by `stop` leaves its claimed checks to their lease.
    pub async fn run(&self, stop: impl Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        // The clock due times are noted by, and other servers' leases
        // judged by.
        let now_ms = || (self.clock)();
        loop {
            let sweep = async {
                match self.end_due(now_ms()).await {
                    Ok(ended) => {
                        if ended > 0 {
                            tracing::info!(ended, "calls whose session was lost ended");
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "lost sessions not swept; tried again");
                        return RETRY_AFTER;
                    }
                }
                match self.settlement.store().next_lost_session_due().await {
                    Ok(Some(due)) => Duration::from_millis(due.saturating_sub(now_ms())),
                    Ok(None) => MAX_WAIT,
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot read when the next lost session is due");
                        RETRY_AFTER
                    }
                }
            };
            let wait = tokio::select! {
                wait = sweep => wait.min(MAX_WAIT),
                () = &mut stop => return,
            };
            tokio::select! {
                () = &mut stop => return,
                () = self.noted.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::{AtomicI64, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::agent::{AgentRuntime, ContextSection, PostCallError, PostCallStep, RuntimeParts};
    use crate::store::time::rfc3339;
    use crate::store::{
        CallDirection, CallRecord, CallStatus, MemoryStore, OutboundCall, Store, StoreSettings,
    };

    const GRACE: Duration = Duration::from_secs(150);

    /// A post-call step, so that a call's after-call work is an
    /// evaluation job (which is not deduplicated: each queueing counts).
    #[derive(Debug)]
    struct Nothing;

    #[async_trait]
    impl PostCallStep for Nothing {
        fn name(&self) -> &'static str {
            "nothing"
        }

        async fn run(&self, _call: &CallRecord) -> Result<(), PostCallError> {
            Ok(())
        }
    }

    /// A wall clock that paused time moves: `unix_ms()` at its making,
    /// plus the time since, plus `offset` (the clock stepped).
    fn paused_clock(offset: Arc<AtomicI64>) -> Clock {
        let (base, start) = (unix_ms(), Instant::now());
        Arc::new(move || {
            let now = base.saturating_add(millis(start.elapsed()));
            now.saturating_add_signed(offset.load(Ordering::SeqCst))
        })
    }

    /// A process's lost-session sweeper on the shared `store`: its own
    /// runtime, nothing of another's.
    fn process(store: &Arc<dyn Store>) -> Arc<LostSessions> {
        process_with(store, paused_clock(Arc::default()))
    }

    fn process_with(store: &Arc<dyn Store>, clock: Clock) -> Arc<LostSessions> {
        let runtime = AgentRuntime::from_parts(RuntimeParts {
            store: Arc::clone(store),
            section: ContextSection::default(),
            evaluator: None,
            webhook: None,
            skills: None,
            post_call: vec![Arc::new(Nothing)],
            objects: None,
            phone_hasher: None,
            learning: None,
        });
        let settlement = Settlement::new(Arc::new(runtime), Vec::new(), true);
        Arc::new(LostSessions::new(settlement, GRACE).with_clock(clock))
    }

    /// An answered call its server left started and never ended.
    async fn left_started(store: &Arc<dyn Store>, call_id: &str) {
        let started = unix_ms() - 30_000;
        let mut call = CallRecord::pending(
            call_id,
            "twilio",
            Default::default(),
            Default::default(),
            started,
        );
        call.status = CallStatus::Completed;
        call.direction = Some(CallDirection::Outbound);
        call.started_at = Some(rfc3339(started));
        call.outbound = Some(OutboundCall {
            twilio_sid: Some("CA1".into()),
            ..OutboundCall::default()
        });
        assert!(store.create_call(&call).await.unwrap());
    }

    fn sweep(sweeper: &Arc<LostSessions>) -> tokio::task::JoinHandle<()> {
        let sweeper = Arc::clone(sweeper);
        tokio::spawn(async move { sweeper.run(std::future::pending()).await })
    }

    #[tokio::test(start_paused = true)]
    async fn a_noted_check_outlives_its_process_and_ends_the_call_once() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(StoreSettings::default()));
        left_started(&store, "lost").await;
        // The server that heard the final status notes the check, then
        // stops before the grace is over: nothing of it is left running.
        let at_ms = unix_ms();
        process(&store).note("lost", at_ms).await.unwrap();

        // Two servers start on the same store, each with its sweeper.
        let sweepers = [sweep(&process(&store)), sweep(&process(&store))];
        tokio::time::sleep(GRACE - Duration::from_secs(1)).await;
        let call = store.call("lost").await.unwrap().unwrap();
        assert_eq!(call.ended_at, None, "ended before the grace");
        assert!(
            store
                .read_jobs("w", 8, Duration::ZERO)
                .await
                .unwrap()
                .is_empty()
        );

        // Once it is due, one of them ends it, as of the final status.
        let jobs = store
            .read_jobs("w", 8, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        let call = store.call("lost").await.unwrap().unwrap();
        assert_eq!(call.ended_at, Some(rfc3339(at_ms)));
        assert_eq!(call.end_reason.as_deref(), Some("session_lost"));
        // And only one: the other finds nothing to claim, however long
        // they both run on, and the check is gone.
        tokio::time::sleep(LEASE * 10).await;
        let more = store.read_jobs("w", 8, Duration::ZERO).await.unwrap();
        assert!(more.is_empty(), "queued again: {more:?}");
        assert_eq!(store.next_lost_session_due().await.unwrap(), None);
        for sweeper in sweepers {
            sweeper.abort();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_its_session_ended_within_the_grace_is_left_alone() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(StoreSettings::default()));
        left_started(&store, "alive").await;
        let sweeper = process(&store);
        let at_ms = unix_ms();
        sweeper.note("alive", at_ms).await.unwrap();
        let sweeping = sweep(&sweeper);
        // The session was alive after all: its writer ends the call.
        let ended = crate::store::CallChange::Ended {
            reason: "hangup".into(),
            at_ms: at_ms + 1_000,
        };
        store.update_call("alive", &ended).await.unwrap();
        tokio::time::sleep(GRACE * 2).await;
        let call = store.call("alive").await.unwrap().unwrap();
        assert_eq!(call.end_reason.as_deref(), Some("hangup"));
        assert!(
            store
                .read_jobs("w", 8, Duration::ZERO)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store.next_lost_session_due().await.unwrap(),
            None,
            "checked"
        );
        sweeping.abort();
    }

    #[tokio::test]
    async fn a_check_whose_work_failed_is_done_again_after_its_lease() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(StoreSettings::default()));
        left_started(&store, "lost").await;
        let sweeper = process(&store);
        let at_ms = 1_000;
        sweeper.note("lost", at_ms).await.unwrap();
        let due = at_ms + millis(GRACE);
        // Claimed by a sweeper that died before ending it.
        let claimed = store
            .claim_lost_sessions(due, millis(LEASE), 8)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(sweeper.end_due(due).await.unwrap(), 0, "held by its lease");
        let after_lease = due + millis(LEASE);
        assert_eq!(sweeper.end_due(after_lease).await.unwrap(), 1);
        assert_eq!(sweeper.end_due(after_lease * 2).await.unwrap(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wall_clock_stepped_back_does_not_end_a_call_before_its_grace() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(StoreSettings::default()));
        left_started(&store, "lost").await;
        // The sweeper starts while the wall clock is ten minutes ahead.
        let offset = Arc::new(AtomicI64::new(600_000));
        let clock = paused_clock(Arc::clone(&offset));
        let sweeper = process_with(&store, Arc::clone(&clock));
        let sweeping = sweep(&sweeper);
        tokio::time::sleep(Duration::from_secs(1)).await;
        // The clock is set right, and a check noted by it.
        offset.store(0, Ordering::SeqCst);
        let at_ms = clock();
        sweeper.note("lost", at_ms).await.unwrap();
        tokio::time::sleep(GRACE - Duration::from_secs(1)).await;
        let call = store.call("lost").await.unwrap().unwrap();
        assert_eq!(call.ended_at, None, "ended before the grace");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let call = store.call("lost").await.unwrap().unwrap();
        assert_eq!(call.ended_at, Some(rfc3339(at_ms)));
        sweeping.abort();
    }
}
