//! The call-completed event: its body, and its state in the outbox.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::config::WebhookSettings;
use crate::agent::writer::AfterCall;
use crate::store::codec::encode;
use crate::store::time::{rfc3339, unix_ms};
use crate::store::{Enqueued, Store, StoreError};

/// A delivery as kept in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingDelivery {
    /// `{event}:{call_id}` (`call_completed:CA123`), or for a call judged
    /// again (`voxpipe evaluate ID`) `{event}:{call_id}:{evaluated at}`: the
    /// same for every attempt, so receivers can drop repeats (delivery is
    /// at least once), and new for a new verdict.
    pub id: String,
    /// Where to POST.
    pub url: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The last failure, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The JSON body.
    pub body: serde_json::Value,
}

/// The after-call hook that queues the call-completed webhook.
#[derive(Debug, Clone)]
pub struct QueueCallCompleted(pub Arc<WebhookSettings>);

#[async_trait::async_trait]
impl AfterCall for QueueCallCompleted {
    async fn queue(&self, store: &dyn Store, call_id: &str) -> Result<(), StoreError> {
        queue_call_completed(store, &self.0, call_id, None)
            .await
            .map(|_| ())
    }
}

/// Queues the call-completed webhook of `call_id`: the call's state, its
/// transcript, its outcome and its extraction as they are now. Queuing twice is harmless
/// (the outbox keeps one delivery per id, for 7 days after its delivery).
///
/// `revision` names a new version of the event, a new evaluation of a call
/// already judged: it ends the event's id, so the new verdict is a new
/// event rather than a repeat of the delivered one.
pub async fn queue_call_completed(
    store: &dyn Store,
    settings: &WebhookSettings,
    call_id: &str,
    revision: Option<&str>,
) -> Result<Enqueued, StoreError> {
    // Both reads at once: one round trip's wait, not two.
    let (call, transcript) = tokio::try_join!(store.call(call_id), store.turns(call_id))?;
    let Some(call) = call else {
        tracing::warn!(call_id, "no stored call: webhook not queued");
        return Ok(Enqueued::Pending);
    };
    let event = settings.event.as_str();
    let id = match revision {
        Some(revision) => format!("{event}:{call_id}:{revision}"),
        None => format!("{event}:{call_id}"),
    };
    let body = serde_json::json!({
        "event_type": event,
        "event_id": id,
        "timestamp": rfc3339(unix_ms()),
        "call_id": call_id,
        "outcome": call.outcome,
        "score": call.score,
        "evaluation": call.evaluation,
        "extraction": call.extraction,
        "objects": {
            "recording": call.objects.recording,
            "transcript": call.objects.transcript,
            "profile": call.objects.profile,
            "audit": call.objects.audit,
        },
        "call": call,
        "transcript": transcript,
    });
    // An outbound call may name its own endpoint (`POST /api/calls`).
    let url = call
        .outbound
        .as_ref()
        .and_then(|outbound| outbound.webhook_url.clone())
        .unwrap_or_else(|| settings.url.clone());
    let delivery = PendingDelivery {
        id: id.clone(),
        url,
        attempts: 0,
        last_error: None,
        body,
    };
    let payload = encode(&id, &delivery)?;
    let enqueued = store.enqueue_delivery(&id, &payload, unix_ms()).await?;
    match enqueued {
        Enqueued::Queued => {
            tracing::info!(call_id, event_id = %id, "call-completed webhook queued");
        }
        Enqueued::Delivered => tracing::info!(
            call_id,
            event_id = %id,
            "call-completed webhook already delivered: not queued again"
        ),
        Enqueued::Pending => {
            tracing::debug!(call_id, event_id = %id, "call-completed webhook already queued")
        }
    }
    Ok(enqueued)
}
