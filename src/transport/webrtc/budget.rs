//! [`MessageBudget`]: how many of a page's messages the server answers, so
//! a flood costs a bounded amount of work (sans-IO: time is passed in).
//!
//! Most messages need no budget: the reader takes them one at a time and
//! SCTP holds a fast page back, so a burst of typed text or keep-alives is
//! slowed, never dropped. What a message makes the server do beyond
//! reading it is bounded here: an `error-response` to a refused RTVI
//! message, a `client-message` request sent down the pipeline. A token
//! bucket: [`RATE`] a second on average, bursts of [`BURST`]; Pipecat's
//! clients send one per user action, nowhere near it. Over budget, the
//! message is dropped without an answer, and counted as skipped input.

use std::time::Duration;

/// Messages a second, on average.
pub(crate) const RATE: f64 = 50.0;

/// Messages at once.
pub(crate) const BURST: f64 = 100.0;

/// A page's message budget.
#[derive(Debug, Clone)]
pub(crate) struct MessageBudget {
    tokens: f64,
    last: Duration,
}

impl Default for MessageBudget {
    fn default() -> Self {
        MessageBudget {
            tokens: BURST,
            last: Duration::ZERO,
        }
    }
}

impl MessageBudget {
    /// Whether one more message, arriving at session time `now`, is
    /// within budget (and spends it).
    pub(crate) fn admit(&mut self, now: Duration) -> bool {
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * RATE).min(BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_a_flood_does_not_and_the_budget_refills() {
        let mut budget = MessageBudget::default();
        let at = Duration::from_secs(1);
        let admitted = (0..1_000).filter(|_| budget.admit(at)).count();
        assert_eq!(admitted, BURST as usize);
        // A second later, a second's worth again.
        let later = at + Duration::from_secs(1);
        let admitted = (0..1_000).filter(|_| budget.admit(later)).count();
        assert_eq!(admitted, RATE as usize);
        // One a second (a keep-alive) always passes.
        for s in 2..100 {
            assert!(budget.admit(later + Duration::from_secs(s)));
        }
    }
}
