//! Ending an entry's try when its call settles: done, or due again by the
//! retry policy. Shared by the runner (dials that fail, leases reclaimed)
//! and the [`CallSettled`] listener (status callbacks).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::outbound::CallSettled;
use crate::store::time::unix_ms;
use crate::store::{CallRecord, CallStatus, CampaignAttempt, EntryOutcome, Store, StoreError};

use super::settings::CampaignSettings;

/// The call id of try `attempt` of entry `entry`: the same on every server
/// and after a restart, so a try whose lease comes back finds its call.
pub fn attempt_call_id(campaign_id: &str, entry: u64, attempt: u32) -> String {
    format!("{campaign_id}-{entry}-{attempt}")
}

/// The store and each campaign's settings (read once: they never change).
pub(crate) struct Campaigns {
    pub(crate) store: Arc<dyn Store>,
    settings: Mutex<HashMap<String, Arc<CampaignSettings>>>,
}

impl Campaigns {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Campaigns {
            store,
            settings: Mutex::new(HashMap::new()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<CampaignSettings>>> {
        self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The settings of a campaign, from `json` if not known yet.
    pub(crate) fn settings_from(
        &self,
        campaign_id: &str,
        json: &str,
    ) -> Result<Arc<CampaignSettings>, StoreError> {
        if let Some(settings) = self.cache().get(campaign_id) {
            return Ok(Arc::clone(settings));
        }
        let settings: Arc<CampaignSettings> = Arc::new(
            serde_json::from_str(json)
                .map_err(|err| StoreError::corrupt(&format!("campaign:{campaign_id}"), err))?,
        );
        self.cache()
            .insert(campaign_id.to_owned(), Arc::clone(&settings));
        Ok(settings)
    }

    /// The settings of a campaign; `None` when it is not stored.
    async fn settings(
        &self,
        campaign_id: &str,
    ) -> Result<Option<Arc<CampaignSettings>>, StoreError> {
        if let Some(settings) = self.cache().get(campaign_id) {
            return Ok(Some(Arc::clone(settings)));
        }
        match self.store.campaign(campaign_id).await? {
            None => Ok(None),
            Some(progress) => self
                .settings_from(campaign_id, &progress.settings)
                .map(Some),
        }
    }

    /// Forgets the settings of campaigns not in `active`.
    pub(crate) fn keep_only(&self, active: &[String]) {
        self.cache().retain(|id, _| active.contains(id));
    }

    /// Ends `attempt` with `status`: done, or due again after the retry
    /// policy's backoff. A call never `placed` at Twilio (refused, the
    /// number held, canceled before dialling, never confirmed) is done
    /// whatever the policy: the policy is for calls that rang, and dialling
    /// a refused number again will not help. False when it was ended
    /// already.
    pub(crate) async fn settle(
        &self,
        attempt: &CampaignAttempt,
        status: CallStatus,
        placed: bool,
    ) -> Result<bool, StoreError> {
        let Some(settings) = self.settings(&attempt.campaign_id).await? else {
            return Ok(false);
        };
        let retry = placed
            .then(|| settings.retry.next_try(status, attempt.attempt, unix_ms()))
            .flatten();
        let outcome = match retry {
            Some(due_ms) => EntryOutcome::Retry { due_ms },
            None => EntryOutcome::Done(status),
        };
        let applied = self
            .store
            .finish_entry(
                &attempt.campaign_id,
                attempt.entry,
                attempt.attempt,
                outcome,
            )
            .await?;
        if applied {
            tracing::info!(
                campaign_id = %attempt.campaign_id,
                entry = attempt.entry,
                attempt = attempt.attempt,
                status = status.as_str(),
                retry = matches!(outcome, EntryOutcome::Retry { .. }),
                "campaign entry settled"
            );
        }
        Ok(applied)
    }
}

/// The [`CallSettled`] listener: a campaign call's final status ends its
/// entry's try.
pub struct CampaignSettlement(pub(crate) Arc<Campaigns>);

impl CampaignSettlement {
    /// A listener settling entries in `store` (any server's listener
    /// settles any campaign: the state is in the store).
    pub fn new(store: Arc<dyn Store>) -> Self {
        CampaignSettlement(Arc::new(Campaigns::new(store)))
    }
}

#[async_trait]
impl CallSettled for CampaignSettlement {
    async fn call_settled(&self, call: &CallRecord) {
        let Some(outbound) = &call.outbound else {
            return;
        };
        let Some(attempt) = &outbound.campaign else {
            return;
        };
        let placed = outbound.twilio_sid.is_some();
        if let Err(err) = self.0.settle(attempt, call.status, placed).await {
            // The entry's lease runs out and another look at the call
            // record settles it then.
            tracing::warn!(
                campaign_id = %attempt.campaign_id,
                entry = attempt.entry,
                phone_hash = %outbound.phone_hash,
                error = %err,
                "campaign entry not settled; its lease will bring it back"
            );
        }
    }
}
