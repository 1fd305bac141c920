//! When to try a request again: exponential backoff with jitter, and the
//! server's `Retry-After`. Pure functions of their inputs.

use std::future::Future;
use std::time::{Duration, SystemTime};

use super::error::ServiceError;

/// How a failed request is retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 never retries.
    pub max_retries: u32,
    /// The backoff before the first retry (before jitter).
    pub initial: Duration,
    /// The backoff never grows past this (before jitter).
    pub max: Duration,
    /// A `Retry-After` longer than this is not waited for: the request
    /// fails at once (a live call cannot wait a minute).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 2,
            initial: Duration::from_millis(250),
            max: Duration::from_secs(4),
            max_retry_after: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// How long to wait before retry number `retry` (1 for the first), or
    /// `None` when no retry should be made.
    ///
    /// The backoff doubles per retry up to `max`, and `jitter` (in `0..=1`)
    /// picks a point in its upper half ("equal jitter"), so that clients
    /// failing together do not retry together. A server's `Retry-After` is
    /// a floor.
    pub fn delay(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        if retry == 0 || retry > self.max_retries {
            return None;
        }
        if retry_after.is_some_and(|after| after > self.max_retry_after) {
            return None;
        }
        let backoff = self.backoff(retry, jitter);
        Some(retry_after.map_or(backoff, |after| after.max(backoff)))
    }

    /// The backoff before attempt `retry` (1 for the first retry), with no
    /// limit on the number of attempts: for reconnecting a socket for as
    /// long as the session lasts.
    pub fn backoff(&self, retry: u32, jitter: f64) -> Duration {
        let doubled = self.initial.saturating_mul(
            1u32.checked_shl(retry.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        doubled
            .min(self.max)
            .mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

/// Runs `attempt` until it succeeds or fails for good: an error worth
/// another try (429, 5xx) is retried after the backoff `policy` gives (at
/// least the server's `Retry-After`), as long as it gives one. Each retry is
/// logged with the provider's message.
pub(crate) async fn retrying<T, F, Fut>(
    policy: &RetryPolicy,
    provider: &str,
    attempt: F,
) -> Result<T, ServiceError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ServiceError>>,
{
    retrying_counted(policy, provider, &mut 0, attempt).await
}

/// [`retrying`], counting its retries in `retries` (those made before
/// count too): for a caller that retries for other reasons as well and
/// must keep to one bound, `max_retries` in all.
pub(crate) async fn retrying_counted<T, F, Fut>(
    policy: &RetryPolicy,
    provider: &str,
    retries: &mut u32,
    mut attempt: F,
) -> Result<T, ServiceError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ServiceError>>,
{
    loop {
        let error = match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if !error.is_retryable() {
            return Err(error);
        }
        let retry = retries.saturating_add(1);
        match policy.delay(retry, error.retry_after(), jitter()) {
            Some(delay) => {
                *retries = retry;
                tracing::warn!(provider, retry, ?delay, error = %error, "retrying");
                tokio::time::sleep(delay).await;
            }
            None => return Err(error),
        }
    }
}

/// The jitter of one backoff: a number in `0..1` that differs between
/// calls and processes.
pub(crate) fn jitter() -> f64 {
    crate::random::unit_interval()
}

/// The wait a `Retry-After` header asks for: delay-seconds (`"2"`, also
/// `"1.5"`) or an HTTP date (`"Wed, 21 Oct 2015 07:28:00 GMT"`) measured
/// from `now`. `None` for anything else.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An IMF-fixdate (RFC 9110 §5.6.7), the form servers send.
fn parse_http_date(value: &str) -> Option<SystemTime> {
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let rest = value.split_once(", ")?.1;
    let mut parts = rest.split(' ');
    let day: u64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (clock.next()??, clock.next()??, clock.next()??);
    if parts.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day as i64);
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3_600 + m * 60 + s;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_doubles_with_jitter_in_its_upper_half_and_stops() {
        let policy = RetryPolicy {
            max_retries: 4,
            initial: ms(100),
            max: ms(300),
            max_retry_after: Duration::from_secs(5),
        };
        assert_eq!(policy.delay(1, None, 0.0), Some(ms(50)));
        assert_eq!(policy.delay(1, None, 1.0), Some(ms(100)));
        assert_eq!(policy.delay(2, None, 1.0), Some(ms(200)));
        assert_eq!(policy.delay(3, None, 1.0), Some(ms(300)), "capped");
        assert_eq!(policy.delay(4, None, 0.5), Some(ms(225)));
        assert_eq!(policy.delay(5, None, 0.5), None, "out of retries");
        assert_eq!(policy.delay(0, None, 0.5), None);
    }

    #[test]
    fn retry_after_is_a_floor_and_too_long_a_wait_is_not_made() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(2)), 1.0),
            Some(Duration::from_secs(2))
        );
        assert_eq!(policy.delay(1, Some(ms(1)), 1.0), Some(ms(250)));
        assert_eq!(policy.delay(1, Some(Duration::from_secs(60)), 1.0), None);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 2015-10-21 07:27:50
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 ", now), Some(ms(500)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        for bad in ["soon", "-1", "", "Wed, 21 Foo 2015 07:28:00 GMT", "NaN"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j));
        }
    }
}
