//! The campaign worker each server runs: it leases the entries that fall
//! due (within the shared rate and the cap on live calls), dials each at
//! its slot, and takes back the entries whose lease ran out.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::outbound::{CallRequest, DialError, Dialer, PhoneNumber};
use crate::store::time::unix_ms;
use crate::store::{
    CallRecord, CallStatus, CampaignAttempt, CampaignState, EntryOutcome, LeaseRequest,
    LeasedEntry, Store, StoreError,
};

use super::settings::CampaignSettings;
use super::settlement::{Campaigns, attempt_call_id};

/// Entries leased or reclaimed per campaign per round.
const BATCH: usize = 200;
/// How long a campaign pauses after a dial whose answer is not known.
const UNCERTAIN_BACK_OFF: Duration = Duration::from_secs(5);
/// The longest a 429 holds a campaign back, whatever the dialler reports:
/// the back-off moves the rate slot every server shares.
const MAX_RATE_LIMIT_BACK_OFF: Duration = crate::transport::twilio::rest::MAX_RETRY_AFTER;

/// How the worker paces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunnerOptions {
    /// How often due entries are looked for (also on a [`CampaignRunner::wake`]).
    pub poll: Duration,
    /// How long a server holds an entry before dialling it: if it dies
    /// meanwhile, another takes the entry back after this.
    pub dial_lease: Duration,
    /// How long a dialled call may go without a final status before the
    /// entry is looked at again (and, still without one, ended as failed:
    /// the server that placed it stopped hearing of it).
    pub call_lease: Duration,
    /// Rate slots are handed out up to this far ahead.
    pub horizon: Duration,
    /// The wait before an entry is tried again when Twilio is unavailable.
    pub unavailable_backoff: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            poll: Duration::from_millis(200),
            dial_lease: Duration::from_secs(30),
            call_lease: Duration::from_secs(3600),
            horizon: Duration::from_secs(1),
            unavailable_backoff: Duration::from_secs(10),
        }
    }
}

