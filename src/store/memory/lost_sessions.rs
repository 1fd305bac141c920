//! `calls:lost_sessions` in the embedded store.

use async_trait::async_trait;

use super::keyspace::Op;
use super::store::MemoryStore;
use crate::store::{LostSessionCheck, LostSessionStore, StoreError};

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
        self.write(|_, _| {
            let remove = Op::ZRem {
                key: key.clone(),
                member: member.clone(),
            };
            (vec![remove], ())
        })
    }

    async fn renew_lease(
        &self,
        call_id: &str,
        due_ms: u64,
        only_held: bool,
    ) -> Result<bool, StoreError> {
        let key = self.settings.keys.lost_sessions();
        let member = LostSessionCheck::lease(call_id).member();
        self.write(|ks, now| {
            let held = ks
                .sorted(&key, now)
                .is_some_and(|set| set.contains_key(&member));
            if only_held && !held {
                return (Vec::new(), false);
            }
            let add = Op::ZAdd {
                key: key.clone(),
                member: member.clone(),
                score: due_ms,
            };
            (vec![add], true)
        })
    }

    async fn lost_session_due(&self, check: &LostSessionCheck) -> Result<Option<u64>, StoreError> {
        let key = self.settings.keys.lost_sessions();
        let member = check.member();
        self.read(|ks, now| ks.sorted(&key, now)?.get(&member).copied())
    }
}
