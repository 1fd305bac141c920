//! What `POST /api/calls`, the CLI and campaigns ask the dialler for.

use std::collections::BTreeMap;

use crate::store::CampaignAttempt;
use crate::transport::twilio::stream_token::STREAM_TOKEN_PARAMETER;
use crate::transport::twilio::twiml;

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

/// The most of a call's TwiML its custom parameters may take, as
/// `<Parameter>` elements: Twilio takes inline TwiML of at most 4,000
/// characters (error 32018), and the rest (the stream's URL, the call id,
/// the stream token) takes up to about 600.
pub const MAX_PARAMETERS_TWIML: usize = 3_400;

/// The `<Parameter>` that carries the call id to the media stream.
pub const CALL_ID_PARAMETER: &str = "call_id";

/// The parameters the dialler sets itself (the call id, the stream token),
/// whatever a request says.
const RESERVED_PARAMETERS: [&str; 2] = [CALL_ID_PARAMETER, STREAM_TOKEN_PARAMETER];

/// Custom parameters too long for a call's TwiML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the parameters take {len} characters of the call's TwiML; at most {MAX_PARAMETERS_TWIML} \
     fit (Twilio takes 4,000 in all)"
)]
pub struct ParametersTooLong {
    /// What they take, escaped.
    pub len: usize,
}

/// Checks that a call's custom parameters fit in the TwiML that will place
/// it, so that a call or campaign row that cannot be placed is refused when
/// asked for, not failed at Twilio when dialled.
pub fn check_parameters(parameters: &BTreeMap<String, String>) -> Result<(), ParametersTooLong> {
    // Counted in characters, as Twilio counts; the names the dialler
    // sets itself are dropped from a request's parameters.
    let pairs: Vec<(String, String)> = parameters
        .iter()
        .filter(|(name, _)| !RESERVED_PARAMETERS.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let len = twiml::connect_stream("", &pairs)
        .chars()
        .count()
        .saturating_sub(twiml::connect_stream("", &[]).chars().count());
    if len > MAX_PARAMETERS_TWIML {
        Err(ParametersTooLong { len })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_must_fit_in_the_calls_twiml() {
        let mut parameters = BTreeMap::from([("country".to_owned(), "US".to_owned())]);
        assert_eq!(check_parameters(&parameters), Ok(()));
        // Escaped as XML: each `&` takes five characters.
        parameters.insert("note".to_owned(), "&".repeat(700));
        assert!(check_parameters(&parameters).is_err());
        parameters.insert("note".to_owned(), "a".repeat(3_000));
        assert_eq!(check_parameters(&parameters), Ok(()));
        // Characters, not bytes: 3,000 of them in CJK fit too.
        parameters.insert("note".to_owned(), "\u{4e2d}".repeat(3_000));
        assert_eq!(check_parameters(&parameters), Ok(()));
    }

    #[test]
    fn only_http_and_https_webhooks_are_taken() {
        assert_eq!(check_webhook_url("https://hooks.example.com/x"), Ok(()));
        assert_eq!(check_webhook_url("http://10.0.0.1:8080/"), Ok(()));
        for bad in ["file:///etc/passwd", "ftp://x", "hooks.example.com", ""] {
            assert_eq!(check_webhook_url(bad), Err(BadWebhookUrl), "{bad}");
        }
    }
}
