//! The sweep of outbound calls whose fate is decided: those a stopped
//! server left `queued` are ended failed, so that no placed call stays
//! queued for ever, and those whose final status callback never came are
//! read from Twilio ([`super::overdue`]).
//!
//! `POST /api/calls` answers `queued` and dials after its answer. A server
//! that stops before Twilio took the call (a restart, a crash, a deploy)
//! leaves the record `queued` with nobody to dial it; one that stops while
//! its create request is out leaves it asked (`outbound.asked_at`) with no
//! SID. Every server with `[outbound]` looks at the calls created a day
//! back at start, then every [`SWEEP_PERIOD`] at those created since, once
//! their fate is decided (10 minutes old, and past the ring time after a
//! request), a page at a time:
//!
//! - one never asked of Twilio is ended `failed`, "not dialled": its dial
//!   loop gives up within about two minutes, so one still queued after
//!   ten was left by a server that stopped. It is not dialled again here:
//!   two servers sweeping at once would both dial it, and a call placed
//!   ten minutes late may no longer be wanted; the caller places it again;
//! - one asked of Twilio with no SID is ended `failed` once it would have
//!   rung out (`timeout_secs` + 2 minutes after the request): a call
//!   Twilio placed has a status callback by then, which gives the record
//!   its SID.
//!
//! A campaign's calls are left alone: their entries' leases come back to
//! the campaign, whose next try of an asked call waits for it instead of
//! dialling (see [`super::TwilioDialer`]). Ending a call is a compare and
//! set on its record that applies only while the record is as it was read
//! (no SID, the same request note, not final), so a call that moved on
//! since is left alone, and servers sweeping at once end it once (each
//! settles only what its own write ended).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::store::time::{parse_rfc3339, unix_ms};
use crate::store::{CallChange, CallDirection, CallRecord, CallStatus, RequestNote, StoreError};

use super::TwilioDialer;
use super::overdue::{StatusChecked, SweepError, overdue};
use super::settle::ended_by;

/// How often a server sweeps.
const SWEEP_PERIOD: Duration = Duration::from_secs(300);
/// How old a never-asked `queued` call must be to be stranded: past the
/// eight minutes `POST /api/calls`'s dial loop can take
/// (`dial_retry::API_DIAL_DEADLINE`).
pub(super) const STRANDED_AFTER: Duration = Duration::from_secs(600);
/// How far back the first sweep, at start, looks.
const FIRST_LOOK_BACK: Duration = Duration::from_secs(24 * 3600);
/// Calls read at once.
const PAGE: usize = 500;

/// Why `call` is stranded at `now_ms`, or `None` when it is not (not an
/// API call, no longer queued, Twilio has it, or it may still be dialled
/// or still ring). `rung_out` is how long after its request a placed call
/// would have rung out.
fn stranded(call: &CallRecord, now_ms: u64, rung_out: Duration) -> Option<&'static str> {
    let outbound = call.outbound.as_ref()?;
    let queued = call.direction == Some(CallDirection::Outbound)
        && call.status == CallStatus::Queued
        && outbound.campaign.is_none()
        && outbound.twilio_sid.is_none();
    if !queued {
        return None;
    }
    let since = |at: &str, wait: Duration| {
        let at = parse_rfc3339(at)?;
        let wait = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        (now_ms.saturating_sub(at) >= wait).then_some(())
    };
    match &outbound.asked_at {
        None => since(&call.created_at, STRANDED_AFTER)
            .map(|()| "not dialled: the server that queued it stopped first; place it again"),
        Some(asked) => since(asked, rung_out).map(|()| "Twilio never confirmed the call"),
    }
}

impl TwilioDialer {
    /// Ends failed the stranded calls created from `from_ms` to `to_ms`,
    /// and brings up to date from Twilio those whose final status is
    /// overdue, read a page at a time, until `stopping` is set (checked
    /// between calls, so none is left ended and not settled); how many it
    /// ended. An error (a page not read, a call not ended, Twilio not
    /// read) is returned once the rest is done, so that the window is
    /// swept again.
    pub async fn sweep_calls(
        &self,
        from_ms: u64,
        to_ms: u64,
        stopping: &AtomicBool,
    ) -> Result<usize, SweepError> {
        let mut ended = 0;
        let mut failed = None;
        let mut from = from_ms;
        loop {
            let calls = self.store().calls_between(from, to_ms, PAGE).await?;
            let now = unix_ms();
            for call in &calls {
                if stopping.load(Ordering::Acquire) {
                    return Ok(ended);
                }
                if let Some(why) = stranded(call, now, self.rung_out()) {
                    match self.end_unplaced(call, why, now).await {
                        Ok(true) => ended += 1,
                        Ok(false) => {}
                        Err(err) => {
                            tracing::warn!(call_id = call.call_id, error = %err, "cannot end a stranded call");
                            failed = Some(err.into());
                        }
                    }
                } else if let Some(sid) = overdue(call, now, self.rung_out()) {
                    match self.check_status(call, sid).await {
                        Ok(StatusChecked::Ended(_)) => ended += 1,
                        Ok(StatusChecked::Unchanged | StatusChecked::Unknown) => {}
                        Err(err) => {
                            tracing::warn!(call_id = call.call_id, error = %err, "cannot bring a placed call's status up to date");
                            failed = Some(err);
                        }
                    }
                }
            }
            // The next page starts at the last one's last millisecond (its
            // calls read again, already settled), or one past it when the
            // page began there, so every step moves on.
            let last = calls.last().and_then(|c| parse_rfc3339(&c.created_at));
            match last {
                Some(last) if last < to_ms => from = if last > from { last } else { last + 1 },
                _ => return failed.map_or(Ok(ended), Err),
            }
        }
    }

