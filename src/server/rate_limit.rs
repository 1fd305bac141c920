//! [`RateLimiter`]: how many calls one client address may start, a token
//! bucket per address (sans-IO: the address and the time are passed in).
//!
//! Each address has a bucket of `burst` tokens refilled at `per_minute`;
//! an offer, a `/start` or an ICE configuration takes one, and a request
//! finding the bucket empty is refused with the time until the next token
//! (`429` and `Retry-After`). One address flooding the server empties its
//! own bucket and nobody else's: before this, 60 offers in 0.2 s from one
//! page took every session slot and the server answered 503 to everyone.
//!
//! IPv6 clients are counted per /64, the block one subscriber gets, so an
//! address hopping inside its own block gains nothing.
//!
//! The table is bounded (`[server] rate_limit_addresses`). A bucket that
//! has refilled is the same as no bucket, so when the table is full those
//! go first; if none has, the address seen longest ago is forgotten (it
//! gets a full bucket when it comes back, which costs at most one burst
//! per eviction). The full-table sweep is linear, 10 000 entries by
//! default, and happens only when the table is full: a few tens of
//! microseconds, rarer than the offers it protects against.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Whether a request may go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Allowed,
    /// Refused; a token will be there after this long.
    Limited {
        retry_after: Duration,
    },
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets by client address.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    /// Tokens per second; zero means no limit.
    rate: f64,
    burst: f64,
    capacity: usize,
    buckets: HashMap<IpAddr, Bucket>,
}

impl RateLimiter {
    /// `per_minute` requests a minute on average (0: unlimited), `burst`
    /// at once, remembering at most `capacity` addresses.
    pub(crate) fn new(per_minute: u32, burst: u32, capacity: usize) -> Self {
        RateLimiter {
            rate: f64::from(per_minute) / 60.0,
            burst: f64::from(burst.max(1)),
            capacity: capacity.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Takes a token for `addr` at `now`.
    pub(crate) fn check(&mut self, addr: IpAddr, now: Instant) -> Decision {
        if self.rate == 0.0 {
            return Decision::Allowed;
        }
        let key = client_key(addr);
        if !self.buckets.contains_key(&key) && self.buckets.len() >= self.capacity {
            self.make_room(now);
        }
        let (rate, burst) = (self.rate, self.burst);
        let bucket = self.buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Decision::Allowed
        } else {
            let wait = (1.0 - bucket.tokens) / rate;
            Decision::Limited {
                retry_after: Duration::from_secs_f64(wait),
            }
        }
    }

    /// Addresses remembered now.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.buckets.len()
    }

    fn make_room(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
            b.tokens + elapsed * rate < burst
        });
        if self.buckets.len() >= self.capacity {
            let oldest = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.updated)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.buckets.remove(&oldest);
            }
        }
    }
}

/// The address a client is counted under: IPv4 as it is, IPv6 by its /64
/// (an IPv4-mapped IPv6 address as the IPv4 one).
fn client_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::from(octets)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_flood_from_one_address_is_refused_while_another_is_served() {
        let mut limiter = RateLimiter::new(30, 10, 100);
        let t0 = Instant::now();
        let flooder = ip("203.0.113.9");
        // 60 offers in 0.2 s: the burst gets in, the rest are refused.
        let allowed = (0..60)
            .filter(|i| {
                let at = t0 + Duration::from_micros(i * 3_333);
                limiter.check(flooder, at) == Decision::Allowed
            })
            .count();
        assert_eq!(allowed, 10);
        assert_eq!(
            limiter.check(ip("198.51.100.1"), t0 + Duration::from_millis(200)),
            Decision::Allowed
        );
        // 30 a minute: one token every 2 s, and the refusal says so.
        match limiter.check(flooder, t0 + Duration::from_millis(200)) {
            Decision::Limited { retry_after } => {
                assert!(
                    retry_after > Duration::from_millis(1_500),
                    "{retry_after:?}"
                );
                assert!(retry_after <= Duration::from_secs(2), "{retry_after:?}");
            }
            Decision::Allowed => panic!("the flood goes on being refused"),
        }
        let later = t0 + Duration::from_millis(2_300);
        assert_eq!(limiter.check(flooder, later), Decision::Allowed);
        assert!(matches!(
            limiter.check(flooder, later),
            Decision::Limited { .. }
        ));
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let mut limiter = RateLimiter::new(60, 2, 100);
        let now = Instant::now();
        assert_eq!(limiter.check(ip("2001:db8:1:2::1"), now), Decision::Allowed);
        assert_eq!(
            limiter.check(ip("2001:db8:1:2::ffff"), now),
            Decision::Allowed
        );
        assert!(matches!(
            limiter.check(ip("2001:db8:1:2:aaaa::7"), now),
            Decision::Limited { .. }
        ));
        assert_eq!(limiter.check(ip("2001:db8:1:3::1"), now), Decision::Allowed);
        assert_eq!(
            limiter.check(ip("::ffff:192.0.2.1"), now),
            Decision::Allowed
        );
        assert_eq!(limiter.check(ip("192.0.2.1"), now), Decision::Allowed);
        assert!(matches!(
            limiter.check(ip("192.0.2.1"), now),
            Decision::Limited { .. }
        ));
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_limited_addresses_first() {
        let mut limiter = RateLimiter::new(60, 1, 3);
        let now = Instant::now();
        let flooder = ip("203.0.113.9");
        assert_eq!(limiter.check(flooder, now), Decision::Allowed);
        for i in 0..1_000u32 {
            let at = now + Duration::from_millis(u64::from(i));
            limiter.check(IpAddr::from(i.to_be_bytes()), at);
            assert!(limiter.tracked() <= 3);
        }
        // Refilled buckets go before the oldest: the flooder, seen first
        // but still short of tokens, is kept.
        let mut limiter = RateLimiter::new(60, 2, 2);
        limiter.check(flooder, now);
        limiter.check(flooder, now);
        limiter.check(ip("198.51.100.1"), now + Duration::from_millis(500));
        let at = now + Duration::from_millis(1_600);
        limiter.check(ip("198.51.100.3"), at);
        assert_eq!(limiter.check(flooder, at), Decision::Allowed);
        assert!(matches!(
            limiter.check(flooder, at),
            Decision::Limited { .. }
        ));
    }

    #[test]
    fn zero_per_minute_means_no_limit() {
        let mut limiter = RateLimiter::new(0, 1, 1);
        let now = Instant::now();
        for _ in 0..100 {
            assert_eq!(limiter.check(ip("192.0.2.1"), now), Decision::Allowed);
        }
        assert_eq!(limiter.tracked(), 0);
    }
}
