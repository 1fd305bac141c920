//! [`LostSessionSweeper`]: calls whose server died mid-call, ended by whichever
//! process is running once their grace has passed.
//!
//! Two sources note a check in the store (`calls:lost_sessions`), not a
//! timer in one process, so that a process that restarts, or another one,
//! does it:
//!
//! - every voice session's **lease** ([`lease`]): while its writer runs
//!   (the session, then its flush) the writer's hold on its call's check
//!   is renewed every third of `[context] lost_session_grace_secs`, each
//!   renewal due a grace after it; once the writer has stopped its hold
//!   is forgotten, and the check with the call's last hold (a reconnect
//!   gives a call two writers). A lease left to fall due belongs to
//!   sessions whose process stopped (killed, crashed, its machine gone):
//!   its call is ended as of the latest renewal of its holds, as their
//!   writers noted it.
//! - an outbound call's **final status** (`outbound::LostSessions`): the
//!   callback for a started call nobody ended, with no session for it on
//!   the server that heard it, notes a check due `[outbound]
//!   lost_session_grace_secs` after it; the call is ended as of the
//!   callback.
//!
//! Every server with an agent runtime sweeps (`Server::serve`), and so
//! does `voxpipe worker` (both through the runtime's
//! `sweep_lost_sessions`, which runs a first replay pass of the spool):
//! each claims the due checks under a lease (of two sweepers, one claims a
//! check; one that dies doing it leaves it to be claimed again when its
//! lease ends), ends their calls (`end_reason`
//! `session_lost`) if nobody has, and queues their after-call work (the
//! evaluation job, the webhook).
//!
//! The sweeper sleeps until the next check is due, woken at once by a
//! check noted on its own process, and looks at least every
//! [`MAX_WAIT`] for checks other processes noted and leases that ran out.
//! In a process with a turn spool its first claim waits for the spool's
//! first replay pass that left nothing waiting (at most
//! [`FIRST_REPLAY_WAIT`]): a call whose process stopped may have its last
//! turns, or its end, in this disk's spool, and ended before they are
//! written it would be evaluated without them.
//! Due times are noted and compared on one clock, the wall clock
//! ([`unix_ms`]), the one other processes judge leases by.
//!
//! A page of claimed checks is worked through while its lease is less than
//! half spent; the rest wait for the lease to end, so that no other
//! process claims a check this one is still doing. A check whose call
//! cannot be ended for good (the store's error is not transient, such as
//! a record it cannot read) is logged and forgotten, not claimed again for
//! ever.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::after_call::AfterCall;
use crate::store::time::{rfc3339, unix_ms};
use crate::store::{
    CallChange, LeaseHold, LostSessionCheck, LostSessionSource, LostSessionStore, Store, StoreError,
};

mod lease;
use lease::{Clock, LeaseKeeper};
pub(crate) use lease::{ForgetLease, new_lease_holder};
#[cfg(test)]
mod tests;

/// The end reason of a call ended because its session was lost (its
/// server died mid-call).
pub const SESSION_LOST: &str = "session_lost";

/// How long a claimed check is held: far more than ending one call and
/// queueing its work takes, short enough that a check whose sweeper died
/// is not late by much.
const LEASE: Duration = Duration::from_secs(60);
/// The longest a sweeper sleeps between looks: short enough that any
/// store outage long enough to keep a live session from renewing its lease
/// (two thirds of the grace, at least 20 s) is met by one of its looks.
const MAX_WAIT: Duration = Duration::from_secs(10);
/// How long a sweeper waits after the store failed.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Checks claimed at once.
const PAGE: usize = 100;
/// How long after the store was out of reach a sweeper claims nothing: a store
/// that every process lost (a Redis restart, a failover) let no session
/// renew its lease, and the keepers, trying every
/// [`lease::RENEW_RETRY`], renew within this once it is back.
const LEASE_SLACK: Duration = Duration::from_secs(20);
/// The longest a sweeper waits for its process's first turn spool replay
/// before its first claim: a replay pass takes seconds once the store
/// answers (its disk work is bounded at 5 s a step), and a spool that
/// never finishes one (its disk failing) must not stop the sweeps.
const FIRST_REPLAY_WAIT: Duration = Duration::from_secs(60);