    /// Fails `call`, read as stranded, unless it moved on since (a SID, a
    /// new request, a status); true when this ended it.
    async fn end_unplaced(
        &self,
        call: &CallRecord,
        why: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let change = CallChange::Unplaced {
            error: why.to_owned(),
            at_ms: now_ms,
            note: RequestNote::of_call(call),
        };
        let Some(after) = self.store().update_call(&call.call_id, &change).await? else {
            return Ok(false);
        };
        if !ended_by(&after, CallStatus::Failed, now_ms) {
            return Ok(false);
        }
        tracing::warn!(call_id = call.call_id, why, "stranded outbound call ended");
        self.settle(&after).await;
        Ok(true)
    }

    /// Sweeps the calls created a day back at start, then every
    /// [`SWEEP_PERIOD`] those created since the last sweep's window, until
    /// `stop` resolves. A window is swept once its calls' fate is decided
    /// ([`decided_after`]); one whose sweep failed is swept again.
    pub async fn run_call_sweeper(&self, stop: impl Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let mut from = unix_ms().saturating_sub(millis(FIRST_LOOK_BACK));
        loop {
            let to = unix_ms().saturating_sub(millis(decided_after(self.rung_out())));
            let stopping = AtomicBool::new(false);
            let sweep = self.sweep_calls(from, to, &stopping);
            tokio::pin!(sweep);
            let swept = tokio::select! {
                swept = &mut sweep => swept,
                () = &mut stop => {
                    // The call being ended is finished, settled.
                    stopping.store(true, Ordering::Release);
                    let _ = sweep.await;
                    return;
                }
            };
            match swept {
                Ok(ended) => {
                    if ended > 0 {
                        tracing::info!(ended, "stranded or overdue outbound calls ended");
                    }
                    from = to.max(from);
                }
                Err(err) => {
                    tracing::warn!(error = %err, "outbound calls not all swept; tried again")
                }
            }
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(SWEEP_PERIOD) => {}
            }
        }
    }
}

/// How old a call is once its fate is decided: past [`STRANDED_AFTER`],
/// and past `rung_out` after a request `POST /api/calls`'s dial loop sends
/// within its first few minutes.
fn decided_after(rung_out: Duration) -> Duration {
    STRANDED_AFTER.max(rung_out + Duration::from_secs(300))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::time::rfc3339;
    use crate::store::{CampaignAttempt, OutboundCall, Segment};

    const MIN: u64 = 60_000;

    fn queued(created_ms: u64, asked_ms: Option<u64>) -> CallRecord {
        let mut call = CallRecord::pending(
            "c1",
            "twilio",
            Segment::default(),
            Default::default(),
            created_ms,
        );
        call.status = CallStatus::Queued;
        call.direction = Some(CallDirection::Outbound);
        call.outbound = Some(OutboundCall {
            asked_at: asked_ms.map(rfc3339),
            ..OutboundCall::default()
        });
        call
    }

    #[test]
    fn a_queued_api_call_is_stranded_only_once_nothing_can_still_dial_or_ring_it() {
        let rung_out = Duration::from_secs(150);
        let t0 = 1_700_000_000_000;
        // Never asked: stranded after ten minutes.
        assert_eq!(stranded(&queued(t0, None), t0 + 9 * MIN, rung_out), None);
        assert!(
            stranded(&queued(t0, None), t0 + 10 * MIN, rung_out)
                .is_some_and(|why| why.starts_with("not dialled"))
        );
        // Asked: once it would have rung out after the request.
        let asked = queued(t0, Some(t0 + 9 * MIN));
        assert_eq!(stranded(&asked, t0 + 11 * MIN, rung_out), None);
        assert_eq!(
            stranded(&asked, t0 + 9 * MIN + 150_000, rung_out),
            Some("Twilio never confirmed the call")
        );
        // Twilio has it, it moved on, or a campaign owns it: not stranded.
        let late = t0 + 60 * MIN;
        let mut placed = queued(t0, Some(t0));
        if let Some(o) = placed.outbound.as_mut() {
            o.twilio_sid = Some("CA1".into());
        }
        assert_eq!(stranded(&placed, late, rung_out), None);
        let mut ringing = queued(t0, None);
        ringing.status = CallStatus::Ringing;
        assert_eq!(stranded(&ringing, late, rung_out), None);
        let mut campaign = queued(t0, None);
        if let Some(o) = campaign.outbound.as_mut() {
            o.campaign = Some(CampaignAttempt {
                campaign_id: "k".into(),
                entry: 0,
                attempt: 1,
            });
        }
        assert_eq!(stranded(&campaign, late, rung_out), None);
        let mut inbound = queued(t0, None);
        inbound.direction = Some(CallDirection::Inbound);
        assert_eq!(stranded(&inbound, late, rung_out), None);
    }
}
