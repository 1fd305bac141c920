//! How long an accepted `POST /api/calls` keeps trying to place its call
//! while Twilio rate limits or is down, or the store fails (sans-IO).
//!
//! The API answered 202 `queued`: giving up after a few seconds of outage
//! would fail a call a minute's blip delayed. So the dial is tried again,
//! with a capped backoff (for a 429, Twilio's `Retry-After` when longer),
//! until [`API_DIAL_DEADLINE`], safely before the stranded-call sweep
//! would end the call as one a stopped server left. Retrying never dials twice: each
//! try goes through the dialler's compare-and-set on the record's request
//! note, and an answer that may mean Twilio took the call stops the loop.

use std::time::{Duration, Instant};

use super::dialer::DialError;
use super::stranded::STRANDED_AFTER;

/// How long after its request an API call is still tried.
pub const API_DIAL_DEADLINE: Duration = Duration::from_secs(STRANDED_AFTER.as_secs() - 120);
const _: () = assert!(API_DIAL_DEADLINE.as_secs() + 60 <= STRANDED_AFTER.as_secs());

/// The first wait after an outage; doubled for each next one.
const FIRST_WAIT: Duration = Duration::from_secs(1);
/// The longest wait between two tries.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// What to do after a try that did not place the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialStep {
    /// The dialler settled the call (refused, canceled, held, or perhaps
    /// placed): nothing more to do.
    Done,
    /// Try again after this long.
    Wait(Duration),
    /// Out of time: end the call failed, for this reason.
    GiveUp(String),
}

/// The retry schedule of one API call.
#[derive(Debug, Clone)]
pub struct DialRetry {
    deadline: Instant,
    backoff: Duration,
}

impl DialRetry {
    /// The schedule of a call first tried at `started`.
    pub fn new(started: Instant) -> Self {
        DialRetry {
            deadline: started + API_DIAL_DEADLINE,
            backoff: FIRST_WAIT,
        }
    }

    /// What to do after a try ended in `error` at `now`.
    pub fn after(&mut self, error: &DialError, now: Instant) -> DialStep {
        let (wait, why) = match error {
            DialError::Refused { .. }
            | DialError::NumberLimited { .. }
            | DialError::Settled { .. }
            | DialError::Uncertain(_)
            | DialError::AlreadyAsked(_) => return DialStep::Done,
            // Backed off too: a 429 without `Retry-After` would otherwise
            // bring each queued call back every second, and keep the
            // account limited.
            DialError::RateLimited { retry_after } => (
                (*retry_after).max(self.next_backoff()).min(MAX_WAIT),
                "Twilio kept rate limiting",
            ),
            DialError::Unavailable(_) => (self.next_backoff(), "Twilio could not be reached"),
            DialError::Store(err) if err.is_transient() => {
                (self.next_backoff(), "the call store was unavailable")
            }
            DialError::Store(err) => {
                return DialStep::GiveUp(format!("not placed: the call store failed: {err}"));
            }
        };
        if now + wait > self.deadline {
            return DialStep::GiveUp(format!(
                "not placed: {why} for {} minutes",
                API_DIAL_DEADLINE.as_secs() / 60
            ));
        }
        DialStep::Wait(wait)
    }

    fn next_backoff(&mut self) -> Duration {
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_WAIT);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[test]
    fn outages_are_waited_out_with_a_capped_backoff_until_the_deadline() {
        let start = Instant::now();
        let mut retry = DialRetry::new(start);
        let mut now = start;
        let mut waits = Vec::new();
        let reason = loop {
            let error = if waits.len() % 2 == 0 {
                DialError::Unavailable("connection refused".into())
            } else {
                DialError::Store(StoreError::Timeout(Duration::from_secs(1)))
            };
            match retry.after(&error, now) {
                DialStep::Wait(wait) => {
                    waits.push(wait);
                    now += wait;
                }
                DialStep::GiveUp(reason) => break reason,
                DialStep::Done => panic!("an outage is not final"),
            }
        };
        assert_eq!(
            waits[..6].iter().map(Duration::as_secs).collect::<Vec<_>>(),
            [1, 2, 4, 8, 16, 30]
        );
        assert!(waits.iter().all(|w| *w <= MAX_WAIT));
        // Tried for nearly the whole deadline, never past it.
        let tried = now - start;
        assert!(tried <= API_DIAL_DEADLINE, "{tried:?}");
        assert!(tried + MAX_WAIT >= API_DIAL_DEADLINE, "{tried:?}");
        assert!(API_DIAL_DEADLINE < STRANDED_AFTER);
        assert_eq!(
            reason,
            "not placed: the call store was unavailable for 8 minutes"
        );
    }

    #[test]
    fn rate_limits_wait_their_retry_after_and_final_answers_stop() {
        let start = Instant::now();
        let mut retry = DialRetry::new(start);
        let limited = |secs| DialError::RateLimited {
            retry_after: Duration::from_secs(secs),
        };
        assert_eq!(
            retry.after(&limited(1), start),
            DialStep::Wait(Duration::from_secs(1))
        );
        assert_eq!(retry.after(&limited(3600), start), DialStep::Wait(MAX_WAIT));
        // Short or missing Retry-After values back off all the same.
        assert_eq!(
            retry.after(&limited(1), start),
            DialStep::Wait(Duration::from_secs(4))
        );
        assert_eq!(
            retry.after(&limited(1), start + API_DIAL_DEADLINE),
            DialStep::GiveUp("not placed: Twilio kept rate limiting for 8 minutes".into())
        );
        for done in [
            DialError::Uncertain("timed out".into()),
            DialError::AlreadyAsked("elsewhere".into()),
            DialError::NumberLimited {
                phone_hash: "h".into(),
            },
        ] {
            assert_eq!(retry.after(&done, start), DialStep::Done);
        }
    }
}
