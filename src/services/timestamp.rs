//! Times read from provider messages.

use std::time::Duration;

/// `secs` seconds, as a provider's message gives them: negative (or NaN)
/// is zero and more than a `Duration` holds is [`Duration::MAX`], so a bad
/// message can misplace a word but never panic, as
/// `Duration::from_secs_f64` does on both.
pub(crate) fn provider_seconds(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_number_is_a_duration() {
        assert_eq!(provider_seconds(1.5), Duration::from_millis(1500));
        assert_eq!(provider_seconds(-3.0), Duration::ZERO);
        assert_eq!(provider_seconds(f64::NAN), Duration::ZERO);
        assert_eq!(provider_seconds(1e300), Duration::MAX);
        assert_eq!(provider_seconds(f64::INFINITY), Duration::MAX);
    }
}
