//! A campaign's state in the store: its numbers (entries) and where each
//! one is, shared by every server dialling it.
//!
//! An entry is pending (in `campaign:{id}:due`, by due time: now, or a
//! retry's time), leased (in `campaign:{id}:leases`, by lease end: a server
//! dials it; a dialled entry stays leased until its call settles), or done
//! (`campaign:{id}:done`, with its final status). A lease whose server died
//! expires and is reclaimed by another server. The number of leases is the
//! campaign's live calls, so `max_concurrent` holds across servers and a
//! dead server's slots come back when its leases expire.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::call_status::CallStatus;

/// Where a campaign is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CampaignState {
    /// Entries are dialled as they fall due.
    Running,
    /// Nothing new is dialled; live calls go on.
    Paused,
    /// Pending entries were finished as `canceled`; live calls go on.
    Canceled,
    /// Every entry is done.
    Finished,
}

impl CampaignState {
    /// `running`, `paused`, `canceled` or `finished`.
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignState::Running => "running",
            CampaignState::Paused => "paused",
            CampaignState::Canceled => "canceled",
            CampaignState::Finished => "finished",
        }
    }

    /// The state named `name`.
    pub fn parse(name: &str) -> Option<CampaignState> {
        [
            CampaignState::Running,
            CampaignState::Paused,
            CampaignState::Canceled,
            CampaignState::Finished,
        ]
        .into_iter()
        .find(|state| state.as_str() == name)
    }
}

/// What an operator asks of a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignCommand {
    /// Stop leasing entries.
    Pause,
    /// Lease entries again.
    Resume,
    /// Finish every pending entry as `canceled`.
    Cancel,
}

/// One number of a campaign, as stored in `campaign:{id}:entries`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignEntry {
    /// The number, E.164.
    pub to: String,
    /// The call's custom parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
}

/// A campaign to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCampaign {
    /// Its id.
    pub id: String,
    /// Its settings (JSON; the store keeps them as given).
    pub settings: String,
    /// Its numbers, deduplicated: entry `i` is `entries[i]`.
    pub entries: Vec<CampaignEntry>,
    /// Rows refused when it was created (bad numbers, malformed lines).
    pub rejected: u64,
    /// When it was created (Unix ms); its entries are due then.
    pub created_ms: u64,
}

impl NewCampaign {
    /// What the campaign asks (its settings, entries and refused rows) as
    /// a SHA-256 in hex, not when it was asked: a retried request plans
    /// the same campaign, so its fingerprint is the same.
    pub fn fingerprint(&self) -> String {
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        // The settings as a value with sorted keys: a client that sends its
        // `metadata` keys in another order asks for the same campaign.
        match serde_json::from_str::<serde_json::Value>(&self.settings) {
            Ok(settings) => digest.update(canonical_json(&settings).as_bytes()),
            Err(_) => digest.update(self.settings.as_bytes()),
        }
        for entry in &self.entries {
            digest.update(b"\0");
            digest.update(entry.to.as_bytes());
            for (name, value) in &entry.parameters {
                digest.update(b"\x01");
                digest.update(name.as_bytes());
                digest.update(b"\x02");
                digest.update(value.as_bytes());
            }
        }
        digest.update(format!("\0{}", self.rejected).as_bytes());
        digest
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// `value` as JSON text with every object's keys sorted.
fn canonical_json(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<(&String, &serde_json::Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let fields: Vec<String> = entries
                .into_iter()
                .map(|(key, value)| {
                    format!(
                        "{}:{}",
                        serde_json::Value::String(key.clone()),
                        canonical_json(value)
                    )
                })
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        serde_json::Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

/// What storing a campaign did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignWrite {
    /// It is stored.
    Created,
    /// Its id holds the same campaign already (a retried request): nothing
    /// was written again.
    Existing,
    /// Its id holds another campaign.
    Conflict,
    /// The same campaign is being stored by another request, claimed less
    /// than [`CAMPAIGN_CLAIM_MS`] ago and not written yet.
    InProgress,
}

/// How long a claim on a campaign id keeps other requests for it waiting:
/// past that, a claim whose campaign was never written (its request failed)
/// is taken over. The store's timeout bounds how long the writer waits for
/// its write, not when the write lands: a write that reaches Redis after
/// the takeover is refused by the claim's check (see the Redis store).
pub const CAMPAIGN_CLAIM_MS: u64 = 30_000;

/// A campaign's state and progress.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignProgress {
    /// Its settings, as stored.
    pub settings: String,
    /// Where it is.
    pub state: CampaignState,
    /// How many entries (numbers) it has.
    pub total: u64,
    /// Rows refused when it was created.
    pub rejected: u64,
    /// Entries waiting to be dialled (first tries and retries).
    pub pending: u64,
    /// Of `pending`, those waiting for a retry's due time.
    pub scheduled_retries: u64,
    /// Entries leased by a server: being dialled or on a live call.
    pub active: u64,
    /// Done entries by final status (`completed`, `busy`, ...).
    pub done: BTreeMap<String, u64>,
    /// When it was created (Unix ms).
    pub created_ms: u64,
}

/// The longest slot interval a store uses (µs): one call per 100 s, the
/// slowest rate a campaign accepts. It keeps the shared next slot far from
/// overflowing (Redis's Lua keeps it as a double, exact only to 2^53).
pub const MAX_SLOT_INTERVAL_US: u64 = 100_000_000;

/// Which entries a server may lease now: as many as `max_concurrent`
/// allows, each given the next slot of the campaign's shared rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRequest {
    /// Now (Unix ms).
    pub now_ms: u64,
    /// At most this many.
    pub max: usize,
    /// A lease lasts this long after its slot.
    pub lease_ms: u64,
    /// Leases (live calls) across all servers never exceed this.
    pub max_concurrent: u64,
    /// Microseconds between two slots (1 / `calls_per_second`); a store
    /// takes it as between 1 and [`MAX_SLOT_INTERVAL_US`].
    pub interval_us: u64,
    /// Slots are handed out up to this far ahead of now.
    pub horizon_ms: u64,
}

/// An entry a server holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedEntry {
    /// The entry's index.
    pub entry: u64,
    /// Its try, 1 for the first.
    pub attempt: u32,
    /// When it may be dialled (Unix ms): its slot of the campaign's rate.
    pub slot_ms: u64,
    /// The number and its parameters.
    pub target: CampaignEntry,
}

/// What becomes of a leased entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryOutcome {
    /// Its call ended in this final status: the entry is done.
    Done(CallStatus),
    /// Its call ended in a status the retry policy retries: tried again at
    /// `due_ms` (the next attempt).
    Retry {
        /// When (Unix ms).
        due_ms: u64,
    },
    /// It was not dialled (Twilio rate limiting, unavailable): pending
    /// again at `due_ms`, the same attempt.
    Release {
        /// When (Unix ms).
        due_ms: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign(settings: &str) -> NewCampaign {
        NewCampaign {
            id: "c".into(),
            settings: settings.into(),
            entries: vec![CampaignEntry {
                to: "+15550000001".into(),
                parameters: BTreeMap::new(),
            }],
            rejected: 0,
            created_ms: 1,
        }
    }

    #[test]
    fn a_campaign_is_the_same_whatever_order_its_metadata_keys_came_in() {
        let a = campaign(r#"{"rate":1,"metadata":{"batch":"q3","owner":"ada"}}"#);
        let b = campaign(r#"{"metadata":{"owner":"ada","batch":"q3"},"rate":1}"#);
        let c = campaign(r#"{"rate":1,"metadata":{"batch":"q4","owner":"ada"}}"#);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}
