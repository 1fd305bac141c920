//! Tactics lists and prompts in the embedded store.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;

use super::keyspace::{Blob, Op};
use super::store::MemoryStore;
use crate::store::settings::millis;
use crate::store::{
    MAX_CALLS_NOTED_PER_TACTIC, MAX_TACTICS_KEPT, PromptKey, TacticsList, clean_tactic,
    tactic_identity,
};
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

    async fn add_call_tactics(
        &self,
        list: TacticsList,
        call_id: &str,
        tactics: &[String],
    ) -> Result<usize, StoreError> {
        // The list as add_tactics leaves it, then the call noted per
        // tactic: two writes (Redis does both in one script), harmless
        // apart: noting is additive, and a call noted twice counts once.
        let added = self.add_tactics(list, tactics).await?;
        let key = self.settings.keys.tactic_calls(list);
        let list_key = self.settings.keys.tactics(list);
        self.write(|ks, now| {
            let noted = ks.hash(&key, now);
            let mut fields = BTreeMap::new();
            let mut done = HashSet::new();
            for tactic in tactics.iter().filter_map(|t| clean_tactic(t)) {
                let id = tactic_identity(&tactic);
                if !done.insert(id.clone()) {
                    continue;
                }
                let mut calls: Vec<String> = noted
                    .and_then(|h| h.get(&id))
                    .and_then(|raw| serde_json::from_slice(raw).ok())
                    .unwrap_or_default();
                if calls.iter().any(|c| c == call_id) || calls.len() >= MAX_CALLS_NOTED_PER_TACTIC {
                    continue;
                }
                calls.push(call_id.to_owned());
                let json = serde_json::to_vec(&calls).unwrap_or_default();
                fields.insert(id, Blob(json));
            }
            let mut ops = Vec::new();
            let kept: HashSet<String> = ks
                .list(&list_key, now)
                .iter()
                .map(|t| tactic_identity(t))
                .collect();
            let stale: Vec<String> = noted
                .map(|h| h.keys().filter(|f| !kept.contains(*f)).cloned().collect())
                .unwrap_or_default();
            if noted.map_or(0, BTreeMap::len) + fields.len() > MAX_TACTICS_KEPT && !stale.is_empty()
            {
                ops.push(Op::HDel {
                    key: key.clone(),
                    fields: stale,
                });
            }
            if !fields.is_empty() {
                ops.push(Op::HSet { key, fields });
            }
            (ops, ())
        })?;
        Ok(added)
    }

    async fn tactic_calls(&self, list: TacticsList) -> Result<HashMap<String, u64>, StoreError> {
        let key = self.settings.keys.tactic_calls(list);
        self.read(|ks, now| {
            ks.hash(&key, now)
                .map(|h| {
                    h.iter()
                        .map(|(id, raw)| {
                            let calls = serde_json::from_slice::<Vec<String>>(raw)
                                .map_or(0, |calls| calls.len() as u64);
                            (id.clone(), calls)
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    async fn remove_tactic(&self, list: TacticsList, tactic: &str) -> Result<bool, StoreError> {
        let key = self.settings.keys.tactics(list);
        let calls = self.settings.keys.tactic_calls(list);
        let id = tactic_identity(tactic);
        self.write(|ks, now| {
            let all = ks.list(&key, now);
            let left: Vec<String> = all
                .iter()
                .filter(|t| tactic_identity(t) != id)
                .cloned()
                .collect();
            if left.len() == all.len() {
                return (Vec::new(), false);
            }
            let mut ops = vec![
                Op::Del { key: key.clone() },
                Op::HDel {
                    key: calls,
                    fields: vec![id.clone()],
                },
            ];
            if !left.is_empty() {
                ops.push(Op::Push { key, values: left });
            }
            (ops, true)
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
