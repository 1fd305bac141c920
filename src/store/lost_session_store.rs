//! [`LostSessionStore`]: checks of calls whose session may be lost (their
//! server died mid-call): outbound calls' final statuses and sessions'
//! leases, by due time, claimed one sweeper at a time.
//!
//! A call's lease is one check (`{call id}\nlease`) however many writers
//! the call has (a reconnect starts a second one): each writer keeps a
//! hold of its own on it ([`LeaseHold`], in `{calls:lost_sessions}:lease:{call
//! id}`), and the check is due when the last hold is, so that the first
//! writer to finish lets go of its own hold only. A hold carries the
//! renewal its writer made, on its own clock: the call's end if every
//! hold falls due, whatever grace the sweeping process has and however
//! often the check was claimed.

use async_trait::async_trait;

use super::error::StoreError;

/// A call whose session may be lost (its server died mid-call), to be
/// checked once it is due and ended then (`session_lost`) if nobody ended
/// it. Two sources note one ([`LostSessionSource`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostSessionCheck {
    /// The call.
    pub call_id: String,
    /// For a final status, its time (Unix ms): the call is ended as of
    /// then. For a lease, when it was due, as the claim found it (0 when
    /// not claimed): its holds say when the call ends (a lease an older
    /// build noted, without holds, is ended a grace before).
    pub at_ms: u64,
    /// Who noted it.
    pub source: LostSessionSource,
}

/// Who noted a [`LostSessionCheck`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostSessionSource {
    /// An outbound call's final status came for a started call nobody
    /// ended, with no session for it on the server that heard it.
    FinalStatus,
    /// A session's lease: one check per call, its due time pushed on while
    /// any of its writers runs (each with a [`LeaseHold`]), forgotten once
    /// the last hold is; one left to fall due belongs to sessions whose
    /// process stopped.
    Lease,
}

impl LostSessionCheck {
    /// A check noted by a final status at `at_ms`.
    pub fn final_status(call_id: &str, at_ms: u64) -> Self {
        LostSessionCheck {
            call_id: call_id.to_owned(),
            at_ms,
            source: LostSessionSource::FinalStatus,
        }
    }

    /// `call_id`'s session lease.
    pub fn lease(call_id: &str) -> Self {
        LostSessionCheck {
            call_id: call_id.to_owned(),
            at_ms: 0,
            source: LostSessionSource::Lease,
        }
    }

    /// As a member of the pending set: `{call id}\n{at_ms}` for a final
    /// status, `{call id}\nlease` for a lease (one member per call, so a
    /// renewal replaces the one before it, however late either lands; a
    /// final status's member ends in digits, so the two cannot be
    /// confused).
    pub(crate) fn member(&self) -> String {
        match self.source {
            LostSessionSource::FinalStatus => format!("{}\n{}", self.call_id, self.at_ms),
            LostSessionSource::Lease => format!("{}\n{LEASE_SUFFIX}", self.call_id),
        }
    }

    /// From a member of the pending set and its score (its due time);
    /// `None` when it is not one.
    pub(crate) fn from_member(member: &str, due_ms: u64) -> Option<Self> {
        let (call_id, last) = member.rsplit_once('\n')?;
        if last == LEASE_SUFFIX {
            return Some(LostSessionCheck {
                call_id: call_id.to_owned(),
                at_ms: due_ms,
                source: LostSessionSource::Lease,
            });
        }
        Some(LostSessionCheck::final_status(call_id, last.parse().ok()?))
    }
}

/// The last line of a lease's member.
const LEASE_SUFFIX: &str = "lease";

/// One writer's hold on its call's session lease, as the writer last
/// renewed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHold {
    /// The writer's own id (random, one per writer): what tells two
    /// writers of one call apart.
    pub holder: String,
    /// When the writer renewed it (Unix ms, on its own clock): the call
    /// is ended as of the latest renewal of its holds.
    pub renewed_ms: u64,
    /// When it falls due unrenewed (the renewal plus the writer's grace).
    pub due_ms: u64,
}

impl LeaseHold {
    /// As stored, the value of its holder's field: `{renewed ms}:{due ms}`.
    pub(crate) fn value(&self) -> String {
        format!("{}:{}", self.renewed_ms, self.due_ms)
    }

    /// From its holder's field and value; `None` when the value is not one.
    pub(crate) fn from_field(holder: &str, value: &str) -> Option<Self> {
        let (renewed, due) = value.split_once(':')?;
        Some(LeaseHold {
            holder: holder.to_owned(),
            renewed_ms: renewed.parse().ok()?,
            due_ms: due.parse().ok()?,
        })
    }
}

/// How long a call's holds are kept past the last renewal's due time, in
/// case its check is gone without them (an older build's sweeper forgets
/// the check alone): longer than any sweeper takes to end the call.
pub(crate) const HOLDS_KEPT_MS: u64 = 7 * 24 * 3600 * 1000;

/// Checks of calls whose session may be lost (see [`LostSessionCheck`]),
/// by due time, in the store so that a server that restarts, or another
/// server, does them. Claimed under a lease: of two sweepers, one does a
/// check; one that dies doing it leaves it to be claimed again.
#[async_trait]
pub trait LostSessionStore: Send + Sync {
    /// Notes `check`, due at `due_ms` (a check noted already keeps its due
    /// time).
    async fn note_lost_session(
        &self,
        check: &LostSessionCheck,
        due_ms: u64,
    ) -> Result<(), StoreError>;

    /// Up to `max` checks due at `now_ms`, oldest first, each leased until
    /// `now_ms + lease_ms`: no one else claims it before, and one not
    /// [done](Self::lost_session_checked) by then is claimed again.
    async fn claim_lost_sessions(
        &self,
        now_ms: u64,
        lease_ms: u64,
        max: usize,
    ) -> Result<Vec<LostSessionCheck>, StoreError>;

    /// When the next check is due (a leased one: when its lease ends), if
    /// any is noted.
    async fn next_lost_session_due(&self) -> Result<Option<u64>, StoreError>;

    /// `check` is done: forgotten (a lease's with its holds).
    async fn lost_session_checked(&self, check: &LostSessionCheck) -> Result<(), StoreError>;

    /// Renews `hold` on `call_id`'s session lease; the lease is then due
    /// when the latest of its holds is. With `only_held`, only if that hold
    /// is still noted (a writer that left its end in the turn spool keeps
    /// its hold until the replayer forgets it); true when the hold is
    /// noted after it.
    async fn renew_lease(
        &self,
        call_id: &str,
        hold: &LeaseHold,
        only_held: bool,
    ) -> Result<bool, StoreError>;

    /// Forgets `holder`'s hold on `call_id`'s lease: the lease goes with
    /// its last hold, and is due when the latest of the others is. With no
    /// holder (a writer of an older build, which kept no hold), the lease
    /// goes only if no hold is left.
    async fn forget_lease(&self, call_id: &str, holder: Option<&str>) -> Result<(), StoreError>;

    /// The holds on `call_id`'s lease, in no order (none for a lease an
    /// older build noted).
    async fn lease_holds(&self, call_id: &str) -> Result<Vec<LeaseHold>, StoreError>;

    /// When `check` is due (its lease's end, if claimed); `None` when it is
    /// not noted.
    async fn lost_session_due(&self, check: &LostSessionCheck) -> Result<Option<u64>, StoreError>;
}
