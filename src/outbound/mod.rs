//! Outbound calls: placing calls through Twilio's REST API, following their
//! status, and campaigns that dial many numbers across servers.
//!
//! The parts, top-down: a [`Dialer`] places one [`CallRequest`] (creates
//! the call record, asks Twilio); Twilio's status callbacks move the record
//! through [`CallStatus`](crate::store::CallStatus); when a call reaches a
//! final status, every [`CallSettled`] listener hears of it (a campaign
//! frees the slot and retries or finishes the number). Phone numbers are
//! [`PhoneNumber`]s (E.164, checked once at the edge) and appear in logs
//! only as their salted [`PhoneHasher`] hash.

mod asked_calls;
pub mod campaign;
mod config;
mod dial_retry;
mod dialer;
mod lost_sessions;
mod machine;
mod overdue;
mod phone;
mod request;
mod settle;
mod settled;
mod setup_error;
mod status;
mod stranded;
mod twilio_dialer;

pub use config::{AmdMode, MachinePolicy, OutboundSection};
pub use dial_retry::{API_DIAL_DEADLINE, DialRetry, DialStep};
pub use dialer::{DialError, Dialer, PlacedCall};
pub use lost_sessions::LostSessions;
pub use machine::MachineAction;
pub use overdue::SweepError;
pub use phone::{PhoneError, PhoneHasher, PhoneNumber};
pub use request::{
    BadWebhookUrl, CallRequest, MAX_PARAMETERS_TWIML, ParametersTooLong, check_parameters,
    check_webhook_url,
};
pub use settle::Settlement;
pub use settled::CallSettled;
pub use status::{StatusCallback, StatusError};
pub use twilio_dialer::{
    AMD_PATH, CALL_ID_PARAMETER, OutboundSetupError, STATUS_PATH, STREAM_PATH, TwilioDialer,
};