/// What became of a claimed check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostSessionOutcome {
    /// This ended the call, and queued its after-call work.
    Ended,
    /// The call was ended by another (its work queued again for a lease),
    /// or has no record: the check is done.
    LeftAlone,
    /// A lease renewed since it was claimed (its session is alive), or one
    /// the store's recent failure may have kept from being renewed: the
    /// check stays.
    Kept,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Notes lost-session checks and sweeps the due ones.
pub struct LostSessionSweeper {
    store: Arc<dyn Store>,
    /// The after-call work of a call it ends.
    hooks: Vec<Arc<dyn AfterCall>>,
    /// The wall clock ([`unix_ms`]); another in tests.
    clock: Clock,
    /// A check was noted in this process: the sweeper looks again.
    noted: Notify,
    /// This process's sessions' grace (`[context]
    /// lost_session_grace_secs`); a lease an older build noted, without
    /// holds, is ended this long before it fell due.
    grace: Duration,
    /// True once this process's turn spool has replayed what it held,
    /// when it has a spool: the first claim waits for it.
    first_replay: Option<watch::Receiver<bool>>,
    /// When this sweeper last met a store error.
    store_failed: std::sync::Mutex<Option<Instant>>,
    /// This process's sessions' leases, on the same store and clock.
    leases: Arc<LeaseKeeper>,
}

impl std::fmt::Debug for LostSessionSweeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LostSessionSweeper")
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}

impl LostSessionSweeper {
    /// Ends lost sessions in `store`, queueing `hooks` for each; sessions'
    /// leases last `grace` unrenewed.
    pub fn new(store: Arc<dyn Store>, hooks: Vec<Arc<dyn AfterCall>>, grace: Duration) -> Self {
        let clock: Clock = Arc::new(unix_ms);
        let leases = Arc::new(LeaseKeeper {
            store: Arc::clone(&store) as Arc<dyn LostSessionStore>,
            grace,
            clock: Arc::clone(&clock),
        });
        LostSessionSweeper {
            store,
            hooks,
            clock,
            noted: Notify::new(),
            grace,
            first_replay: None,
            store_failed: std::sync::Mutex::new(None),
            leases,
        }
    }

    /// The same, whose sweep claims nothing before `replayed` is true (this
    /// process's turn spool has replayed what it held), or
    /// [`FIRST_REPLAY_WAIT`] has passed.
    pub(crate) fn after_first_replay(mut self, replayed: watch::Receiver<bool>) -> Self {
        self.first_replay = Some(replayed);
        self
    }

    /// Keeps `holder`'s hold on `call_id`'s session lease until its writer
    /// (`done`) has stopped (see [`lease`]); `holder` is the writer's
    /// ([`new_lease_holder`]).
    pub(crate) fn keep_lease(
        &self,
        call_id: String,
        holder: String,
        done: crate::agent::writer::WriterDone,
    ) -> tokio::task::JoinHandle<()> {
        self.leases.keep(call_id, holder, done)
    }

    /// Notes `err`, if it says the store is out of reach (not a refusal
    /// of one command): no lease is ended for [`LEASE_SLACK`].
    fn note_store_failure(&self, err: &StoreError) {
        if err.is_transient() {
            *self.store_failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        }
    }

    /// What is left of the [`LEASE_SLACK`] since the store last failed
    /// this sweeper, if any.
    fn slack_left(&self) -> Option<Duration> {
        let failed = *self.store_failed.lock().unwrap_or_else(|e| e.into_inner());
        failed
            .map(|at| LEASE_SLACK.saturating_sub(at.elapsed()))
            .filter(|left| !left.is_zero())
    }

    /// The same, with `clock` for the wall clock.
    #[cfg(test)]
    fn with_clock(mut self, clock: Clock) -> Self {
        self.leases = Arc::new(LeaseKeeper {
            store: Arc::clone(&self.store) as Arc<dyn LostSessionStore>,
            grace: self.grace,
            clock: Arc::clone(&clock),
        });
        self.clock = clock;
        self
    }

