//! What `POST /api/calls`, the CLI and campaigns ask the dialler for.

use std::collections::BTreeMap;

use crate::store::CampaignAttempt;

use super::phone::PhoneNumber;

/// One call to place.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRequest {
    /// The number to call.
    pub to: PhoneNumber,
    /// The caller id; the pipeline's `[outbound] from` when `None`.
    pub from: Option<PhoneNumber>,
    /// The session's custom parameters (`country`, `industry` pick the
    /// segment), as a Twilio stream's `customParameters` would carry them.
    pub parameters: BTreeMap<String, String>,
    /// Where this call's call-completed webhook goes, instead of the
    /// pipeline's.
    pub webhook_url: Option<String>,
    /// The caller's own data, kept on the record and returned as given.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The campaign entry and attempt, when a campaign places it.
    pub campaign: Option<CampaignAttempt>,
}

/// A call's `webhook_url` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("webhook_url must be an http:// or https:// URL")]
pub struct BadWebhookUrl;

/// Checks a call's (or a campaign's) own `webhook_url`: the deliverer
/// posts to it, so only http and https are taken. Shared by
/// `POST /api/calls` and campaigns (the API and the CLI), so they refuse
/// the same URLs.
pub fn check_webhook_url(url: &str) -> Result<(), BadWebhookUrl> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        Err(BadWebhookUrl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_and_https_webhooks_are_taken() {
        assert_eq!(check_webhook_url("https://hooks.example.com/x"), Ok(()));
        assert_eq!(check_webhook_url("http://10.0.0.1:8080/"), Ok(()));
        for bad in ["file:///etc/passwd", "ftp://x", "hooks.example.com", ""] {
            assert_eq!(check_webhook_url(bad), Err(BadWebhookUrl), "{bad}");
        }
    }
}
