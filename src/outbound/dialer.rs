//! Placing one call.

use std::time::Duration;

use async_trait::async_trait;

use crate::store::{CallStatus, StoreError};

use super::request::CallRequest;

/// A call the dialler placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedCall {
    /// voxpipe's call id (`call:{id}`, the stream's session id).
    pub call_id: String,
    /// Twilio's SID (`CA…`).
    pub twilio_sid: String,
}

/// Why a call could not be placed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// Twilio is rate limiting the account (HTTP 429, error 20429): try
    /// again after the wait.
    #[error("Twilio is rate limiting calls; retry after {retry_after:?}")]
    RateLimited {
        /// How long to wait before the next request.
        retry_after: Duration,
    },
    /// Twilio refused this call (a bad number, a permission): dialling it
    /// again will not help. The call is recorded as failed.
    #[error("Twilio refused the call ({status}, code {code:?})")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Twilio's error code, when given.
        code: Option<u64>,
        /// Twilio's message.
        message: String,
    },
    /// Twilio could not be reached or answered with a server error: the
    /// call may be tried again.
    #[error("Twilio is unavailable: {0}")]
    Unavailable(String),
    /// Twilio's answer to the create request did not come: the call may
    /// have been placed. It must not be dialled again; its status
    /// callbacks settle it, or, when none come, it ends failed.
    #[error("Twilio's answer did not come; the call may have been placed: {0}")]
    Uncertain(String),
    /// Another try of the call (an earlier one of this process, another
    /// server's, one a stopped server made) asked Twilio, and its answer
    /// is not known here: not dialled again; its callbacks settle it, or,
    /// when none come, it ends failed. Nothing was asked of Twilio now.
    #[error("the call was asked of Twilio by another try: {0}")]
    AlreadyAsked(String),
    /// The number was reached within `rate_limit_hours`, or is on a call
    /// now: not dialled. The call is recorded as failed.
    #[error("the number {phone_hash} was called too recently or is on a call")]
    NumberLimited {
        /// The number's hash.
        phone_hash: String,
    },
    /// The call id names a call that has already ended: not dialled again.
    #[error("the call has already ended ({})", status.as_str())]
    Settled {
        /// Whether Twilio took it (it has a SID): only such a call's
        /// status is for a campaign's retry policy.
        placed: bool,
        /// Its final status.
        status: CallStatus,
    },
    /// The call record could not be written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Places calls: writes the call record (`queued`, `direction: outbound`)
/// and asks Twilio to dial.
#[async_trait]
pub trait Dialer: Send + Sync {
    /// Places `request` as call `call_id` (the same id on a retry of the same
    /// request: a record that exists is not reset, and a call Twilio already
    /// took is not placed twice).
    async fn dial(&self, call_id: &str, request: &CallRequest) -> Result<PlacedCall, DialError>;
}
