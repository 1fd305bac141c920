//! One audit record per call, complete whichever writer comes last.
//!
//! Two writers know part of what the audit record says: the post-call
//! step (transcript, profile) and the recording uploader (the recording),
//! in any order, possibly in two processes. Both record their keys in the
//! call (`CallChange::ObjectsStored`, an atomic update), then call
//! [`sync_audit`], which writes the record at its one key from the call
//! as stored and reads the call again: if the call changed what the record
//! says, it writes again. The writer whose key update came last sees every
//! key, so the last write holds them all; an earlier writer's stale write
//! either precedes it or is followed by that writer's own re-check, which
//! sees the change and rewrites. Until the step has stored its objects the
//! uploader leaves the audit to it.

use bytes::Bytes;

use super::documents::audit;
use super::error::CallObjectsError;
use crate::objects::{CallKeys, ObjectKind, ObjectStorage};
use crate::store::{CallChange, CallRecord, PhoneHasher, Store, StoredObjects};

/// Writes before giving up on a call that keeps changing (each round means
/// another writer stored something in between).
const ROUNDS: usize = 4;

/// The keys of `call`'s objects: its id and start date.
pub(crate) fn call_keys(call: &CallRecord) -> Result<CallKeys, CallObjectsError> {
    let started = call.started_at.as_deref().unwrap_or(&call.created_at);
    Ok(CallKeys::new(&call.call_id, started)?)
}

/// The document as bytes (JSON, pretty for people reading the bucket).
pub(crate) fn json_bytes(value: &serde_json::Value) -> Bytes {
    Bytes::from(serde_json::to_vec_pretty(value).unwrap_or_default())
}

/// Writes (or rewrites) the audit record of `call_id` once its step
/// objects are stored (see the module doc).
pub(crate) async fn sync_audit(
    store: &dyn Store,
    storage: &ObjectStorage,
    hasher: Option<&PhoneHasher>,
    call_id: &str,
) -> Result<(), CallObjectsError> {
    let url = storage.url().to_string();
    let mut call = store.call(call_id).await?;
    for _ in 0..ROUNDS {
        let Some(current) = call.take() else {
            return Ok(());
        };
        if current.objects.transcript.is_none() {
            return Ok(());
        }
        let key = call_keys(&current)?.key(ObjectKind::Audit);
        let document = audit(&current, &url, hasher);
        storage.put(&key, json_bytes(&document)).await?;
        let after = if current.objects.audit.as_deref() == Some(key.as_str()) {
            store.call(call_id).await?
        } else {
            let recorded = StoredObjects {
                audit: Some(key.clone()),
                ..StoredObjects::default()
            };
            store
                .update_call(call_id, &CallChange::ObjectsStored(recorded))
                .await?
        };
        match after {
            Some(after) if audit(&after, &url, hasher) != document => call = Some(after),
            _ => {
                tracing::info!(call_id, key, "audit record stored");
                return Ok(());
            }
        }
    }
    tracing::warn!(
        call_id,
        "the call kept changing while its audit record was written; the next writer completes it"
    );
    Ok(())
}
