//! An outbound call's own part of its record: what was asked for, what
//! Twilio said, and the campaign attempt it is.

use serde::{Deserialize, Serialize};

use super::call_status::CallStatus;

/// An outbound call's own state: what was asked for and what Twilio said.
///
/// The number is kept (a retry dials it again); logs carry only
/// `phone_hash`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutboundCall {
    /// The number called, E.164.
    pub to: String,
    /// The caller id used, E.164.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The salted hash of `to`: what logs and rate limits name.
    pub phone_hash: String,
    /// Twilio's call SID (`CA…`), once Twilio accepted the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twilio_sid: Option<String>,
    /// What answering-machine detection said (`human`, `machine_start`,
    /// `machine_end_beep`, ...), when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    /// Twilio's `CallDuration` (seconds connected), once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_duration_secs: Option<u64>,
    /// When the request to Twilio was sent (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dialled_at: Option<String>,
    /// When a create request for it was about to go to Twilio (RFC 3339),
    /// written before it goes and taken back when Twilio created nothing:
    /// set without a SID, the call may exist at Twilio, and is never
    /// dialled again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asked_at: Option<String>,
    /// Which try asked (a random id): of two tries racing, only the one
    /// whose note was written sends its request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asked_by: Option<String>,
    /// When the callee answered (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<String>,
    /// The highest `SequenceNumber` of Twilio's status callbacks applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_sequence: Option<u64>,
    /// Why the call failed, for people (Twilio's error, a refusal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Where the call-completed webhook goes, when not the pipeline's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// The caller's own data, returned as given.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The campaign and attempt this call is, when a campaign placed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<CampaignAttempt>,
}

/// Which campaign entry a call dials, and which try it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignAttempt {
    /// The campaign's id.
    pub campaign_id: String,
    /// The entry's index in the campaign (its numbers, deduplicated, in
    /// the order given).
    pub entry: u64,
    /// 1 for the first try.
    pub attempt: u32,
}

/// What one of Twilio's callbacks said of an outbound call (a status
/// callback, or an answering-machine detection callback with no status).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TwilioReport {
    /// The status it reports (Twilio's `in-progress` is [`CallStatus::Active`]).
    pub status: Option<CallStatus>,
    /// Twilio's `SequenceNumber`.
    pub sequence: Option<u64>,
    /// Twilio's `CallSid`.
    pub twilio_sid: Option<String>,
    /// `AnsweredBy`.
    pub answered_by: Option<String>,
    /// `CallDuration`, in seconds.
    pub call_duration_secs: Option<u64>,
    /// Twilio's error, when it gave one (`ErrorCode`, `ErrorMessage`).
    pub error: Option<String>,
    /// When it was received (Unix ms).
    pub at_ms: u64,
}
