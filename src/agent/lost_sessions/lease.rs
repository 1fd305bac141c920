//! A voice session's lease: the lost-session check its process keeps
//! pushing on while the session's writer runs, so that a call whose process
//! stops mid-call is ended by another (see [`super::LostSessionSweeper`]).
//!
//! A lease is one member per call (`{call id}\nlease`), its score the time
//! it falls due, and each of the call's writers (a reconnect has two)
//! keeps a hold of its own on it, named by a random id
//! ([`new_lease_holder`]): the lease is due when the latest hold is, so
//! it outlives any writer but the last. The keeper renews its hold at
//! once, then a third of the grace after each renewal that landed, each
//! due a grace after it and carrying the renewal's time, which is the
//! call's end should every hold fall due; a renewal that failed is tried
//! again every [`RENEW_RETRY`], so a store that comes back finds every
//! live session renewed within seconds (a sweeper that met the store's
//! failure itself waits longer than that before it ends any lease). A hold
//! is one field, so a renewal that lands late replaces the one before it
//! rather than leaving a second behind.
//!
//! A hold ends with its writer's end of the call: [`ForgetLease`] is the
//! writer's last after-call step, after the evaluation job and the
//! webhook, so it lets go in order whether the writer writes the end or
//! the turn spool's replayer does (the spool file keeps the holder's id).
//! Once the writer has stopped the keeper stops renewing and:
//! - everything written: forgets its hold again (a renewal of its own may
//!   have landed just after the writer's);
//! - the end left in the turn spool: renews its hold only while it is
//!   still noted, until the replayer (here, or in the next process on this
//!   disk) has written the end and forgotten it, for at most
//!   [`SPOOLED_LIMIT`]; a sweep meanwhile would end the call without the
//!   spooled turns;
//! - a step given up (no spool, or its disk failed; the end, perhaps): the
//!   writer's last step may have forgotten the hold all the same, so it
//!   notes it once more and leaves it to fall due, so the call is still
//!   ended, `session_lost`, and evaluated on what was stored (a call its
//!   writer ended only has its work queued again);
//! - a writer gone without a report: leaves its hold to fall due.
//!
//! `drain_writers` waits for the keepers (at most a few seconds: one whose
//! end waits in the spool renews on).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::agent::after_call::AfterCall;
use crate::agent::writer::{WriteReport, WriterDone};
use crate::store::{LeaseHold, LostSessionStore, Store, StoreError};

/// The wait before a failed renewal is tried again.
pub(super) const RENEW_RETRY: Duration = Duration::from_secs(2);
/// Tries to forget a lease once its writer has stopped.
const FORGET_TRIES: u32 = 3;
/// How long a lease whose call's end waits in the turn spool is renewed:
/// the replayer writes it within seconds of the store's return, so one
/// still held after this (its file set aside as unreadable, or no
/// replayer running) is left to fall due and end the call.
const SPOOLED_LIMIT: Duration = Duration::from_secs(600);

/// A new writer's id for its hold on its call's lease: unique among the
/// call's writers, and never a number nor empty.
pub(crate) fn new_lease_holder() -> String {
    format!("w{:016x}", crate::random::random_u64())
}

/// The writer's last after-call step: the call's end is written, so the
/// writer's hold on its session's lease is done.
#[derive(Debug)]
pub(crate) struct ForgetLease;

#[async_trait]
impl AfterCall for ForgetLease {
    /// Not a writer's (a sweep's end, a call that had no session): only
    /// a lease an older build's writer kept, without holds, goes, and only
    /// when no writer holds it.
    async fn queue(&self, store: &dyn Store, call_id: &str) -> Result<(), StoreError> {
        self.queue_for_writer(store, call_id, None).await
    }

    /// Lets go of the writer's own hold only: another writer of the call
    /// (a reconnect) may still run. Never fails: hooks are retried
    /// together, and a hold not forgotten must not queue the evaluation
    /// again (nor count against a text end's attempts). One left is
    /// forgotten by its keeper, or found by a sweep on an ended call, which
    /// only queues the work again, harmlessly.
    async fn queue_for_writer(
        &self,
        store: &dyn Store,
        call_id: &str,
        lease_holder: Option<&str>,
    ) -> Result<(), StoreError> {
        if let Err(err) = store.forget_lease(call_id, lease_holder).await {
            tracing::warn!(call_id, error = %err, "cannot forget the session's lease now");
        }
        Ok(())
    }
}

/// The wall clock: Unix milliseconds now (another in tests).
pub(super) type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Keeps sessions' holds on their leases in a store.
pub(super) struct LeaseKeeper {
    /// Only the lease part of the store (tests fail some of its calls).
    pub(super) store: Arc<dyn LostSessionStore>,
    /// How long a lease lasts unrenewed.
    pub(super) grace: Duration,
    pub(super) clock: Clock,
}