    /// The same, its sessions' holds kept through `store` (one that fails
    /// some calls) rather than its own.
    #[cfg(test)]
    fn with_lease_store(mut self, store: Arc<dyn LostSessionStore>) -> Self {
        self.leases = Arc::new(LeaseKeeper {
            store,
            grace: self.grace,
            clock: Arc::clone(&self.clock),
        });
        self
    }

    /// Notes `check`, due at `due_ms`, unless it is noted already: unless
    /// someone ends its call before, a sweeper ends it then, as of
    /// `check.at_ms`.
    pub async fn note(&self, check: &LostSessionCheck, due_ms: u64) -> Result<(), StoreError> {
        self.store.note_lost_session(check, due_ms).await?;
        self.noted.notify_one();
        Ok(())
    }

    /// Ends `check`'s call (`session_lost`) if it is still not ended, and
    /// queues its after-call work. A final status's call is ended as of
    /// its time; a lease's as of the latest renewal of its holds, as their
    /// writers noted it, whatever this sweeper's grace and however often
    /// the check was claimed (a lease an older build noted, without holds:
    /// a grace, this sweeper's, before the due time the claim found).
    /// `claimed_until` is the end of the claim that gave `check`: a lease
    /// whose due time is no longer that was renewed or let go of since
    /// (its session is alive), or one with a hold not due by the claim's
    /// time (another writer of the call runs), is kept. A call ended
    /// meanwhile (its session was alive after all) is left alone, but for
    /// a lease: a writer lets go of its hold only once the after-call work
    /// is queued, so a lease left on an ended call may mean that work was
    /// not (the writer's process stopped in between), and it is queued
    /// again, harmlessly (the webhook's outbox keeps one delivery per
    /// event; a second evaluation finds the verdict stored). An error (the
    /// store, or the work not queued) leaves the check to be done again:
    /// the end is written once, and the write that ended it is found again
    /// (its time and reason are the check's), so the work is queued then.
    pub async fn end_lost_session(
        &self,
        check: &LostSessionCheck,
        claimed_until: u64,
    ) -> Result<LostSessionOutcome, StoreError> {
        let lease = check.source == LostSessionSource::Lease;
        let at_ms = if lease {
            match self.lease_end(check, claimed_until).await? {
                Some(at_ms) => at_ms,
                None => return Ok(LostSessionOutcome::Kept),
            }
        } else {
            check.at_ms
        };
        let call_id = check.call_id.as_str();
        let change = CallChange::Ended {
            reason: SESSION_LOST.to_owned(),
            at_ms,
        };
        let Some(call) = self.store.update_call(call_id, &change).await? else {
            return Ok(LostSessionOutcome::LeftAlone);
        };
        let ended_here = call.ended_at.as_deref() == Some(&*rfc3339(at_ms))
            && call.end_reason.as_deref() == Some(SESSION_LOST);
        if ended_here {
            tracing::warn!(
                call_id,
                source = ?check.source,
                "a started call was never ended (its server stopped mid-call): ended, and its after-call work queued"
            );
        } else if !lease {
            return Ok(LostSessionOutcome::LeftAlone);
        }
        for hook in &self.hooks {
            hook.queue(&*self.store, call_id).await?;
        }
        Ok(if ended_here {
            LostSessionOutcome::Ended
        } else {
            LostSessionOutcome::LeftAlone
        })
    }

    /// When the call of `check`, a lease claimed until `claimed_until`,
    /// ended: the latest renewal of its holds; `None` while it is held
    /// (renewed or let go of since the claim, or a hold not due at the
    /// claim's time).
    async fn lease_end(
        &self,
        check: &LostSessionCheck,
        claimed_until: u64,
    ) -> Result<Option<u64>, StoreError> {
        if self.store.lost_session_due(check).await? != Some(claimed_until) {
            return Ok(None);
        }
        // Read after the due time: a renewal in between shows here.
        let holds = self.store.lease_holds(&check.call_id).await?;
        let claimed_at = claimed_until.saturating_sub(millis(LEASE));
        if holds.iter().any(|hold| hold.due_ms > claimed_at) {
            return Ok(None);
        }
        let last_renewal = holds.iter().map(|hold: &LeaseHold| hold.renewed_ms).max();
        Ok(Some(last_renewal.unwrap_or_else(|| {
            check.at_ms.saturating_sub(millis(self.grace))
        })))
    }

