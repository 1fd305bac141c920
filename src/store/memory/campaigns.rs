//! Campaigns in the embedded store: the Redis scripts' steps, each under
//! the store's lock.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;

use super::keyspace::{Blob, Keyspace, Op};
use super::store::MemoryStore;
use crate::store::codec::encode;
use crate::store::{
    CampaignCommand, CampaignProgress, CampaignState, CampaignStore, CampaignWrite, EntryOutcome,
    Keys, LeaseRequest, LeasedEntry, NewCampaign, StoreError,
};

/// One campaign's key names.
struct CampaignKeys {
    id: String,
    campaign: String,
    entries: String,
    due: String,
    leases: String,
    attempts: String,
    done: String,
    active: String,
}

impl CampaignKeys {
    fn new(keys: &Keys, id: &str) -> Self {
        CampaignKeys {
            id: id.to_owned(),
            campaign: keys.campaign(id, None),
            entries: keys.campaign(id, Some("entries")),
            due: keys.campaign(id, Some("due")),
            leases: keys.campaign(id, Some("leases")),
            attempts: keys.campaign(id, Some("attempts")),
            done: keys.campaign(id, Some("done")),
            active: keys.active_campaigns(),
        }
    }
}

fn field(ks: &Keyspace, key: &str, name: &str, now: u64) -> Option<String> {
    ks.hash(key, now)?
        .get(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn set_fields(key: &str, fields: &[(&str, String)]) -> Op {
    Op::HSet {
        key: key.to_owned(),
        fields: fields
            .iter()
            .map(|(name, value)| ((*name).to_owned(), Blob(value.clone().into_bytes())))
            .collect(),
    }
}

fn zcard(ks: &Keyspace, key: &str, now: u64) -> usize {
    ks.sorted(key, now).map_or(0, BTreeMap::len)
}

/// The members of a sorted set scored at most `max_score` (below it when
/// `exclusive`), by score then member, up to `limit`.
fn by_score(
    ks: &Keyspace,
    key: &str,
    max_score: u64,
    exclusive: bool,
    limit: usize,
    now: u64,
) -> Vec<String> {
    let mut members: Vec<(u64, &String)> = ks
        .sorted(key, now)
        .into_iter()
        .flatten()
        .filter(|&(_, &score)| score < max_score || (!exclusive && score == max_score))
        .map(|(member, &score)| (score, member))
        .collect();
    members.sort();
    members
        .into_iter()
        .take(limit)
        .map(|(_, m)| m.clone())
        .collect()
}

/// Adds the lease answer for `id` (as the Redis scripts do).
fn lease_item(ks: &Keyspace, keys: &CampaignKeys, id: &str, slot: u64, now: u64) -> Vec<String> {
    vec![
        id.to_owned(),
        field(ks, &keys.attempts, id, now).unwrap_or_else(|| "1".to_owned()),
        slot.to_string(),
        field(ks, &keys.entries, id, now).unwrap_or_default(),
    ]
}

#[async_trait]
impl CampaignStore for MemoryStore {
    async fn create_campaign(&self, campaign: &NewCampaign) -> Result<CampaignWrite, StoreError> {
        let keys = CampaignKeys::new(&self.settings.keys, &campaign.id);
        let fingerprint = campaign.fingerprint();
        let entries = campaign
            .entries
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                Ok((
                    index.to_string(),
                    Blob(encode(&keys.entries, entry)?.into_bytes()),
                ))
            })
            .collect::<Result<BTreeMap<_, _>, StoreError>>()?;
        let state = if campaign.entries.is_empty() {
            CampaignState::Finished
        } else {
            CampaignState::Running
        };
        // Claimed and written under one lock: no request sees it half-written.
        self.write(|ks, now| {
            if field(ks, &keys.campaign, "state", now).is_some() {
                let same = field(ks, &keys.campaign, "fingerprint", now)
                    .is_some_and(|stored| stored == fingerprint);
                let write = if same {
                    CampaignWrite::Existing
                } else {
                    CampaignWrite::Conflict
                };
                return (Vec::new(), write);
            }
            let mut ops = vec![set_fields(
                &keys.campaign,
                &[
                    ("fingerprint", fingerprint.clone()),
                    ("claimed_ms", now.to_string()),
                    ("settings", campaign.settings.clone()),
                    ("state", state.as_str().to_owned()),
                    ("total", campaign.entries.len().to_string()),
                    ("rejected", campaign.rejected.to_string()),
                    ("created_ms", campaign.created_ms.to_string()),
                ],
            )];
            ops.extend((0..campaign.entries.len()).map(|index| Op::ZAdd {
                key: keys.due.clone(),
                member: index.to_string(),
                score: campaign.created_ms,
            }));
            ops.push(Op::HSet {
                key: keys.entries.clone(),
                fields: entries,
            });
            if state == CampaignState::Running {
                ops.push(Op::ZAdd {
                    key: keys.active.clone(),
                    member: campaign.id.clone(),
                    score: campaign.created_ms,
                });
            }
            (ops, CampaignWrite::Created)
        })
    }

    async fn campaign(&self, campaign_id: &str) -> Result<Option<CampaignProgress>, StoreError> {
        let keys = CampaignKeys::new(&self.settings.keys, campaign_id);
        let (fields, pending, scheduled, active) = self.read(|ks, now| {
            let fields: HashMap<String, String> = ks
                .hash(&keys.campaign, now)
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
                .collect();
            let due = ks.sorted(&keys.due, now);
            let pending = due.map_or(0, BTreeMap::len) as u64;
            let scheduled = due
                .into_iter()
                .flatten()
                .filter(|&(_, &score)| score > now)
                .count() as u64;
            (
                fields,
                pending,
                scheduled,
                zcard(ks, &keys.leases, now) as u64,
            )
        })?;
        crate::store::campaign_codec::progress(&keys.campaign, fields, pending, scheduled, active)
    }

    async fn active_campaigns(&self) -> Result<Vec<String>, StoreError> {
        let key = self.settings.keys.active_campaigns();
        self.read(|ks, now| by_score(ks, &key, u64::MAX, false, usize::MAX, now))
    }

    async fn unlist_ended_campaign(&self, campaign_id: &str) -> Result<(), StoreError> {
        let keys = CampaignKeys::new(&self.settings.keys, campaign_id);
        self.write(|ks, now| {
            let state = field(ks, &keys.campaign, "state", now);
            let ended = state
                .as_deref()
                .and_then(CampaignState::parse)
                .is_some_and(|state| {
                    matches!(state, CampaignState::Canceled | CampaignState::Finished)
                });
            let live = (state.is_some() && !ended) || zcard(ks, &keys.leases, now) > 0;
            let mut ops = Vec::new();
            if !live {
                ops.push(Op::ZRem {
                    key: keys.active.clone(),
                    member: keys.id.clone(),
                });
            }
            (ops, ())
        })
    }

    async fn command_campaign(
        &self,
        campaign_id: &str,
        command: CampaignCommand,
    ) -> Result<Option<CampaignState>, StoreError> {
        let keys = CampaignKeys::new(&self.settings.keys, campaign_id);
        self.write(|ks, now| {
            let Some(state) = field(ks, &keys.campaign, "state", now) else {
                return (Vec::new(), Ok(None));
            };
            let Some(state) = CampaignState::parse(&state) else {
                let err = StoreError::corrupt(&keys.campaign, format!("unknown state {state:?}"));
                return (Vec::new(), Err(err));
            };
            if matches!(state, CampaignState::Canceled | CampaignState::Finished) {
                return (Vec::new(), Ok(Some(state)));
            }
            let mut ops = Vec::new();
            let next = match command {
                CampaignCommand::Pause => CampaignState::Paused,
                CampaignCommand::Resume => CampaignState::Running,
                CampaignCommand::Cancel => {
                    let ids = by_score(ks, &keys.due, u64::MAX, false, usize::MAX, now);
                    let canceled = done_count(ks, &keys, "canceled", now) + ids.len() as u64;
                    ops.push(Op::HSet {
                        key: keys.done.clone(),
                        fields: ids
                            .iter()
                            .map(|id| (id.clone(), Blob(b"canceled".to_vec())))
                            .collect(),
                    });
                    ops.push(set_fields(
                        &keys.campaign,
                        &[("done:canceled", canceled.to_string())],
                    ));
                    ops.push(Op::Del {
                        key: keys.due.clone(),
                    });
                    if zcard(ks, &keys.leases, now) == 0 {
                        ops.push(Op::ZRem {
                            key: keys.active.clone(),
                            member: keys.id.clone(),
                        });
                    }
                    CampaignState::Canceled
                }
            };
            ops.push(set_fields(
                &keys.campaign,
                &[("state", next.as_str().to_owned())],
            ));
            (ops, Ok(Some(next)))
        })?
    }

    async fn lease_entries(
        &self,
        campaign_id: &str,
        request: &LeaseRequest,
    ) -> Result<Vec<LeasedEntry>, StoreError> {
        let keys = CampaignKeys::new(&self.settings.keys, campaign_id);
        let flat = self.write(|ks, now| {
            if field(ks, &keys.campaign, "state", now).as_deref() != Some("running") {
                return (Vec::new(), Vec::new());
            }
            let room = request
                .max_concurrent
                .saturating_sub(zcard(ks, &keys.leases, now) as u64);
            let want = usize::try_from(room).unwrap_or(usize::MAX).min(request.max);
            let interval = request
                .interval_us
                .clamp(1, crate::store::MAX_SLOT_INTERVAL_US);
            let mut tat = field(ks, &keys.campaign, "tat_us", now)
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(0)
                .max(request.now_ms.saturating_mul(1000));
            let horizon = request
                .now_ms
                .saturating_add(request.horizon_ms)
                .saturating_mul(1000);
            let mut ops = Vec::new();
            let mut flat = Vec::new();
            for id in by_score(ks, &keys.due, request.now_ms, false, want, now) {
                if tat > horizon {
                    break;
                }
                let slot = tat / 1000;
                ops.push(Op::ZRem {
                    key: keys.due.clone(),
                    member: id.clone(),
                });
                ops.push(Op::ZAdd {
                    key: keys.leases.clone(),
                    member: id.clone(),
                    score: slot.saturating_add(request.lease_ms),
                });
                flat.extend(lease_item(ks, &keys, &id, slot, now));
                tat = tat.saturating_add(interval);
            }
            if !ops.is_empty() {
                ops.push(set_fields(&keys.campaign, &[("tat_us", tat.to_string())]));
            }
            (ops, flat)
        })?;
        crate::store::campaign_codec::leased(&keys.entries, &flat)
    }

    async fn reclaim_entries(
        &self,
        campaign_id: &str,
        now_ms: u64,
        lease_until_ms: u64,
        max: usize,
    ) -> Result<Vec<LeasedEntry>, StoreError> {
        let keys = CampaignKeys::new(&self.settings.keys, campaign_id);
        let flat = self.write(|ks, now| {
            let mut ops = Vec::new();
            let mut flat = Vec::new();
            for id in by_score(ks, &keys.leases, now_ms, true, max, now) {
                ops.push(Op::ZAdd {
                    key: keys.leases.clone(),
                    member: id.clone(),
                    score: lease_until_ms,
                });
                flat.extend(lease_item(ks, &keys, &id, now_ms, now));
            }
            (ops, flat)
        })?;
        crate::store::campaign_codec::leased(&keys.entries, &flat)
    }

    async fn extend_lease(
        &self,
        campaign_id: &str,
        entry: u64,
        until_ms: u64,
    ) -> Result<(), StoreError> {
        let key = self.settings.keys.campaign(campaign_id, Some("leases"));
        let member = entry.to_string();
        self.write(|ks, now| {
            let held = ks
                .sorted(&key, now)
                .is_some_and(|m| m.contains_key(&member));
            let ops = if held {
                vec![Op::ZAdd {
                    key: key.clone(),
                    member: member.clone(),
                    score: until_ms,
                }]
            } else {
                Vec::new()
            };
            (ops, ())
        })
    }

    async fn finish_entry(
        &self,
        campaign_id: &str,
        entry: u64,
        attempt: u32,
        outcome: EntryOutcome,
    ) -> Result<bool, StoreError> {
        let keys = CampaignKeys::new(&self.settings.keys, campaign_id);
        let id = entry.to_string();
        self.write(|ks, now| {
            let leased = ks
                .sorted(&keys.leases, now)
                .is_some_and(|m| m.contains_key(&id));
            let stored_attempt = field(ks, &keys.attempts, &id, now).unwrap_or_else(|| "1".into());
            if !leased || stored_attempt != attempt.to_string() {
                return (Vec::new(), false);
            }
            let mut ops = vec![Op::ZRem {
                key: keys.leases.clone(),
                member: id.clone(),
            }];
            let state = field(ks, &keys.campaign, "state", now);
            let canceled = state.as_deref() == Some("canceled");
            let mut due_left = zcard(ks, &keys.due, now);
            let done_status = match outcome {
                EntryOutcome::Done(status) => Some(status.as_str()),
                _ if canceled => Some("canceled"),
                EntryOutcome::Retry { due_ms } | EntryOutcome::Release { due_ms } => {
                    if matches!(outcome, EntryOutcome::Retry { .. }) {
                        ops.push(set_fields(
                            &keys.attempts,
                            &[(&id, (attempt + 1).to_string())],
                        ));
                    }
                    ops.push(Op::ZAdd {
                        key: keys.due.clone(),
                        member: id.clone(),
                        score: due_ms,
                    });
                    due_left += 1;
                    None
                }
            };
            if let Some(status) = done_status {
                let count = done_count(ks, &keys, status, now) + 1;
                ops.push(set_fields(&keys.done, &[(&id, status.to_owned())]));
                ops.push(set_fields(
                    &keys.campaign,
                    &[(&format!("done:{status}"), count.to_string())],
                ));
            }
            if due_left == 0 && zcard(ks, &keys.leases, now) == 1 {
                if !canceled {
                    ops.push(set_fields(
                        &keys.campaign,
                        &[("state", "finished".to_owned())],
                    ));
                }
                ops.push(Op::ZRem {
                    key: keys.active.clone(),
                    member: keys.id.clone(),
                });
            }
            (ops, true)
        })
    }

    async fn back_off_campaign(&self, campaign_id: &str, until_ms: u64) -> Result<(), StoreError> {
        let key = self.settings.keys.campaign(campaign_id, None);
        let until_us = until_ms.saturating_mul(1000);
        self.write(|ks, now| {
            let Some(tat) = ks.hash(&key, now).map(|fields| {
                fields
                    .get("tat_us")
                    .and_then(|t| String::from_utf8_lossy(t).parse::<u64>().ok())
                    .unwrap_or(0)
            }) else {
                return (Vec::new(), ());
            };
            let ops = if tat < until_us {
                vec![set_fields(&key, &[("tat_us", until_us.to_string())])]
            } else {
                Vec::new()
            };
            (ops, ())
        })
    }
}

/// Entries done with `status` so far.
fn done_count(ks: &Keyspace, keys: &CampaignKeys, status: &str, now: u64) -> u64 {
    field(ks, &keys.campaign, &format!("done:{status}"), now)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