impl LeaseKeeper {
    /// Keeps `holder`'s hold on `call_id`'s lease until its writer
    /// (`done`) has stopped (see the module's documentation for what then).
    /// Stopping the task (its process stopping) leaves the hold to fall
    /// due.
    pub(super) fn keep(
        self: &Arc<Self>,
        call_id: String,
        holder: String,
        done: WriterDone,
    ) -> tokio::task::JoinHandle<()> {
        let keeper = Arc::clone(self);
        tokio::spawn(async move { keeper.lease(&Writer { call_id, holder }, done).await })
    }

    async fn lease(&self, writer: &Writer, mut done: WriterDone) {
        let call_id = writer.call_id.as_str();
        let period = self.grace / 3;
        let mut failing = false;
        let mut next = Instant::now();
        let report = loop {
            let stopped = async {
                done.wait_for(|status| status.done.is_some())
                    .await
                    .ok()
                    .and_then(|status| status.done.clone())
            };
            tokio::select! {
                report = stopped => break report,
                () = tokio::time::sleep_until(next) => {}
            }
            let renewed = self.renew(writer, false, period, &mut failing).await;
            next = Instant::now()
                + if renewed.is_some() {
                    period
                } else {
                    RENEW_RETRY
                };
        };
        match report {
            Some(WriteReport {
                unwritten, spooled, ..
            }) if unwritten.is_empty() && spooled.is_empty() => self.forget(writer, period).await,
            Some(WriteReport { spooled, .. }) if !spooled.is_empty() => {
                let until = Instant::now() + SPOOLED_LIMIT;
                while Instant::now() < until {
                    match self.renew(writer, true, period, &mut failing).await {
                        Some(false) => return,
                        Some(true) => tokio::time::sleep(period).await,
                        None => tokio::time::sleep(RENEW_RETRY).await,
                    }
                }
                tracing::warn!(
                    call_id,
                    "the call's end still waits in the turn spool: its lease is left to end it"
                );
            }
            Some(_) => {
                // A step was given up: perhaps the end. The writer's last
                // step may have forgotten the lease all the same, so it is
                // noted once more, to fall due and end the call if nobody
                // did (a call ended only has its work queued again).
                let _ = self.renew(writer, false, period, &mut failing).await;
                tracing::warn!(
                    call_id,
                    "steps of the call were not written: its lease is left to end it"
                );
            }
            None => tracing::warn!(
                call_id,
                "the call's writer stopped without a report: its lease is left to end it"
            ),
        }
    }

    /// One renewal of `writer`'s hold, now, due a grace from now
    /// (`only_held`: if still noted); whether the hold is noted after it,
    /// `None` when it failed.
    async fn renew(
        &self,
        writer: &Writer,
        only_held: bool,
        limit: Duration,
        failing: &mut bool,
    ) -> Option<bool> {
        let call_id = writer.call_id.as_str();
        let grace_ms = u64::try_from(self.grace.as_millis()).unwrap_or(u64::MAX);
        let renewed_ms = (self.clock)();
        let hold = LeaseHold {
            holder: writer.holder.clone(),
            renewed_ms,
            due_ms: renewed_ms.saturating_add(grace_ms),
        };
        let renewal = self.store.renew_lease(call_id, &hold, only_held);
        match tokio::time::timeout(limit, renewal).await {
            Ok(Ok(held)) => {
                if std::mem::take(failing) {
                    tracing::info!(call_id, "session lease renewed again");
                }
                Some(held)
            }
            failed => {
                if !std::mem::replace(failing, true) {
                    let error = why_failed(failed, limit);
                    tracing::warn!(
                        call_id,
                        error,
                        "cannot renew the session's lease; tried again"
                    );
                }
                None
            }
        }
    }

    async fn forget(&self, writer: &Writer, limit: Duration) {
        let call_id = writer.call_id.as_str();
        let holder = Some(writer.holder.as_str());
        for attempt in 1..=FORGET_TRIES {
            match tokio::time::timeout(limit, self.store.forget_lease(call_id, holder)).await {
                Ok(Ok(())) => return,
                failed if attempt == FORGET_TRIES => {
                    let error = why_failed(failed, limit);
                    tracing::warn!(
                        call_id,
                        error,
                        "cannot forget the session's lease; a sweep queues the call's after-call work again"
                    );
                }
                _ => tokio::time::sleep(RENEW_RETRY).await,
            }
        }
    }
}

/// A writer whose hold a keeper keeps.
struct Writer {
    call_id: String,
    /// Its hold's id ([`new_lease_holder`]).
    holder: String,
}

/// Why a store call bounded by `limit` did not succeed, for the log.
fn why_failed<T>(
    failed: Result<Result<T, StoreError>, tokio::time::error::Elapsed>,
    limit: Duration,
) -> String {
    match failed {
        Ok(Err(err)) => err.to_string(),
        _ => format!("no answer within {limit:?}"),
    }
}
