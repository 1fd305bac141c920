//! [`RealTimeBudget`]: the caller audio a stream may deliver against the
//! time it has had (sans-IO: time is passed in).
//!
//! A far end sending audio faster than real time would make the server
//! decode, queue and process it faster than real time: memory and CPU
//! without bound from one socket. Audio is admitted up to real time since
//! the stream's first audio plus [`AHEAD_ALLOWANCE`] (network jitter
//! delivers a little in bursts); beyond it, it is dropped (and the
//! transport counts it as `media_ahead_of_real_time`).

use std::time::Duration;

/// How far ahead of real time a stream's caller audio may run; beyond it,
/// media is dropped.
pub const AHEAD_ALLOWANCE: Duration = Duration::from_secs(2);

/// The most head start a stream is owed: a session that took longer to
/// start than this (a store timing out several times) loses the oldest
/// audio rather than letting any amount in at once.
pub(crate) const MAX_HEAD_START: Duration = Duration::from_secs(10);

/// The caller audio a stream has sent against the time it has had.
#[derive(Debug, Default)]
pub(crate) struct RealTimeBudget {
    first_at: Option<Duration>,
    admitted: Duration,
    head_start: Duration,
}

impl RealTimeBudget {
    /// Whether `audio` more, arriving at `now`, stays within real time
    /// (since the first audio) plus the allowance; counts it if so.
    pub(crate) fn admit(&mut self, now: Duration, audio: Duration) -> bool {
        let total = self.admitted + audio;
        if total > self.allowed(now) {
            return false;
        }
        self.admitted = total;
        true
    }

    /// Counts `waited` more of real time before the first audio read: a
    /// stream that sends from its start while nobody reads it (the session
    /// was starting) has a backlog that long, not a flood.
    pub(crate) fn set_head_start(&mut self, waited: Duration) {
        self.head_start = waited.min(MAX_HEAD_START);
    }

    /// Whether the stream has used up its allowance at `now`: any more
    /// audio would be dropped.
    pub(crate) fn exhausted(&mut self, now: Duration) -> bool {
        let allowed = self.allowed(now);
        self.admitted >= allowed
    }

    fn allowed(&mut self, now: Duration) -> Duration {
        let first_at = *self.first_at.get_or_insert(now);
        now.saturating_sub(first_at) + AHEAD_ALLOWANCE + self.head_start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: Duration = Duration::from_millis(20);

    #[test]
    fn audio_at_real_time_is_admitted_and_a_flood_beyond_the_allowance_is_not() {
        let mut budget = RealTimeBudget::default();
        // Real time for 10 s: every frame admitted.
        for n in 0..500u32 {
            assert!(budget.admit(FRAME * n, FRAME), "frame {n}");
        }
        // Then a burst at one instant: the allowance, and no more.
        let now = FRAME * 500;
        let burst = (0..1_000).take_while(|_| budget.admit(now, FRAME)).count();
        assert_eq!(burst, 100, "2 s of 20 ms frames");
        assert!(budget.exhausted(now));
        // Time frees room again.
        assert!(!budget.exhausted(now + FRAME));
        assert!(budget.admit(now + FRAME, FRAME));
    }

    #[test]
    fn audio_sent_before_the_first_read_is_owed_its_time() {
        // Read 3 s after the stream started: its 3 s of backlog and the
        // allowance come in at once, and no more.
        let mut budget = RealTimeBudget::default();
        budget.set_head_start(Duration::from_secs(3));
        let backlog = (0..1_000)
            .take_while(|_| budget.admit(Duration::ZERO, FRAME))
            .count();
        assert_eq!(backlog, 250, "5 s of 20 ms frames");
        let mut unread = RealTimeBudget::default();
        let cut = (0..1_000)
            .take_while(|_| unread.admit(Duration::ZERO, FRAME))
            .count();
        assert_eq!(cut, 100, "without the head start, the allowance only");
        let mut long = RealTimeBudget::default();
        long.set_head_start(Duration::from_secs(3_600));
        let capped = (0..10_000)
            .take_while(|_| long.admit(Duration::ZERO, FRAME))
            .count();
        assert_eq!(capped, 600, "10 s of head start and the allowance");
    }
}
