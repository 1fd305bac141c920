//! Campaigns: many numbers dialled at a shared rate, with a cap on live
//! calls, retries and a calling window, by every server on one store.
//!
//! | file | what |
//! |---|---|
//! | `request` | `POST /api/campaigns`'s body → the campaign to store, and the report on its rows |
//! | `numbers` | the numbers from a JSON list or CSV: E.164 per row, duplicates once, bad rows by line |
//! | `settings`, `window` | the rate, the cap, the retry policy; the calling window in a time zone |
//! | `runner` | each server's worker: lease due entries, dial at their slot, take back expired leases |
//! | `settlement` | a settled call ends its entry's try (done, or due again) |
//!
//! The state lives in the store ([`crate::store::CampaignStore`]); the
//! design (keys, leases, the rate, recovery) is in `docs/architecture.md`.

mod numbers;
mod request;
mod runner;
mod settings;
mod settlement;
mod window;

pub use numbers::{CsvError, NumberItem, Numbers, RejectedRow};
pub use request::{
    CampaignCreated, CampaignError, CampaignRequest, MAX_CAMPAIGN_ROWS, new_campaign_id,
};
pub use runner::{CampaignRunner, CampaignStats, RunnerOptions};
pub use settings::{
    CampaignSettings, MAX_CALLS_PER_SECOND, MIN_CALLS_PER_SECOND, RetryPolicy, SettingsError,
};
pub use settlement::{CampaignSettlement, attempt_call_id};
pub use window::{CallingWindow, Day, WindowError};