    /// Ends the calls of the checks due at `now_ms`, a page at a time;
    /// how many it ended. A check that failed for now is left to be
    /// claimed again once its lease ends; the error is returned once the
    /// rest is done. One whose record cannot be read is logged and forgotten. A
    /// page whose lease is half spent is left there, its remaining checks
    /// to be claimed again once the lease ends. Within [`LEASE_SLACK`] of
    /// a store error it claims nothing.
    pub async fn end_due(&self, now_ms: u64) -> Result<usize, StoreError> {
        if self.slack_left().is_some() {
            return Ok(0);
        }
        let store = &self.store;
        let mut ended = 0;
        let mut failed = None;
        let started = Instant::now();
        loop {
            // Each page's lease from when it is claimed, not from the
            // sweep's start: a later page must not be claimed with a lease
            // already spent.
            let page_now = now_ms.saturating_add(millis(started.elapsed()));
            let claimed_until = page_now.saturating_add(millis(LEASE));
            let checks = store
                .claim_lost_sessions(page_now, millis(LEASE), PAGE)
                .await
                .inspect_err(|err| self.note_store_failure(err))?;
            let claimed = Instant::now();
            for (done, check) in checks.iter().enumerate() {
                if claimed.elapsed() >= LEASE / 2 {
                    tracing::warn!(
                        left = checks.len() - done,
                        "lost-session checks left to their lease: it is half spent"
                    );
                    return failed.map_or(Ok(ended), Err);
                }
                let forget = match self.end_lost_session(check, claimed_until).await {
                    Ok(LostSessionOutcome::Ended) => {
                        ended += 1;
                        true
                    }
                    Ok(LostSessionOutcome::LeftAlone) => true,
                    Ok(LostSessionOutcome::Kept) => false,
                    // Only a record that cannot be read is hopeless; any
                    // other refusal (an ACL change, a script error) may be
                    // mended, and the after-call work must not be lost.
                    Err(err @ StoreError::Corrupt { .. }) => {
                        tracing::error!(call_id = check.call_id, error = %err, "cannot end a call whose session was lost, for good; its check is dropped");
                        true
                    }
                    // One call's trouble: the others go on.
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
    /// finds the checks it or another left; with a turn spool, once its
    /// first replay is done, or [`FIRST_REPLAY_WAIT`] has passed), then
    /// whenever the next check is due, a check is noted here, or
    /// [`MAX_WAIT`] has passed. A sweep cut by `stop` leaves its claimed
    /// checks to their lease.
    pub async fn run(&self, stop: impl Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        if let Some(replayed) = self.first_replay.clone() {
            tokio::select! {
                () = &mut stop => return,
                () = wait_for_first_replay(replayed) => {}
            }
        }
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
                if let Some(left) = self.slack_left() {
                    return left;
                }
                match self.store.next_lost_session_due().await {
                    Ok(Some(due)) => Duration::from_millis(due.saturating_sub(now_ms())),
                    Ok(None) => MAX_WAIT,
                    Err(err) => {
                        self.note_store_failure(&err);
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

/// Waits until `replayed` is true, for at most [`FIRST_REPLAY_WAIT`].
async fn wait_for_first_replay(mut replayed: watch::Receiver<bool>) {
    // A spool gone (its runtime dropped) has nothing left to wait for.
    let waited = tokio::time::timeout(FIRST_REPLAY_WAIT, replayed.wait_for(|done| *done)).await;
    if waited.is_err() {
        tracing::warn!(
            waited = ?FIRST_REPLAY_WAIT,
            "the turn spool has not replayed what it holds yet; lost sessions are swept all the same (a call's spooled turns may come after its end)"
        );
    }
}
