//! `[webhook]`: the optional call-completed webhook.
//!
//! ```toml
//! [webhook]
//! url = "https://example.com/hooks/calls"
//! secret_env = "WEBHOOK_SECRET"   # optional: sign bodies (X-Voxpipe-Signature)
//! max_attempts = 8
//! initial_backoff_secs = 2        # then doubling
//! max_backoff_secs = 600
//! timeout_secs = 10
//! ```

use std::time::Duration;

use serde::Deserialize;

use crate::config::Seconds;

/// `[webhook]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    /// Where completed calls are POSTed.
    pub url: String,
    /// The variable holding the signing secret, if bodies are signed.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Attempts before a delivery goes to the dead letters.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Wait after the first failure, seconds; doubled after each.
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff_secs: Seconds,
    /// Longest wait between attempts, seconds.
    #[serde(default = "default_max_backoff")]
    pub max_backoff_secs: Seconds,
    /// Per attempt, seconds (0.1 to 3600).
    #[serde(default = "default_timeout")]
    pub timeout_secs: Seconds<100, 3600>,
}

fn default_attempts() -> u32 {
    8
}
fn default_initial_backoff() -> Seconds {
    Seconds::from_millis(2_000)
}
fn default_max_backoff() -> Seconds {
    Seconds::from_millis(600_000)
}
fn default_timeout() -> Seconds<100, 3600> {
    Seconds::from_millis(10_000)
}

/// The webhook, ready to use (secret resolved).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Where completed calls are POSTed.
    pub url: String,
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
}

impl WebhookSection {
    /// The settings, with the secret resolved by the caller.
    pub fn settings(&self, secret: Option<String>) -> WebhookSettings {
        WebhookSettings {
            url: self.url.clone(),
            secret,
            max_attempts: self.max_attempts.max(1),
            initial_backoff: self.initial_backoff_secs.duration(),
            max_backoff: self.max_backoff_secs.duration(),
            timeout: self.timeout_secs.duration(),
        }
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
            secret: None,
            max_attempts: 8,
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(20),
            timeout: Duration::from_secs(1),
        };
        let waits: Vec<u64> = (1..=6).map(|n| settings.backoff(n).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 20, 20]);
    }
}
