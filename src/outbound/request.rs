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
