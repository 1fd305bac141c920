//! The session clock: "now" as time since the session started.
//!
//! Live sessions (Twilio, WebRTC) run on the wall clock. A session over a
//! file runs on its audio clock: the file transport advances it as it pushes
//! audio, so a file processed faster than real time still yields events and
//! output placed at the times they would have had live. Processors read the
//! time through their context and never from `Instant::now()`, which keeps
//! them testable with any clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Time since the session started; cheap to clone and share.
#[derive(Debug, Clone)]
pub struct SessionClock {
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    Wall(tokio::time::Instant),
    Audio(Arc<AtomicU64>),
}

impl SessionClock {
    /// A clock on tokio's time, starting now. Under tokio's paused test time
    /// it advances with `tokio::time::advance`.
    pub fn wall() -> Self {
        SessionClock {
            source: Source::Wall(tokio::time::Instant::now()),
        }
    }

    /// A clock that only moves when [`SessionClock::advance_to`] is called.
    pub fn audio() -> Self {
        SessionClock {
            source: Source::Audio(Arc::new(AtomicU64::new(0))),
        }
    }

    /// Time since the session started.
    pub fn now(&self) -> Duration {
        match &self.source {
            Source::Wall(start) => start.elapsed(),
            Source::Audio(micros) => Duration::from_micros(micros.load(Ordering::Acquire)),
        }
    }

    /// Moves an audio clock forward to `t` (never backward). No effect on a
    /// wall clock.
    pub fn advance_to(&self, t: Duration) {
        if let Source::Audio(micros) = &self.source {
            let t = u64::try_from(t.as_micros()).unwrap_or(u64::MAX);
            micros.fetch_max(t, Ordering::AcqRel);
        }
    }

    /// True for a clock driven by audio rather than the wall.
    pub fn is_audio(&self) -> bool {
        matches!(self.source, Source::Audio(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_clock_moves_only_forward() {
        let clock = SessionClock::audio();
        assert_eq!(clock.now(), Duration::ZERO);
        clock.advance_to(Duration::from_millis(40));
        clock.advance_to(Duration::from_millis(20));
        assert_eq!(clock.now(), Duration::from_millis(40));
        assert!(clock.is_audio());
    }

    #[tokio::test(start_paused = true)]
    async fn wall_clock_follows_tokio_time() {
        let clock = SessionClock::wall();
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(clock.now(), Duration::from_millis(250));
        clock.advance_to(Duration::from_secs(9));
        assert_eq!(clock.now(), Duration::from_millis(250));
    }
}
