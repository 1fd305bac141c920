//! Placed calls whose final status never came: asked of Twilio.
//!
//! A call's final status reaches voxpipe only in its status callback, and
//! Twilio does not retry a callback whose URL asks no retries: one that
//! found the store down (answered 503), the server stopped, or the network
//! cut is gone. A call that never connected has nothing else to end it:
//! its record would stay `ringing`, its number held, its after-call hooks
//! (the `call.completed` webhook) never run, and a campaign's entry would
//! end `failed` after its call lease, whatever its retry policy says of a
//! call nobody answered.
//!
//! So the sweep that ends stranded calls ([`super::stranded`]) also looks
//! at every placed call once its fate is decided: one Twilio took (a SID),
//! not final, and never started here (a session's end, or its lease, ends
//! a call that started) is read from Twilio (`GET …/Calls/{CallSid}.json`)
//! and what Twilio says is applied as its callback would be. A final
//! status ends the call and settles it, once: only the write that ended
//! it settles it, so a callback arriving at the same time, or two servers
//! sweeping, settle it once. `in-progress` marks it answered; `queued` or
//! `ringing` (a call held in Twilio's queue) leaves it to its callback. A
//! read that fails has the window swept again.

use std::time::Duration;

use crate::store::time::{parse_rfc3339, unix_ms};
use crate::store::{CallChange, CallDirection, CallRecord, CallStatus, TwilioReport};

use super::TwilioDialer;
use super::settle::ended_by;
use super::status::call_status;

/// Why a sweep left calls to the next one.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// Twilio could not be read.
    #[error("cannot read the call from Twilio: {0}")]
    Twilio(#[from] crate::transport::twilio::HangUpError),
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// What a status check did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StatusChecked {
    /// Twilio's final status ended the call here (and settled it).
    Ended(CallStatus),
    /// Twilio has it live, or someone else moved the record on meanwhile.
    Unchanged,
    /// Twilio has no such call.
    Unknown,
}

/// The SID of `call` when its final status is overdue at `now_ms`: an
/// outbound call Twilio took, not final, never started, and asked of
/// Twilio at least `rung_out` ago (it would have rung out by then).
pub(super) fn overdue(call: &CallRecord, now_ms: u64, rung_out: Duration) -> Option<&str> {
    let outbound = call.outbound.as_ref()?;
    let sid = outbound.twilio_sid.as_deref()?;
    if call.direction != Some(CallDirection::Outbound)
        || call.status.is_final()
        || call.started_at.is_some()
    {
        return None;
    }
    let asked = [&outbound.dialled_at, &outbound.asked_at]
        .into_iter()
        .flatten()
        .find_map(|at| parse_rfc3339(at))
        .or_else(|| parse_rfc3339(&call.created_at))?;
    let wait = u64::try_from(rung_out.as_millis()).unwrap_or(u64::MAX);
    (now_ms.saturating_sub(asked) >= wait).then_some(sid)
}

impl TwilioDialer {
    /// Reads `call` (whose SID is `sid`) from Twilio and applies what
    /// Twilio says of it, settling it when that ends it.
    pub(super) async fn check_status(
        &self,
        call: &CallRecord,
        sid: &str,
    ) -> Result<StatusChecked, SweepError> {
        let Some(twilio) = self.fetch(sid).await? else {
            tracing::warn!(
                call_id = call.call_id,
                "Twilio has no call with the record's SID: left as it is"
            );
            return Ok(StatusChecked::Unknown);
        };
        let Some(status) = call_status(&twilio.status) else {
            tracing::warn!(
                call_id = call.call_id,
                status = twilio.status.chars().take(32).collect::<String>(),
                "Twilio gave a status not known here: left as it is"
            );
            return Ok(StatusChecked::Unchanged);
        };
        if !status.is_final() && status != CallStatus::Active {
            tracing::info!(
                call_id = call.call_id,
                status = status.as_str(),
                "a placed call is still waiting at Twilio"
            );
            return Ok(StatusChecked::Unchanged);
        }
        let at_ms = unix_ms();
        let report = TwilioReport {
            status: Some(status),
            twilio_sid: Some(sid.to_owned()),
            answered_by: twilio.answered_by,
            call_duration_secs: twilio.duration,
            at_ms,
            ..TwilioReport::default()
        };
        let change = CallChange::TwilioReported(report);
        let Some(after) = self.store().update_call(&call.call_id, &change).await? else {
            return Ok(StatusChecked::Unchanged);
        };
        if !status.is_final() || !ended_by(&after, status, at_ms) {
            return Ok(StatusChecked::Unchanged);
        }
        tracing::warn!(
            call_id = call.call_id,
            status = status.as_str(),
            "a placed call's final status callback never came: taken from Twilio"
        );
        self.settle(&after).await;
        Ok(StatusChecked::Ended(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::time::rfc3339;
    use crate::store::{OutboundCall, Segment};

    const MIN: u64 = 60_000;

    fn placed(status: CallStatus, dialled_ms: u64) -> CallRecord {
        let mut call = CallRecord::pending(
            "c1",
            "twilio",
            Segment::default(),
            Default::default(),
            dialled_ms,
        );
        call.status = status;
        call.direction = Some(CallDirection::Outbound);
        call.outbound = Some(OutboundCall {
            twilio_sid: Some("CA1".into()),
            dialled_at: Some(rfc3339(dialled_ms)),
            ..OutboundCall::default()
        });
        call
    }

    #[test]
    fn a_placed_call_is_overdue_once_it_would_have_rung_out_unless_final_or_started() {
        let rung_out = Duration::from_secs(150);
        let t0 = 1_700_000_000_000;
        let ringing = placed(CallStatus::Ringing, t0);
        assert_eq!(overdue(&ringing, t0 + 2 * MIN, rung_out), None);
        assert_eq!(overdue(&ringing, t0 + 150_000, rung_out), Some("CA1"));
        // Answered but its stream never started: overdue too.
        let answered = placed(CallStatus::Active, t0);
        assert_eq!(overdue(&answered, t0 + 10 * MIN, rung_out), Some("CA1"));

        let late = t0 + 60 * MIN;
        let done = placed(CallStatus::NoAnswer, t0);
        assert_eq!(overdue(&done, late, rung_out), None);
        let mut started = placed(CallStatus::Active, t0);
        started.started_at = Some(rfc3339(t0 + MIN));
        assert_eq!(overdue(&started, late, rung_out), None);
        let mut unplaced = placed(CallStatus::Queued, t0);
        if let Some(o) = unplaced.outbound.as_mut() {
            o.twilio_sid = None;
        }
        assert_eq!(overdue(&unplaced, late, rung_out), None);
        let mut inbound = placed(CallStatus::Ringing, t0);
        inbound.direction = Some(CallDirection::Inbound);
        assert_eq!(overdue(&inbound, late, rung_out), None);
        // Dialled later than it was created: counted from the dial.
        let mut dialled_late = placed(CallStatus::Ringing, t0 + 8 * MIN);
        dialled_late.created_at = rfc3339(t0);
        assert_eq!(overdue(&dialled_late, t0 + 9 * MIN, rung_out), None);
    }
}
