//! `calls:lost_sessions` in the embedded store.

use async_trait::async_trait;

use std::collections::BTreeMap;

use super::keyspace::{Blob, Keyspace, Op};
use super::store::MemoryStore;
use crate::store::{
    HOLDS_KEPT_MS, LeaseHold, LostSessionCheck, LostSessionSource, LostSessionStore, StoreError,
};

/// The holds at `key` (a value that is not one is not a hold).
fn holds_at(ks: &Keyspace, key: &str, now: u64) -> Vec<LeaseHold> {
    ks.hash(key, now)
        .into_iter()
        .flatten()
        .filter_map(|(holder, value)| {
            LeaseHold::from_field(holder, std::str::from_utf8(value).ok()?)
        })
        .collect()
}

#[async_trait]
impl LostSessionStore for MemoryStore {
    async fn note_lost_session(
        &self,
        check: &LostSessionCheck,
        due_ms: u64,
    ) -> Result<(), StoreError> {
        let key = self.settings.keys.lost_sessions();
        let member = check.member();
        self.write(|ks, now| {
            let noted = ks
                .sorted(&key, now)
                .is_some_and(|set| set.contains_key(&member));
            if noted {
                return (Vec::new(), ());
            }
            let add = Op::ZAdd {
                key: key.clone(),
                member: member.clone(),
                score: due_ms,
            };
            (vec![add], ())
        })
    }

    async fn claim_lost_sessions(
        &self,
        now_ms: u64,
        lease_ms: u64,
        max: usize,
    ) -> Result<Vec<LostSessionCheck>, StoreError> {
        let key = self.settings.keys.lost_sessions();
        self.write(|ks, now| {
            let mut due: Vec<(u64, &String)> = ks
                .sorted(&key, now)
                .into_iter()
                .flatten()
                .filter(|&(_, &score)| score <= now_ms)
                .map(|(member, &score)| (score, member))
                .collect();
            due.sort();
            let mut ops = Vec::new();
            let mut claimed = Vec::new();
            for (score, member) in due.into_iter().take(max) {
                match LostSessionCheck::from_member(member, score) {
                    Some(check) => {
                        ops.push(Op::ZAdd {
                            key: key.clone(),
                            member: member.clone(),
                            score: now_ms.saturating_add(lease_ms),
                        });
                        claimed.push(check);
                    }
                    // Not a check voxpipe wrote: nothing to do with it.
                    None => ops.push(Op::ZRem {
                        key: key.clone(),
                        member: member.clone(),
                    }),
                }
            }
            (ops, claimed)
        })
    }

    async fn next_lost_session_due(&self) -> Result<Option<u64>, StoreError> {
        let key = self.settings.keys.lost_sessions();
        self.read(|ks, now| ks.sorted(&key, now)?.values().min().copied())
    }

    async fn lost_session_checked(&self, check: &LostSessionCheck) -> Result<(), StoreError> {
        let key = self.settings.keys.lost_sessions();
        let member = check.member();
        let holds = (check.source == LostSessionSource::Lease)
            .then(|| self.settings.keys.lease_holds(&check.call_id));
        self.write(|_, _| {
            let mut ops = vec![Op::ZRem {
                key: key.clone(),
                member: member.clone(),
            }];
            ops.extend(holds.map(|key| Op::Del { key }));
            (ops, ())
        })
    }

    async fn renew_lease(
        &self,
        call_id: &str,
        hold: &LeaseHold,
        only_held: bool,
    ) -> Result<bool, StoreError> {
        let key = self.settings.keys.lost_sessions();
        let holds_key = self.settings.keys.lease_holds(call_id);
        let member = LostSessionCheck::lease(call_id).member();
        self.write(|ks, now| {
            let mut holds = holds_at(ks, &holds_key, now);
            let held = holds.iter().any(|h| h.holder == hold.holder);
            if only_held && !held {
                return (Vec::new(), false);
            }
            holds.retain(|h| h.holder != hold.holder);
            holds.push(hold.clone());
            let due = holds.iter().map(|h| h.due_ms).max().unwrap_or(hold.due_ms);
            let ops = vec![
                Op::HSet {
                    key: holds_key.clone(),
                    fields: BTreeMap::from([(
                        hold.holder.clone(),
                        Blob(hold.value().into_bytes()),
                    )]),
                },
                Op::ExpireAt {
                    key: holds_key.clone(),
                    at_ms: hold.due_ms.saturating_add(HOLDS_KEPT_MS),
                },
                Op::ZAdd {
                    key: key.clone(),
                    member: member.clone(),
                    score: due,
                },
            ];
            (ops, true)
        })
    }

    async fn forget_lease(&self, call_id: &str, holder: Option<&str>) -> Result<(), StoreError> {
        let key = self.settings.keys.lost_sessions();
        let holds_key = self.settings.keys.lease_holds(call_id);
        let member = LostSessionCheck::lease(call_id).member();
        self.write(|ks, now| {
            let mut holds = holds_at(ks, &holds_key, now);
            let mut ops = Vec::new();
            if let Some(holder) = holder {
                ops.push(Op::HDel {
                    key: holds_key.clone(),
                    fields: vec![holder.to_owned()],
                });
                holds.retain(|h| h.holder != holder);
            }
            let noted = ks
                .sorted(&key, now)
                .is_some_and(|set| set.contains_key(&member));
            match holds.iter().map(|h| h.due_ms).max() {
                None => ops.push(Op::ZRem {
                    key: key.clone(),
                    member: member.clone(),
                }),
                // Due with the latest hold left (a lease already gone is
                // not brought back).
                Some(due) if holder.is_some() && noted => ops.push(Op::ZAdd {
                    key: key.clone(),
                    member: member.clone(),
                    score: due,
                }),
                Some(_) => {}
            }
            (ops, ())
        })
    }

    async fn lease_holds(&self, call_id: &str) -> Result<Vec<LeaseHold>, StoreError> {
        let key = self.settings.keys.lease_holds(call_id);
        self.read(|ks, now| holds_at(ks, &key, now))
    }

    async fn lost_session_due(&self, check: &LostSessionCheck) -> Result<Option<u64>, StoreError> {
        let key = self.settings.keys.lost_sessions();
        let member = check.member();
        self.read(|ks, now| ks.sorted(&key, now)?.get(&member).copied())
    }
}
