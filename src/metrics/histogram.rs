//! A small log-linear latency histogram for percentiles.
//!
//! Values are nanoseconds. Below 16 ns every value has its own bucket; above,
//! each power of two is split into 8 buckets, so a reported percentile is
//! within 6.25% of the true value (the bucket's midpoint is reported). Counts
//! are `u32` and the bucket array is allocated on the first record, so an
//! idle histogram costs a few words: one exists per processor per session.

use std::time::Duration;

const LINEAR: u64 = 16;
const SUB_BUCKETS: u64 = 8;
const SUB_BITS: u32 = 3;
/// Largest tracked value: 2^37 ns, about 137 s; larger values land in the
/// last bucket.
const MAX_EXPONENT: u32 = 37;
const BUCKETS: usize = (LINEAR + (MAX_EXPONENT as u64 - 4) * SUB_BUCKETS) as usize;

/// Counts of durations in log-linear buckets.
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram {
    counts: Vec<u32>,
    total: u64,
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one value.
    pub fn record(&mut self, value: Duration) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS];
        }
        let ns = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        let index = bucket_of(ns).min(BUCKETS - 1);
        self.counts[index] = self.counts[index].saturating_add(1);
        self.total += 1;
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        if other.counts.is_empty() {
            return;
        }
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS];
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine = mine.saturating_add(*theirs);
        }
        self.total += other.total;
    }

    /// The value below which `q` (0 to 1) of the recorded values fall, or
    /// `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (index, count) in self.counts.iter().enumerate() {
            seen += u64::from(*count);
            if seen >= rank {
                return Some(Duration::from_nanos(midpoint_of(index)));
            }
        }
        Some(Duration::from_nanos(midpoint_of(BUCKETS - 1)))
    }
}

fn bucket_of(ns: u64) -> usize {
    if ns < LINEAR {
        return ns as usize;
    }
    let exponent = 63 - ns.leading_zeros(); // >= 4
    let sub = (ns >> (exponent - SUB_BITS)) & (SUB_BUCKETS - 1);
    (LINEAR + u64::from(exponent - 4) * SUB_BUCKETS + sub) as usize
}

fn midpoint_of(index: usize) -> u64 {
    let index = index as u64;
    if index < LINEAR {
        return index;
    }
    let exponent = (index - LINEAR) / SUB_BUCKETS + 4;
    let sub = (index - LINEAR) % SUB_BUCKETS;
    let width = 1u64 << (exponent - SUB_BITS as u64);
    (1u64 << exponent) + sub * width + width / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_the_bucket_precision() {
        let mut h = LatencyHistogram::new();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile(0.5).unwrap().as_nanos() as f64;
        let p99 = h.quantile(0.99).unwrap().as_nanos() as f64;
        assert!((p50 / 500_000.0 - 1.0).abs() < 0.07, "p50 {p50}");
        assert!((p99 / 990_000.0 - 1.0).abs() < 0.07, "p99 {p99}");
        assert_eq!(h.count(), 1000);
    }

    #[test]
    fn empty_has_no_quantile_and_merge_adds() {
        let mut a = LatencyHistogram::new();
        assert_eq!(a.quantile(0.5), None);
        let mut b = LatencyHistogram::new();
        b.record(Duration::from_nanos(3));
        b.record(Duration::from_secs(1000));
        a.merge(&b);
        assert_eq!(a.count(), 2);
        assert_eq!(a.quantile(0.0), Some(Duration::from_nanos(3)));
        assert!(a.quantile(1.0).unwrap() > Duration::from_secs(100));
    }

    #[test]
    fn buckets_are_monotonic() {
        let mut last = 0;
        for ns in [0u64, 5, 15, 16, 17, 31, 32, 100, 1_000, 1 << 20, 1 << 36] {
            let b = bucket_of(ns);
            assert!(b >= last);
            last = b;
            assert!(midpoint_of(b) <= ns.max(1) * 2);
        }
    }
}
