//! [`Seconds`]: the one duration type of pipeline files.
//!
//! A duration key is written as a number of seconds (`stop_secs = 0.8`,
//! `timeout_secs = 10`) and read into a `Seconds`, which checks its range as
//! the file is read, so a bad value is reported with its file, line and key
//! like any other mistake, and code downstream only ever sees a valid
//! [`Duration`]. The range is part of the type: `Seconds<0, 10>` for 0 to
//! 10 s, `Seconds<1>` for a positive duration of at most a day (the
//! default bound). Not durations in this sense, and read as whole numbers:
//! the store's TTLs (`call_ttl_secs`, `session_tactics_ttl_secs`).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration from `MIN_MS` milliseconds to `MAX_S` seconds, written in
/// seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seconds<const MIN_MS: u64 = 0, const MAX_S: u64 = 86_400>(Duration);

impl<const MIN_MS: u64, const MAX_S: u64> Seconds<MIN_MS, MAX_S> {
    /// `ms` milliseconds, for defaults; out of range, it is clamped into
    /// the range.
    pub const fn from_millis(ms: u64) -> Self {
        let ms = if ms < MIN_MS {
            MIN_MS
        } else if ms > MAX_S * 1000 {
            MAX_S * 1000
        } else {
            ms
        };
        Seconds(Duration::from_millis(ms))
    }

    /// `secs` seconds, checked against the range.
    pub fn new(secs: f64) -> Result<Self, OutOfRange> {
        let min = Duration::from_millis(MIN_MS).as_secs_f64();
        let max = MAX_S as f64;
        if secs.is_finite() && (min..=max).contains(&secs) {
            Ok(Seconds(Duration::from_secs_f64(secs)))
        } else {
            Err(OutOfRange { secs, min, max })
        }
    }

    /// As a duration.
    pub const fn duration(self) -> Duration {
        self.0
    }

    /// In seconds.
    pub fn as_secs_f64(self) -> f64 {
        self.0.as_secs_f64()
    }
}

impl<const MIN_MS: u64, const MAX_S: u64> From<Seconds<MIN_MS, MAX_S>> for Duration {
    fn from(seconds: Seconds<MIN_MS, MAX_S>) -> Duration {
        seconds.0
    }
}

impl<'de, const MIN_MS: u64, const MAX_S: u64> Deserialize<'de> for Seconds<MIN_MS, MAX_S> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let secs = f64::deserialize(deserializer)?;
        Seconds::new(secs).map_err(serde::de::Error::custom)
    }
}

/// A number of seconds outside a key's range.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub struct OutOfRange {
    secs: f64,
    min: f64,
    max: f64,
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let OutOfRange { secs, min, max } = self;
        if *min > 0.0 && *min <= 0.001 {
            write!(f, "expected seconds above 0 and at most {max}, not {secs}")
        } else {
            write!(f, "expected seconds from {min} to {max}, not {secs}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Section {
        window: Seconds<0, 10>,
        timeout: Seconds<1>,
    }

    fn read(text: &str) -> Result<Section, String> {
        toml::from_str(text).map_err(|e| e.message().to_owned())
    }

    #[test]
    fn reads_whole_and_fractional_seconds_within_the_range() {
        let section = read("window = 0.8\ntimeout = 30").unwrap();
        assert_eq!(section.window.duration(), Duration::from_millis(800));
        assert_eq!(section.timeout.duration(), Duration::from_secs(30));
        assert_eq!(
            read("window = 0\ntimeout = 86400")
                .unwrap()
                .window
                .duration(),
            Duration::ZERO
        );
    }

    #[test]
    fn refuses_values_outside_the_range_naming_it() {
        assert_eq!(
            read("window = -1\ntimeout = 1").unwrap_err(),
            "expected seconds from 0 to 10, not -1"
        );
        assert_eq!(
            read("window = 10.5\ntimeout = 1").unwrap_err(),
            "expected seconds from 0 to 10, not 10.5"
        );
        assert_eq!(
            read("window = 1\ntimeout = 0").unwrap_err(),
            "expected seconds above 0 and at most 86400, not 0"
        );
        assert!(read("window = nan\ntimeout = 1").is_err());
        assert!(read("window = inf\ntimeout = 1").is_err());
    }

    #[test]
    fn a_larger_minimum_is_named() {
        let err = Seconds::<1000>::new(0.5).unwrap_err();
        assert_eq!(err.to_string(), "expected seconds from 1 to 86400, not 0.5");
    }

    #[test]
    fn defaults_are_clamped_into_the_range() {
        assert_eq!(
            Seconds::<0, 10>::from_millis(20_000).duration(),
            Duration::from_secs(10)
        );
        assert_eq!(
            Seconds::<1>::from_millis(0).duration(),
            Duration::from_millis(1)
        );
    }
}
