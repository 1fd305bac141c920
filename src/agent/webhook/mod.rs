//! The call-completed webhook: a JSON body with the call's state, its
//! transcript and its outcome, delivered from an outbox in the store with
//! retries and exponential backoff, so a restart loses no delivery.
//!
//! Queued at the end of the evaluation job, once the call has been
//! evaluated and its post-call steps (extraction) have run; with neither an
//! evaluator nor steps, as soon as it is completed. The body:
//!
//! ```json
//! {"event_type": "call_completed", "event_id": "call_completed:CA123",
//!  "timestamp": "2026-01-15T10:30:00.000Z", "call_id": "CA123",
//!  "outcome": "success", "score": 0.9, "evaluation": {...},
//!  "extraction": {"status": "extracted", "data": {...}, ...},
//!  "call": {...call:{id}...}, "transcript": [...turns...]}
//! ```
//!
//! `[extraction] webhook_event` renames the event (`event_type`, the id's
//! prefix and `X-Voxpipe-Event`), e.g. `worker_profile_completed`.
//!
//! A call judged again (`voxpipe evaluate ID`) is a new event, its id
//! ending with the new verdict's time (`call_completed:CA123:2026-…Z`):
//! the first event's id stays delivered, so the new verdict would
//! otherwise never be posted.
//!
//! Headers: `X-Voxpipe-Event`, `X-Voxpipe-Event-Id` (the same on every
//! attempt), `X-Voxpipe-Attempt`, and with a secret `X-Voxpipe-Signature:
//! sha256=<hex HMAC-SHA256 of the body>`.
//!
//! Deliveries out of attempts wait in the dead letters;
//! [`redrive_dead_letters`] (`voxpipe webhook redrive`) puts them back.

mod config;
mod deliverer;
mod event;
mod metrics;
mod redrive;

pub use config::{CALL_COMPLETED, WebhookSection, WebhookSettings};
pub use deliverer::{DeliveryPass, WebhookDeliverer, signature};
pub use event::{PendingDelivery, QueueCallCompleted, queue_call_completed};
pub use metrics::{SIZES_PERIOD, WebhookMetrics};
pub use redrive::{Redriven, redrive_dead_letters};
