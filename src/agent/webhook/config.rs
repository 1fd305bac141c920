//! `[webhook]`: the optional call-completed webhook.
//!
//! ```toml
//! [webhook]
//! url = "https://example.com/hooks/calls"
//! secret_env = "WEBHOOK_SECRET"   # optional: sign bodies (X-Voxpipe-Signature)
//! max_attempts = 150              # about a day of retries with the defaults below
//! initial_backoff_secs = 2        # then doubling
//! max_backoff_secs = 600
//! timeout_secs = 10
//! ```

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::metrics::WebhookMetrics;

use crate::config::Seconds;

/// The event type of every body, unless `[extraction] webhook_event`
/// renames it.
pub const CALL_COMPLETED: &str = "call_completed";

/// `[webhook]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    /// Where completed calls are POSTed: an `http://` or `https://` URL.
    #[serde(deserialize_with = "http_url")]
    pub url: String,
    /// The variable holding the signing secret, if bodies are signed.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Attempts before a delivery goes to the dead letters.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Wait after the first failure, seconds (at least 0.1: the attempts
    /// are to span hours); doubled after each.
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff_secs: Seconds<100>,
    /// Longest wait between attempts, seconds.
    #[serde(default = "default_max_backoff")]
    pub max_backoff_secs: Seconds,
    /// Per attempt, seconds (at most a day; under 0.1 counts as 0.1).
    #[serde(default = "default_timeout")]
    pub timeout_secs: Seconds,
}

/// An `http://` or `https://` URL with a host: anything else would fail
/// every delivery for a day before reaching the dead letters.
fn http_url<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let url = String::deserialize(deserializer)?;
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest)
            if !rest.is_empty() && !rest.starts_with('/') && !url.contains(char::is_whitespace) =>
        {
            Ok(url)
        }
        _ => Err(serde::de::Error::custom(format!(
            "expected an http:// or https:// URL, not `{url}`"
        ))),
    }
}

/// With 2 s doubling to 600 s: 1,022 s over the first 9 waits, then
/// 600 s each, so the 149 waits add up to about 23.6 hours: a receiver
/// down for a deploy, or a night, loses nothing.
fn default_attempts() -> u32 {
    150
}
fn default_initial_backoff() -> Seconds<100> {
    Seconds::from_millis(2_000)
}
fn default_max_backoff() -> Seconds {
    Seconds::from_millis(600_000)
}
fn default_timeout() -> Seconds {
    Seconds::from_millis(10_000)
}

/// The webhook, ready to use (secret resolved). Its `Debug` never shows
/// the secret.
#[derive(Clone)]
pub struct WebhookSettings {
    /// Where completed calls are POSTed.
    pub url: String,
    /// The body's `event_type` (`call_completed` unless `[extraction]`
    /// renames it).
    pub event: String,
    /// Signs bodies with HMAC-SHA256 when set.
    pub secret: Option<String>,
    /// Attempts before a delivery goes to the dead letters.
    pub max_attempts: u32,
    /// Wait after the first failure.
    pub initial_backoff: Duration,
    /// Longest wait.
    pub max_backoff: Duration,
    /// Per attempt.
    pub timeout: Duration,
    /// Counted by every deliverer of these settings.
    pub metrics: Arc<WebhookMetrics>,
}

impl WebhookSection {
    /// The settings, with the secret resolved by the caller.
    pub fn settings(&self, secret: Option<String>) -> WebhookSettings {
        WebhookSettings {
            url: self.url.clone(),
            event: CALL_COMPLETED.to_owned(),
            secret,
            max_attempts: self.max_attempts.max(1),
            initial_backoff: self.initial_backoff_secs.duration(),
            max_backoff: self.max_backoff_secs.duration(),
            timeout: self.timeout_secs.duration().max(Duration::from_millis(100)),
            metrics: Arc::default(),
        }
    }
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("url", &self.url)
            .field("event", &self.event)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("max_attempts", &self.max_attempts)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl WebhookSettings {
    /// The wait after `failures` failed attempts: the initial backoff,
    /// doubled per further failure, capped.
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let settings = WebhookSettings {
            url: String::new(),
            event: CALL_COMPLETED.into(),
            secret: None,
            max_attempts: 8,
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(20),
            timeout: Duration::from_secs(1),
            metrics: Arc::default(),
        };
        let waits: Vec<u64> = (1..=6).map(|n| settings.backoff(n).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 20, 20]);
    }

    #[test]
    fn the_default_retries_last_about_a_day() {
        let settings = WebhookSection {
            url: "https://example.com/hook".into(),
            secret_env: None,
            max_attempts: default_attempts(),
            initial_backoff_secs: default_initial_backoff(),
            max_backoff_secs: default_max_backoff(),
            timeout_secs: default_timeout(),
        }
        .settings(None);
        let window: Duration = (1..settings.max_attempts)
            .map(|n| settings.backoff(n))
            .sum();
        let hours = window.as_secs_f64() / 3600.0;
        assert!((20.0..=30.0).contains(&hours), "{hours} h");
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let settings = WebhookSection {
            url: "https://example.com/hook".into(),
            secret_env: None,
            max_attempts: 3,
            initial_backoff_secs: default_initial_backoff(),
            max_backoff_secs: default_max_backoff(),
            timeout_secs: default_timeout(),
        }
        .settings(Some("s3cr3t-value".into()));
        let shown = format!(
            "{settings:?} {:?}",
            super::super::QueueCallCompleted(std::sync::Arc::new(settings.clone()))
        );
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
