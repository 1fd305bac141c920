//! [`UndeliveredMessage`]: an answer Twilio reported it could not deliver,
//! kept in its text conversation's record (`call:{id}`, field
//! `undelivered`).

use serde::{Deserialize, Serialize};

/// How many undelivered answers a conversation's record keeps: the first
/// ones (a recipient who cannot be reached makes every later answer fail
/// alike, and the record must stay small).
pub const MAX_UNDELIVERED_KEPT: usize = 50;

/// An answer Twilio's status callback reported `failed` or `undelivered`.
///
/// ```json
/// {"message_sid": "SM…", "status": "undelivered", "error_code": 63016,
///  "at": "2026-01-01T00:00:00.000Z"}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndeliveredMessage {
    /// The answer's `MessageSid` (Twilio's id of the outgoing message).
    pub message_sid: String,
    /// Twilio's `MessageStatus`: `failed` or `undelivered`.
    pub status: String,
    /// Twilio's `ErrorCode` (30003 unreachable handset, 63016 outside
    /// WhatsApp's 24-hour window, ...), when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u64>,
    /// When the callback came (RFC 3339).
    pub at: String,
}
