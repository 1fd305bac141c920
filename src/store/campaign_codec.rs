//! Reading campaign state back, shared by both backends.

use std::collections::{BTreeMap, HashMap};

use super::error::StoreError;
use super::{CampaignProgress, CampaignState, LeasedEntry};

/// A campaign's progress from its hash's fields and its sets' sizes;
/// `None` when the hash does not exist.
pub(crate) fn progress(
    key: &str,
    mut fields: HashMap<String, String>,
    pending: u64,
    scheduled_retries: u64,
    active: u64,
) -> Result<Option<CampaignProgress>, StoreError> {
    let Some(state) = fields.remove("state") else {
        return Ok(None);
    };
    let state = CampaignState::parse(&state)
        .ok_or_else(|| StoreError::corrupt(key, format!("unknown state {state:?}")))?;
    let number = |fields: &HashMap<String, String>, name: &str| {
        fields
            .get(name)
            .map_or(Ok(0), |n| n.parse::<u64>())
            .map_err(|err| StoreError::corrupt(key, format!("{name}: {err}")))
    };
    let done = fields
        .iter()
        .filter_map(|(name, count)| Some((name.strip_prefix("done:")?, count)))
        .map(|(status, count)| {
            count
                .parse::<u64>()
                .map(|n| (status.to_owned(), n))
                .map_err(|err| StoreError::corrupt(key, format!("done:{status}: {err}")))
        })
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    Ok(Some(CampaignProgress {
        total: number(&fields, "total")?,
        rejected: number(&fields, "rejected")?,
        created_ms: number(&fields, "created_ms")?,
        settings: fields.remove("settings").unwrap_or_default(),
        state,
        pending,
        scheduled_retries,
        active,
        done,
    }))
}

/// Leased entries from flat (entry, attempt, slot ms, entry JSON)
/// quadruples.
pub(crate) fn leased(key: &str, flat: &[String]) -> Result<Vec<LeasedEntry>, StoreError> {
    flat.chunks(4)
        .map(|item| {
            let [entry, attempt, slot, json] = item else {
                return Err(StoreError::corrupt(key, "a lease answer cut short"));
            };
            let corrupt = |err: &dyn std::fmt::Display| StoreError::corrupt(key, err.to_string());
            Ok(LeasedEntry {
                entry: entry.parse().map_err(|e| corrupt(&e))?,
                attempt: attempt.parse().map_err(|e| corrupt(&e))?,
                slot_ms: slot.parse().map_err(|e| corrupt(&e))?,
                target: serde_json::from_str(json).map_err(|e| corrupt(&e))?,
            })
        })
        .collect()
}
