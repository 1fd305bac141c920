//! Tactics lists and prompts in the embedded store.

use std::collections::HashSet;

use async_trait::async_trait;

use super::keyspace::Op;
use super::store::MemoryStore;
use crate::store::settings::millis;
use crate::store::{MAX_TACTICS_KEPT, PromptKey, TacticsList, clean_tactic, tactic_identity};
use crate::store::{RefinementStore, StoreError};

#[async_trait]
impl RefinementStore for MemoryStore {
    async fn tactics(&self, list: TacticsList) -> Result<Vec<String>, StoreError> {
        let key = self.settings.keys.tactics(list);
        self.read(|ks, now| ks.list(&key, now).to_vec())
    }

    async fn add_tactics(
        &self,
        list: TacticsList,
        tactics: &[String],
    ) -> Result<usize, StoreError> {
        let key = self.settings.keys.tactics(list);
        self.write(|ks, now| {
            // As the Redis script: a tactic the list holds moves to the end
            // (its stored text kept), a new one is appended, then the newest
            // MAX_TACTICS_KEPT stay.
            let mut all = ks.list(&key, now).to_vec();
            let before = all.clone();
            let mut done = HashSet::new();
            let mut added = 0;
            for tactic in tactics.iter().filter_map(|t| clean_tactic(t)) {
                let id = tactic_identity(&tactic);
                if !done.insert(id.clone()) {
                    continue;
                }
                match all.iter().position(|t| tactic_identity(t) == id) {
                    Some(at) => {
                        let old = all.remove(at);
                        all.push(old);
                    }
                    None => {
                        all.push(tactic);
                        added += 1;
                    }
                }
            }
            if all.len() > MAX_TACTICS_KEPT {
                all.drain(..all.len() - MAX_TACTICS_KEPT);
            }
            if all == before {
                return (Vec::new(), 0);
            }
            (
                vec![Op::Del { key: key.clone() }, Op::Push { key, values: all }],
                added,
            )
        })
    }

    async fn set_session_tactics(
        &self,
        call_id: &str,
        tactics: &[String],
    ) -> Result<(), StoreError> {
        let key = self.settings.keys.session_tactics(call_id);
        let ttl = millis(self.settings.session_tactics_ttl);
        self.write(|_, now| {
            let mut ops = vec![Op::Del { key: key.clone() }];
            if !tactics.is_empty() {
                ops.push(Op::Push {
                    key: key.clone(),
                    values: tactics.to_vec(),
                });
                ops.push(Op::ExpireAt {
                    key,
                    at_ms: now + ttl,
                });
            }
            (ops, ())
        })
    }

    async fn session_tactics(&self, call_id: &str) -> Result<Vec<String>, StoreError> {
        let key = self.settings.keys.session_tactics(call_id);
        self.read(|ks, now| ks.list(&key, now).to_vec())
    }

    async fn first_prompt(
        &self,
        candidates: &[PromptKey],
    ) -> Result<Option<(PromptKey, String)>, StoreError> {
        let keys = &self.settings.keys;
        self.read(|ks, now| {
            candidates.iter().find_map(|candidate| {
                ks.string(&candidate.key(keys), now)
                    .filter(|text| !text.trim().is_empty())
                    .map(|text| (candidate.clone(), text.to_owned()))
            })
        })
    }

    async fn set_prompt(&self, key: &PromptKey, text: &str) -> Result<(), StoreError> {
        let key = key.key(&self.settings.keys);
        self.write(|_, _| {
            let set = Op::Set {
                key,
                value: text.to_owned(),
                expires_at_ms: None,
            };
            (vec![set], ())
        })
    }
}
