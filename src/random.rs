//! Unpredictable numbers without a random-number crate, for ids, RTP
//! starts and retry jitter (not for cryptography). std's `RandomState` is
//! seeded from the OS once per process and varied per instance; a counter
//! and the clock make two draws in the same instant differ as well.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// 64 unpredictable bits.
pub(crate) fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// 32 unpredictable bits.
pub(crate) fn random_u32() -> u32 {
    (random_u64() >> 32) as u32
}

/// A number in `0..1`, with 53 random bits.
pub(crate) fn unit_interval() -> f64 {
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_differ_and_stay_in_range() {
        assert_ne!(random_u64(), random_u64());
        for _ in 0..100 {
            assert!((0.0..1.0).contains(&unit_interval()));
        }
    }
}
