//! [`StoreCallObjects`]: the post-call step that stores a call's
//! transcript, its profile (when extracted) and its audit record.

use std::sync::Arc;

use async_trait::async_trait;

use super::audit::{call_keys, json_bytes, sync_audit};
use super::documents::{profile, transcript};
use super::error::CallObjectsError;
use crate::agent::post_call::{PostCallError, PostCallStep};
use crate::objects::{ObjectKind, ObjectStorage};
use crate::store::{CallChange, CallRecord, PhoneHasher, Store, StoredObjects};

/// Stores a completed call's JSON objects. Idempotent: an object whose key
/// the call already records is not written again, and every key is
/// computed from the call, so a re-run (a reclaimed job) writes the same
/// objects at the same keys.
pub struct StoreCallObjects {
    store: Arc<dyn Store>,
    storage: ObjectStorage,
    hasher: Option<PhoneHasher>,
}

impl std::fmt::Debug for StoreCallObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCallObjects")
            .field("storage", &self.storage.url().to_string())
            .finish_non_exhaustive()
    }
}

impl StoreCallObjects {
    /// The step, reading calls from `store` and writing to `storage`.
    pub fn new(store: Arc<dyn Store>, storage: ObjectStorage) -> Self {
        StoreCallObjects {
            store,
            storage,
            hasher: None,
        }
    }

    /// Phone numbers in the documents are hashed with `hasher` (the
    /// deployment's salt); without one they are written `redacted`.
    #[must_use]
    pub fn with_phone_hasher(mut self, hasher: Option<PhoneHasher>) -> Self {
        self.hasher = hasher;
        self
    }

    async fn store_objects(&self, call: &CallRecord) -> Result<(), CallObjectsError> {
        let call_id = call.call_id.as_str();
        let keys = call_keys(call)?;
        let mut stored = StoredObjects::default();
        if call.objects.transcript.is_none() {
            let turns = self.store.turns(call_id).await?;
            let key = keys.key(ObjectKind::Transcript);
            self.storage
                .put(
                    &key,
                    json_bytes(&transcript(call, &turns, self.hasher.as_ref())),
                )
                .await?;
            stored.transcript = Some(key);
        }
        if call.objects.profile.is_none()
            && let Some(profile) = profile(call)
        {
            let key = keys.key(ObjectKind::Profile);
            self.storage.put(&key, json_bytes(&profile)).await?;
            stored.profile = Some(key);
        }
        if !stored.is_empty() {
            self.store
                .update_call(call_id, &CallChange::ObjectsStored(stored))
                .await?;
            tracing::info!(call_id, "transcript and profile stored");
        }
        sync_audit(&*self.store, &self.storage, self.hasher.as_ref(), call_id).await
    }
}

#[async_trait]
impl PostCallStep for StoreCallObjects {
    fn name(&self) -> &'static str {
        "storage"
    }

    async fn run(&self, call: &CallRecord) -> Result<(), PostCallError> {
        match self.store_objects(call).await {
            Ok(()) => Ok(()),
            Err(CallObjectsError::Store(err)) => Err(PostCallError::Store(err)),
            Err(CallObjectsError::Key(err)) => {
                // Permanent: a re-run would fail the same way.
                tracing::error!(call_id = %call.call_id, error = %err, "the call's objects cannot be stored");
                Ok(())
            }
            Err(CallObjectsError::Objects(err)) => {
                if err.is_refused() {
                    tracing::error!(call_id = %call.call_id, error = %err, "object storage refuses the credentials; the call's objects wait");
                }
                Err(PostCallError::Unavailable {
                    step: "storage",
                    reason: err.to_string(),
                })
            }
        }
    }
}
