//! The call-completed webhook: a JSON body with the call's state, its
//! transcript and its outcome, delivered from an outbox in the store with
//! retries and exponential backoff, so a restart loses no delivery.
//!
//! Queued when a call has been evaluated (or, with no evaluator, when it is
//! completed). The body:
//!
//! ```json
//! {"event_type": "call_completed", "event_id": "call_completed:CA123",
//!  "timestamp": "2026-01-15T10:30:00.000Z", "call_id": "CA123",
//!  "outcome": "success", "score": 0.9, "evaluation": {...},
//!  "call": {...call:{id}...}, "transcript": [...turns...]}
//! ```
//!
//! Headers: `X-Voxpipe-Event`, `X-Voxpipe-Event-Id` (the same on every
//! attempt), `X-Voxpipe-Attempt`, and with a secret `X-Voxpipe-Signature:
//! sha256=<hex HMAC-SHA256 of the body>`.

mod config;
mod deliverer;
mod event;

pub use config::{WebhookSection, WebhookSettings};
pub use deliverer::{DeliveryPass, WebhookDeliverer, signature};
pub use event::{CALL_COMPLETED, PendingDelivery, QueueCallCompleted, queue_call_completed};
