//! Wake-ups on a grid shared by every call, so that one thread wake-up
//! serves many calls.
//!
//! A live call wakes its task for two timed things: reading its socket
//! (every `read_interval_secs`) and topping up the far end's playback. Each
//! call's own instants are uneven against every other call's, so at a few
//! dozen calls nearly every timer fires alone: a worker thread parks and is
//! woken (a context switch, an epoll round trip) for one call's few
//! microseconds of work. That per-wake-up cost was measured as most of a
//! call's CPU at 20 calls (2.25 to 2.7 ms per call-second against 0.8 to
//! 0.85 at 1,000, where threads never park). Moving each deadline onto a grid of
//! [`GRAIN`] makes the timers of calls that land in the same slot fire
//! together, and a thread wakes once for all of them.
//!
//! A deadline only moves where that costs nothing: a read moves to the
//! nearest grid instant (within half a grain, either way; reads in a
//! 40 ms rhythm do not care), and a playback top-up moves later only as
//! far as the audio's own time allows, so sent-ahead audio still leaves
//! ahead and audio paced at its time is never made late.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

/// The grid's spacing.
pub(crate) const GRAIN: Duration = Duration::from_millis(10);

/// The grid's origin: the first instant asked about in this process.
fn origin(near: Instant) -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(|| near)
}

/// The grid instant nearest `deadline`.
pub(crate) fn nearest(deadline: Instant) -> Instant {
    let grain = grain_nanos();
    slot_instant(deadline, |since| (since + grain / 2).div_euclid(grain))
}

/// The first grid instant at or after `deadline`, if it is no later than
/// `latest`; otherwise `deadline` itself.
pub(crate) fn later_within(deadline: Instant, latest: Instant) -> Instant {
    let grain = grain_nanos();
    let slot = slot_instant(deadline, |since| {
        since.div_euclid(grain) + i128::from(since.rem_euclid(grain) != 0)
    });
    if slot <= latest { slot } else { deadline }
}

fn grain_nanos() -> i128 {
    GRAIN.as_nanos() as i128
}

/// The grid instant `slot_of` picks for `deadline`, given its signed
/// distance from the origin in nanoseconds; `deadline` itself should that
/// not be an instant (out of range).
fn slot_instant(deadline: Instant, slot_of: impl Fn(i128) -> i128) -> Instant {
    let origin = origin(deadline);
    let since = if deadline >= origin {
        (deadline - origin).as_nanos() as i128
    } else {
        -((origin - deadline).as_nanos() as i128)
    };
    let at = slot_of(since) * grain_nanos();
    let moved = u64::try_from(at.unsigned_abs())
        .ok()
        .map(Duration::from_nanos);
    let slot = if at >= 0 {
        moved.and_then(|d| origin.checked_add(d))
    } else {
        moved.and_then(|d| origin.checked_sub(d))
    };
    slot.unwrap_or(deadline)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// How far apart `a` and `b` are, either way.
    fn apart(a: Instant, b: Instant) -> Duration {
        if b >= a { b - a } else { a - b }
    }

    /// Whole grains from `a` to `b`.
    fn on_grid(a: Instant, b: Instant) -> bool {
        apart(a, b).as_nanos().is_multiple_of(GRAIN.as_nanos())
    }

    #[test]
    fn a_read_moves_to_the_nearest_grid_instant_within_half_a_grain() {
        let start = Instant::now();
        let first = nearest(start);
        for step in 0..40 {
            let deadline = start + ms(3) * step + Duration::from_micros(u64::from(step) * 137);
            let moved = nearest(deadline);
            assert!(on_grid(first, moved), "{step}");
            let apart = apart(moved, deadline);
            assert!(apart <= GRAIN / 2, "{step}: {apart:?}");
        }
    }

    #[test]
    fn a_top_up_moves_later_onto_the_grid_but_never_past_its_latest() {
        let start = Instant::now();
        let anchor = nearest(start);
        for step in 0..40 {
            let deadline = start + ms(7) * step + Duration::from_micros(u64::from(step) * 211);
            // Room for a grid instant: it lands on one, no earlier.
            let moved = later_within(deadline, deadline + GRAIN);
            assert!(on_grid(anchor, moved), "{step}");
            assert!(moved >= deadline && moved - deadline < GRAIN, "{step}");
            // No room: the deadline stays as it is.
            let latest = moved - Duration::from_nanos(1);
            if latest >= deadline {
                assert_eq!(later_within(deadline, latest), deadline, "{step}");
            }
        }
    }

    #[test]
    fn two_deadlines_in_one_grain_share_a_wake_up() {
        let start = nearest(Instant::now());
        let a = start + ms(1);
        let b = start + ms(9);
        assert_eq!(later_within(a, a + ms(100)), later_within(b, b + ms(100)));
        assert_eq!(nearest(start + ms(2)), nearest(start - ms(4)));
    }
}
