//! Where a call is in its life: [`CallStatus`] and its order.

use serde::{Deserialize, Serialize};

/// Where a call is in its life.
///
/// An inbound call (or a browser session, a file run) goes pending, active,
/// completed. An outbound call starts earlier, when it is asked for:
/// queued (not yet handed to Twilio), initiated (Twilio took it), ringing,
/// then active once answered (Twilio's `in-progress`), and ends in one of
/// the final statuses; a call that never connected ends busy, no-answer,
/// failed or canceled without ever being active.
///
/// Statuses are ordered by [`CallStatus::rank`]: a change never moves a call
/// to a lower rank, and the first final status stays (callbacks arrive out
/// of order and twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallStatus {
    /// Outbound: asked for, not yet handed to Twilio (waiting for its turn
    /// in a campaign, or for the dialler).
    Queued,
    /// Outbound: Twilio accepted the call.
    Initiated,
    /// Outbound: the callee's phone is ringing.
    Ringing,
    /// The session is set up; the pipeline has not started.
    Pending,
    /// The call is connected and (once its stream starts) the pipeline runs.
    Active,
    /// The call ended after it connected (for any reason).
    Completed,
    /// Outbound, final: the line was busy.
    Busy,
    /// Outbound, final: nobody answered within the ring timeout.
    NoAnswer,
    /// Outbound, final: the call could not be placed (a bad number, a
    /// refusal by Twilio, an error).
    Failed,
    /// Outbound, final: cancelled before it connected.
    Canceled,
}

impl CallStatus {
    /// Every status, in rank order.
    pub const ALL: [CallStatus; 10] = [
        CallStatus::Queued,
        CallStatus::Initiated,
        CallStatus::Ringing,
        CallStatus::Pending,
        CallStatus::Active,
        CallStatus::Completed,
        CallStatus::Busy,
        CallStatus::NoAnswer,
        CallStatus::Failed,
        CallStatus::Canceled,
    ];

    /// `queued`, `initiated`, `ringing`, `pending`, `active`, `completed`,
    /// `busy`, `no-answer`, `failed` or `canceled`.
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Queued => "queued",
            CallStatus::Initiated => "initiated",
            CallStatus::Ringing => "ringing",
            CallStatus::Pending => "pending",
            CallStatus::Active => "active",
            CallStatus::Completed => "completed",
            CallStatus::Busy => "busy",
            CallStatus::NoAnswer => "no-answer",
            CallStatus::Failed => "failed",
            CallStatus::Canceled => "canceled",
        }
    }

    /// How far along the call is: every final status ranks highest.
    pub fn rank(self) -> u8 {
        match self {
            CallStatus::Queued => 0,
            CallStatus::Initiated => 1,
            CallStatus::Ringing => 2,
            CallStatus::Pending => 3,
            CallStatus::Active => 4,
            CallStatus::Completed
            | CallStatus::Busy
            | CallStatus::NoAnswer
            | CallStatus::Failed
            | CallStatus::Canceled => 5,
        }
    }

    /// True for the statuses a call ends in.
    pub fn is_final(self) -> bool {
        self.rank() == 5
    }

    /// The status `next` moves a call at `self` to: `next` when it ranks
    /// higher, else `self` (a final status is never replaced).
    pub fn advanced_to(self, next: CallStatus) -> CallStatus {
        if next.rank() > self.rank() {
            next
        } else {
            self
        }
    }
}