/// Where campaign figures go (the server's `/metrics`).
pub trait CampaignStats: Send + Sync {
    /// A dial ended with `result` (`placed`, `uncertain`, `rate_limited`,
    /// `refused`, `number_limited`, `settled`, `unavailable`, `error`) after
    /// `seconds`.
    fn dialled(&self, result: &'static str, seconds: f64);
    /// Entries of every unfinished campaign, by where they are.
    fn entries(&self, pending: u64, active: u64, done: u64);
}

/// One server's campaign worker.
#[derive(Clone)]
pub struct CampaignRunner {
    campaigns: Arc<Campaigns>,
    dialer: Arc<dyn Dialer>,
    options: RunnerOptions,
    stats: Option<Arc<dyn CampaignStats>>,
    wake: Arc<Notify>,
    /// Campaigns this server heard a 429 for, until when (Unix ms): slots
    /// leased before the back-off was stored are handed back, not dialled.
    backing_off: Arc<Mutex<HashMap<String, u64>>>,
}

impl CampaignRunner {
    /// A worker dialling `store`'s campaigns through `dialer`.
    pub fn new(store: Arc<dyn Store>, dialer: Arc<dyn Dialer>, options: RunnerOptions) -> Self {
        CampaignRunner {
            campaigns: Arc::new(Campaigns::new(store)),
            dialer,
            options,
            stats: None,
            wake: Arc::new(Notify::new()),
            backing_off: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Reports to `stats`.
    pub fn with_stats(mut self, stats: Arc<dyn CampaignStats>) -> Self {
        self.stats = Some(stats);
        self
    }

    /// Looks for due entries now (a campaign was created or resumed).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs until `stop` resolves; then hands back the entries leased but
    /// not dialled yet and waits for the dials under way.
    pub async fn run(&self, stop: impl Future<Output = ()>) {
        let (stopping, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tokio::pin!(stop);
        loop {
            while tasks.try_join_next().is_some() {}
            if let Err(err) = self.round(&mut tasks, &stopped).await {
                tracing::warn!(error = %err, "campaign round failed; trying again");
            }
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(self.options.poll) => {}
                () = self.wake.notified() => {}
            }
        }
        let _ = stopping.send(true);
        while tasks.join_next().await.is_some() {}
    }

    /// One look at every unfinished campaign.
    async fn round(
        &self,
        tasks: &mut JoinSet<()>,
        stopped: &watch::Receiver<bool>,
    ) -> Result<(), StoreError> {
        let store = &self.campaigns.store;
        let ids = store.active_campaigns().await?;
        self.campaigns.keep_only(&ids);
        let (mut pending, mut active, mut done) = (0, 0, 0);
        for id in &ids {
            let Some(progress) = store.campaign(id).await? else {
                continue;
            };
            pending += progress.pending;
            active += progress.active;
            done += progress.done.values().sum::<u64>();
            let ended = matches!(
                progress.state,
                CampaignState::Canceled | CampaignState::Finished
            );
            if ended && progress.active == 0 {
                // Listed still: the unlisting that ended it failed.
                if let Err(err) = store.unlist_ended_campaign(id).await {
                    tracing::warn!(campaign_id = %id, error = %err, "ended campaign not unlisted; trying again next round");
                }
                continue;
            }
            let settings = self.campaigns.settings_from(id, &progress.settings)?;
            let now = unix_ms();
            let until = now.saturating_add(millis(self.options.dial_lease));
            for entry in store.reclaim_entries(id, now, until, BATCH).await? {
                let runner = self.clone();
                let id = id.clone();
                tasks.spawn(async move { runner.recover(&id, entry).await });
            }
            let open = settings.window.as_ref().is_none_or(|w| w.is_open(now));
            if progress.state != CampaignState::Running || !open {
                continue;
            }
            let request = LeaseRequest {
                now_ms: now,
                max: BATCH,
                lease_ms: millis(self.options.dial_lease),
                max_concurrent: settings.max_concurrent,
                interval_us: settings.slot_interval_us(),
                horizon_ms: millis(self.options.horizon),
            };
            for entry in store.lease_entries(id, &request).await? {
                let runner = self.clone();
                let (id, settings) = (id.clone(), Arc::clone(&settings));
                let stopped = stopped.clone();
                tasks.spawn(async move { runner.dial(&id, &settings, entry, stopped).await });
            }
        }
        if let Some(stats) = &self.stats {
            stats.entries(pending, active, done);
        }
        Ok(())
    }

    /// Dials a leased entry at its slot.
    async fn dial(
        &self,
        campaign_id: &str,
        settings: &CampaignSettings,
        leased: LeasedEntry,
        mut stopped: watch::Receiver<bool>,
    ) {
        let wait = Duration::from_millis(leased.slot_ms.saturating_sub(unix_ms()));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stopped.changed() => {
                let back = EntryOutcome::Release { due_ms: unix_ms() };
                self.finish(campaign_id, &leased, back).await;
                return;
            }
        }
        if let Some(until) = self.backing_off(campaign_id) {
            self.finish(
                campaign_id,
                &leased,
                EntryOutcome::Release { due_ms: until },
            )
            .await;
            return;
        }
        if !self.still_running(campaign_id, &leased).await {
            return;
        }
        let attempt = CampaignAttempt {
            campaign_id: campaign_id.to_owned(),
            entry: leased.entry,
            attempt: leased.attempt,
        };
        let call_id = attempt_call_id(campaign_id, leased.entry, leased.attempt);
        let Ok(to) = PhoneNumber::parse(&leased.target.to) else {
            // Checked when queued; a hand-edited entry ends here.
            self.finish(campaign_id, &leased, EntryOutcome::Done(CallStatus::Failed))
                .await;
            return;
        };
        let request = CallRequest {
            to,
            from: None,
            parameters: leased.target.parameters.clone(),
            webhook_url: settings.webhook_url.clone(),
            metadata: settings.metadata.clone(),
            campaign: Some(attempt.clone()),
        };
        let started = tokio::time::Instant::now();
        let result = self.dialer.dial(&call_id, &request).await;
        let seconds = started.elapsed().as_secs_f64();
        let now = unix_ms();
        let label = match result {
            // Perhaps placed: held as a live call, so the entry is not
            // dialled again; its callbacks, or the dialler's check that
            // fails an unconfirmed call, settle it.
            Ok(_) | Err(DialError::Uncertain(_) | DialError::AlreadyAsked(_)) => {
                let until = now.saturating_add(millis(self.options.call_lease));
                if let Err(err) = self
                    .campaigns
                    .store
                    .extend_lease(campaign_id, leased.entry, until)
                    .await
                {
                    tracing::warn!(campaign_id, entry = leased.entry, error = %err, "lease not extended");
                }
                if result.is_ok() {
                    "placed"
                } else if matches!(result, Err(DialError::AlreadyAsked(_))) {
                    "already_asked"
                } else {
                    // Twilio is slow or failing (a lost answer, a 5xx that
                    // may have placed it): a pause, so that an outage costs
                    // the campaign a few entries, not one a slot.
                    tracing::warn!(
                        campaign_id,
                        "Twilio's answer is not known: the campaign backs off"
                    );
                    self.back_off(campaign_id, now.saturating_add(millis(UNCERTAIN_BACK_OFF)))
                        .await;
                    "uncertain"
                }
            }
            Err(DialError::RateLimited { retry_after }) => {
                let retry_after = retry_after.min(MAX_RATE_LIMIT_BACK_OFF);
                let until = now.saturating_add(millis(retry_after));
                tracing::warn!(
                    campaign_id,
                    retry_after_ms = millis(retry_after),
                    "Twilio is rate limiting: the campaign backs off"
                );
                self.back_off(campaign_id, until).await;
                self.finish(
                    campaign_id,
                    &leased,
                    EntryOutcome::Release { due_ms: until },
                )
                .await;
                "rate_limited"
            }
            Err(DialError::Refused { status, code, .. }) => {
                tracing::warn!(
                    campaign_id,
                    entry = leased.entry,
                    status,
                    ?code,
                    "Twilio refused the call"
                );
                // Dialling again will not help: done, whatever the policy.
                self.finish(campaign_id, &leased, EntryOutcome::Done(CallStatus::Failed))
                    .await;
                "refused"
            }
            Err(DialError::NumberLimited { phone_hash }) => {
                tracing::info!(
                    campaign_id,
                    entry = leased.entry,
                    phone_hash,
                    "number called too recently or live: the entry ends failed"
                );
                self.finish(campaign_id, &leased, EntryOutcome::Done(CallStatus::Failed))
                    .await;
                "number_limited"
            }
            Err(DialError::Settled { status, placed }) => {
                // A try placed before (by a server that stopped) has ended.
                if let Err(err) = self.campaigns.settle(&attempt, status, placed).await {
                    tracing::warn!(campaign_id, entry = leased.entry, error = %err, "entry not settled");
                }
                "settled"
            }
            Err(DialError::Unavailable(reason)) => {
                tracing::warn!(campaign_id, entry = leased.entry, %reason, "Twilio unavailable; the entry waits");
                let due_ms = now.saturating_add(millis(self.options.unavailable_backoff));
                self.finish(campaign_id, &leased, EntryOutcome::Release { due_ms })
                    .await;
                "unavailable"
            }
            Err(DialError::Store(err)) => {
                // The lease runs out and the entry is looked at again.
                tracing::warn!(campaign_id, entry = leased.entry, error = %err, "call not placed: store error");
                "error"
            }
        };
        if let Some(stats) = &self.stats {
            stats.dialled(label, seconds);
        }
    }

    /// Whether the campaign still runs now that the entry's slot has come
    /// (up to `horizon` after its lease): one paused or canceled meanwhile
    /// has the entry handed back undialled (due again; a canceled
    /// campaign's entry ends canceled). A store that cannot say leaves the
    /// entry undialled until its lease ends and it is reclaimed.
    async fn still_running(&self, campaign_id: &str, leased: &LeasedEntry) -> bool {
        match self.campaigns.store.campaign_state(campaign_id).await {
            Ok(Some(CampaignState::Running)) => true,
            Ok(state) => {
                tracing::info!(
                    campaign_id,
                    entry = leased.entry,
                    state = state.map_or("gone", CampaignState::as_str),
                    "the campaign stopped running: the entry is handed back undialled"
                );
                let back = EntryOutcome::Release { due_ms: unix_ms() };
                self.finish(campaign_id, leased, back).await;
                false
            }
            Err(err) => {
                tracing::warn!(campaign_id, entry = leased.entry, error = %err, "the campaign's state is not known: the entry waits for its lease to end");
                false
            }
        }
    }

    /// An entry whose lease ran out: its try's call record says what
    /// became of it.
    async fn recover(&self, campaign_id: &str, leased: LeasedEntry) {
        let call_id = attempt_call_id(campaign_id, leased.entry, leased.attempt);
        let record = match self.campaigns.store.call(&call_id).await {
            Ok(record) => record,
            Err(err) => {
                tracing::warn!(campaign_id, entry = leased.entry, error = %err, "reclaimed entry not looked at");
                return;
            }
        };
        let now = unix_ms();
        let outcome = match record {
            Some(record) if record.status.is_final() => {
                let attempt = CampaignAttempt {
                    campaign_id: campaign_id.to_owned(),
                    entry: leased.entry,
                    attempt: leased.attempt,
                };
                let placed = record
                    .outbound
                    .as_ref()
                    .is_some_and(|o| o.twilio_sid.is_some());
                if let Err(err) = self.campaigns.settle(&attempt, record.status, placed).await {
                    tracing::warn!(campaign_id, entry = leased.entry, error = %err, "reclaimed entry not settled");
                }
                return;
            }
            Some(record) if record.status != CallStatus::Queued => {
                let lease_end = dialled_ms(&record).saturating_add(millis(self.options.call_lease));
                if lease_end > now {
                    // Placed by a server that stopped: its call may still
                    // settle through another server.
                    if let Err(err) = self
                        .campaigns
                        .store
                        .extend_lease(campaign_id, leased.entry, lease_end)
                        .await
                    {
                        tracing::warn!(campaign_id, error = %err, "lease not extended");
                    }
                    return;
                }
                tracing::warn!(
                    campaign_id,
                    entry = leased.entry,
                    phone_hash = record
                        .outbound
                        .as_ref()
                        .map_or("", |o| o.phone_hash.as_str()),
                    "no final status within the call lease: the entry ends failed"
                );
                EntryOutcome::Done(CallStatus::Failed)
            }
            // Never placed, or placed by a server that stopped before
            // Twilio answered: due again, the same try (the same call id,
            // which the dialler never places twice).
            _ => EntryOutcome::Release { due_ms: now },
        };
        self.finish(campaign_id, &leased, outcome).await;
    }

    /// Holds every server's next dial of `campaign_id` until `until_ms`.
    async fn back_off(&self, campaign_id: &str, until_ms: u64) {
        {
            let mut backing_off = self.backing_off_lock();
            let until = backing_off
                .entry(campaign_id.to_owned())
                .or_insert(until_ms);
            *until = (*until).max(until_ms);
        }
        if let Err(err) = self
            .campaigns
            .store
            .back_off_campaign(campaign_id, until_ms)
            .await
        {
            tracing::warn!(campaign_id, error = %err, "back-off not stored");
        }
    }

    fn backing_off_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.backing_off.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When this server's back-off of the campaign ends, if it has not.
    fn backing_off(&self, campaign_id: &str) -> Option<u64> {
        let now = unix_ms();
        let mut backing_off = self.backing_off_lock();
        backing_off.retain(|_, until| *until > now);
        backing_off.get(campaign_id).copied()
    }

    async fn finish(&self, campaign_id: &str, leased: &LeasedEntry, outcome: EntryOutcome) {
        let result = self
            .campaigns
            .store
            .finish_entry(campaign_id, leased.entry, leased.attempt, outcome)
            .await;
        if let Err(err) = result {
            tracing::warn!(campaign_id, entry = leased.entry, error = %err, "entry not updated; its lease will bring it back");
        }
    }
}

/// When the call was handed to Twilio (its creation, if not recorded).
fn dialled_ms(record: &CallRecord) -> u64 {
    let at = record
        .outbound
        .as_ref()
        .and_then(|o| o.dialled_at.as_deref())
        .unwrap_or(&record.created_at);
    at.parse::<jiff::Timestamp>()
        .ok()
        .and_then(|t| u64::try_from(t.as_millisecond()).ok())
        .unwrap_or(0)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
