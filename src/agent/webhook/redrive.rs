//! Dead letters back to the outbox (`voxpipe webhook redrive`): each one
//! the receiver missed for good gets a fresh set of attempts, due now.
//!
//! Each letter moves in one store transaction (it leaves the dead letters
//! as it enters the outbox), so a redrive stopped midway loses none and
//! doubles none. A letter is queued only by the redrive that took it out,
//! and only if its event is neither queued nor delivered: two redrives at
//! once, or a letter buried twice, deliver it once.

use crate::store::codec::encode;
use crate::store::{Store, StoreError};

use super::event::PendingDelivery;

/// What a redrive did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Redriven {
    /// Put back in the outbox.
    pub queued: usize,
    /// Taken out of the dead letters but not queued: its event was queued
    /// or delivered meanwhile, or another redrive took the letter first.
    pub skipped: usize,
    /// Left in the dead letters: not a delivery this version can read.
    pub unreadable: usize,
}

/// Moves up to `max` dead letters (the oldest) back to the outbox, due at
/// `now_ms`, their attempts counted from zero.
pub async fn redrive_dead_letters(
    store: &dyn Store,
    max: usize,
    now_ms: u64,
) -> Result<Redriven, StoreError> {
    let mut done = Redriven::default();
    for buried in store.dead_letters(max).await? {
        let Ok(mut delivery) = serde_json::from_str::<PendingDelivery>(&buried) else {
            done.unreadable += 1;
            continue;
        };
        delivery.attempts = 0;
        delivery.last_error = None;
        let payload = encode(&delivery.id, &delivery)?;
        if store
            .redrive_delivery(&buried, &delivery.id, &payload, now_ms)
            .await?
        {
            tracing::info!(id = %delivery.id, "dead letter put back in the webhook outbox");
            done.queued += 1;
        } else {
            tracing::info!(id = %delivery.id, "dead letter not requeued: its event is queued or delivered, or another redrive took it");
            done.skipped += 1;
        }
    }
    Ok(done)
}
