//! A voice session's lease: the lost-session check its process keeps
//! renewing while the session's writer runs, so that a call whose process
//! stops mid-call is ended by another (see [`super::LostSessionSweeper`]).
//!
//! The keeper renews the lease at once and then every third of the grace,
//! each renewal due a grace after it: two renewals may fail in a row (a
//! store blip, a slow Redis) before a live session's check could fall
//! due. A renewal replaces the ones before it in one step. One that failed
//! may still have landed (its reply lost, or a write that went through
//! after its time limit), so every renewal not known to be gone is
//! replaced by the next: a stray renewal left behind would end a live
//! call once due.
//!
//! Once the writer has stopped (the call's end and its after-call work
//! written, or left in the turn spool), the lease is forgotten, with a few
//! tries: one left behind ends nothing (the call is ended), and only
//! queues the after-call work again, harmlessly.

use std::sync::Arc;
use std::time::Duration;

use super::LostSessionSweeper;
use crate::agent::writer::WriterDone;
use crate::store::LostSessionCheck;

/// Tries to forget a lease once its writer has stopped.
const FORGET_TRIES: u32 = 3;
/// The wait between them.
const FORGET_RETRY: Duration = Duration::from_secs(2);

impl LostSessionSweeper {
    /// Keeps `call_id`'s lease, `grace` long, until its writer (`done`)
    /// has stopped; then forgets it. Stopping the task (its process
    /// stopping) leaves the lease to fall due.
    pub(crate) fn keep_lease(
        self: &Arc<Self>,
        call_id: String,
        grace: Duration,
        mut done: WriterDone,
    ) -> tokio::task::JoinHandle<()> {
        let period = grace / 3;
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        let sweeper = Arc::clone(self);
        tokio::spawn(async move {
            let store = &sweeper.store;
            // Renewals that may be in the store: the last one that landed and
            // every one since whose fate is unknown.
            let mut held: Vec<LostSessionCheck> = Vec::new();
            let mut failing = false;
            loop {
                let at_ms = (sweeper.clock)();
                let check = LostSessionCheck::lease(&call_id, at_ms);
                let renewal =
                    store.renew_lost_session(&held, &check, at_ms.saturating_add(grace_ms));
                match tokio::time::timeout(period, renewal).await {
                    Ok(Ok(())) => {
                        held = vec![check];
                        if std::mem::take(&mut failing) {
                            tracing::info!(call_id, "session lease renewed again");
                        }
                    }
                    failed => {
                        if !std::mem::replace(&mut failing, true) {
                            let error = match failed {
                                Ok(Err(err)) => err.to_string(),
                                _ => format!("no answer within {period:?}"),
                            };
                            tracing::warn!(
                                call_id,
                                error,
                                "cannot renew the session's lease; tried again"
                            );
                        }
                        held.push(check);
                    }
                }
                let stopped = async {
                    // A dropped sender is a stopped writer too.
                    let _ = done.wait_for(|status| status.done.is_some()).await;
                };
                tokio::select! {
                    () = stopped => break,
                    () = tokio::time::sleep(period) => {}
                }
            }
            for attempt in 1..=FORGET_TRIES {
                let forgotten = async {
                    for check in &held {
                        store.lost_session_checked(check).await?;
                    }
                    Ok::<_, crate::store::StoreError>(())
                };
                match tokio::time::timeout(period, forgotten).await {
                    Ok(Ok(())) => return,
                    failed if attempt == FORGET_TRIES => {
                        let error = match failed {
                            Ok(Err(err)) => err.to_string(),
                            _ => format!("no answer within {period:?}"),
                        };
                        tracing::warn!(
                            call_id,
                            error,
                            "cannot forget the session's lease; its check queues the after-call work again"
                        );
                    }
                    _ => tokio::time::sleep(FORGET_RETRY).await,
                }
            }
        })
    }
}
