//! A campaign's settings: the rate, the cap on live calls, the retry
//! policy and the calling window, as `POST /api/campaigns` gives them and
//! the store keeps them.

use serde::{Deserialize, Serialize};

use crate::store::{CallStatus, MAX_SLOT_INTERVAL_US};

use super::super::request::{BadWebhookUrl, check_webhook_url};
use super::window::CallingWindow;

/// Twilio's own limit: 1 call per second by default, up to 30 when raised;
/// voxpipe accepts up to this.
pub const MAX_CALLS_PER_SECOND: f64 = 100.0;

/// The slowest rate accepted: one call per 100 s. Slower rates would make
/// the slot interval (µs) astronomically long, and the shared next slot
/// overflow.
pub const MIN_CALLS_PER_SECOND: f64 = 0.01;

/// How a campaign dials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignSettings {
    /// New calls per second, across every server (Twilio allows 1 by
    /// default, up to 30).
    #[serde(default = "default_calls_per_second")]
    pub calls_per_second: f64,
    /// Live calls at once, across every server.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: u64,
    /// Which final statuses are dialled again, how often, after how long.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// When numbers may be called; always when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<CallingWindow>,
    /// Where each call's call-completed webhook goes, instead of the
    /// pipeline's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// The caller's own data, kept on every call record.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl Default for CampaignSettings {
    fn default() -> Self {
        CampaignSettings {
            calls_per_second: default_calls_per_second(),
            max_concurrent: default_max_concurrent(),
            retry: RetryPolicy::default(),
            window: None,
            webhook_url: None,
            metadata: serde_json::Map::new(),
        }
    }
}

fn default_calls_per_second() -> f64 {
    1.0
}

fn default_max_concurrent() -> u64 {
    10
}

/// Dialling a number again after a busy line, no answer or a failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Tries in all, the first included (1: no retry).
    pub attempts: u32,
    /// Seconds between a call's end and the next try.
    #[serde(default = "default_backoff_secs")]
    pub backoff_secs: u64,
    /// The final statuses retried (`busy`, `no-answer`, `failed`).
    #[serde(default = "default_retry_on")]
    pub on: Vec<CallStatus>,
}

fn default_backoff_secs() -> u64 {
    300
}

fn default_retry_on() -> Vec<CallStatus> {
    vec![CallStatus::Busy, CallStatus::NoAnswer, CallStatus::Failed]
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 1,
            backoff_secs: default_backoff_secs(),
            on: default_retry_on(),
        }
    }
}

impl RetryPolicy {
    /// When try `attempt` ended in `status` at `now_ms`: the next try's due
    /// time, or `None` when the number is done.
    pub fn next_try(&self, status: CallStatus, attempt: u32, now_ms: u64) -> Option<u64> {
        (attempt < self.attempts && self.on.contains(&status))
            .then(|| now_ms.saturating_add(self.backoff_secs.saturating_mul(1000)))
    }
}

/// Settings a campaign cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// Not in [[`MIN_CALLS_PER_SECOND`], [`MAX_CALLS_PER_SECOND`]].
    #[error(
        "calls_per_second must be at least {MIN_CALLS_PER_SECOND} (one call per 100 s) and at most {MAX_CALLS_PER_SECOND}"
    )]
    CallsPerSecond,
    /// Zero.
    #[error("max_concurrent must be at least 1")]
    MaxConcurrent,
    /// Zero tries, or a status that is not busy, no-answer or failed.
    #[error("retry.attempts must be at least 1, and retry.on lists only busy, no-answer, failed")]
    Retry,
    /// A `webhook_url` that is not http or https.
    #[error(transparent)]
    WebhookUrl(#[from] BadWebhookUrl),
}

impl CampaignSettings {
    /// Checks the values serde cannot.
    pub fn validate(&self) -> Result<(), SettingsError> {
        // Written so that NaN fails too.
        if !(self.calls_per_second >= MIN_CALLS_PER_SECOND
            && self.calls_per_second <= MAX_CALLS_PER_SECOND)
        {
            return Err(SettingsError::CallsPerSecond);
        }
        if self.max_concurrent == 0 {
            return Err(SettingsError::MaxConcurrent);
        }
        if let Some(url) = &self.webhook_url {
            check_webhook_url(url)?;
        }
        let retryable = [CallStatus::Busy, CallStatus::NoAnswer, CallStatus::Failed];
        if self.retry.attempts == 0 || !self.retry.on.iter().all(|s| retryable.contains(s)) {
            return Err(SettingsError::Retry);
        }
        Ok(())
    }

    /// Microseconds between two calls, between 1 and
    /// [`MAX_SLOT_INTERVAL_US`] whatever the settings (stored settings
    /// are not validated again).
    pub fn slot_interval_us(&self) -> u64 {
        // A float cast saturates (NaN becomes 0), then the clamp.
        ((1_000_000.0 / self.calls_per_second).round() as u64).clamp(1, MAX_SLOT_INTERVAL_US)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_only_the_listed_statuses_up_to_the_attempts() {
        let policy = RetryPolicy {
            attempts: 3,
            backoff_secs: 10,
            on: vec![CallStatus::Busy, CallStatus::NoAnswer],
        };
        assert_eq!(policy.next_try(CallStatus::Busy, 1, 1000), Some(11_000));
        assert_eq!(policy.next_try(CallStatus::NoAnswer, 2, 0), Some(10_000));
        assert_eq!(policy.next_try(CallStatus::Busy, 3, 0), None);
        assert_eq!(policy.next_try(CallStatus::Failed, 1, 0), None);
        assert_eq!(policy.next_try(CallStatus::Completed, 1, 0), None);
        assert_eq!(
            RetryPolicy::default().next_try(CallStatus::Busy, 1, 0),
            None
        );
    }

    #[test]
    fn settings_are_checked() {
        let parse = |json: &str| serde_json::from_str::<CampaignSettings>(json);
        let good = parse(r#"{"calls_per_second": 30, "max_concurrent": 200}"#).unwrap();
        assert_eq!(good.validate(), Ok(()));
        assert_eq!(good.slot_interval_us(), 33_333);
        assert!(parse(r#"{"calls_per_sec": 30}"#).is_err());
        let zero = parse(r#"{"calls_per_second": 0}"#).unwrap();
        assert_eq!(zero.validate(), Err(SettingsError::CallsPerSecond));
        for too_slow in ["1e-14", "0.0099", "5e-324"] {
            let json = format!(r#"{{"calls_per_second": {too_slow}}}"#);
            let settings = parse(&json).unwrap();
            assert_eq!(settings.validate(), Err(SettingsError::CallsPerSecond));
            assert_eq!(settings.slot_interval_us(), MAX_SLOT_INTERVAL_US);
        }
        let slowest = parse(r#"{"calls_per_second": 0.01}"#).unwrap();
        assert_eq!(slowest.validate(), Ok(()));
        assert_eq!(slowest.slot_interval_us(), MAX_SLOT_INTERVAL_US);
        let completed = parse(r#"{"retry": {"attempts": 2, "on": ["completed"]}}"#).unwrap();
        assert_eq!(completed.validate(), Err(SettingsError::Retry));
    }
}
