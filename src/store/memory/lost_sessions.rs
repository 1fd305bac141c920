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
            for (_, member) in due.into_iter().take(max) {
                match LostSessionCheck::from_member(member) {
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

    async fn renew_lost_session(
        &self,
        previous: &[LostSessionCheck],
        check: &LostSessionCheck,
        due_ms: u64,
    ) -> Result<(), StoreError> {
        let key = self.settings.keys.lost_sessions();
        let member = check.member();
        self.write(|_, _| {
            let mut ops: Vec<Op> = previous
                .iter()
                .map(|old| Op::ZRem {
                    key: key.clone(),
                    member: old.member(),
                })
                .collect();
            ops.push(Op::ZAdd {
                key: key.clone(),
                member: member.clone(),
                score: due_ms,
            });
            (ops, ())
        })
    }

    async fn lost_session_noted(&self, check: &LostSessionCheck) -> Result<bool, StoreError> {
        let key = self.settings.keys.lost_sessions();
        let member = check.member();
        self.read(|ks, now| {
            ks.sorted(&key, now)
                .is_some_and(|set| set.contains_key(&member))
        })
    }
}
