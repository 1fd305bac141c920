//! Prompt versions, optimisation traces and the optimiser's per-segment
//! sets in the embedded store (each write closure is atomic, which is
//! what the Redis store's scripts give).

use async_trait::async_trait;

use super::keyspace::{Blob, Keyspace, Op};
use super::store::MemoryStore;
use crate::store::codec::{decode_list, encode};
use crate::store::time::rfc3339;
use crate::store::{
    Decision, Deployed, MAX_PROMPT_HISTORY, OPTIMISATION_TRACE_TTL_MS, OptimisationTrace,
    PromptKey, PromptState, PromptVersion,
};
use crate::store::{PromptHistoryStore, StoreError};

/// The version counter at `key` (0 when missing or not a number; the
/// Redis store reports the latter as corrupt on read).
fn version_at(ks: &Keyspace, key: &str, now: u64) -> u64 {
    ks.string(key, now)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn set(key: String, value: String) -> Op {
    Op::Set {
        key,
        value,
        expires_at_ms: None,
    }
}

/// An optimisation's trace, kept [`OPTIMISATION_TRACE_TTL_MS`].
fn set_trace(key: String, value: String, now: u64) -> Op {
    Op::Set {
        key,
        value,
        expires_at_ms: Some(now + OPTIMISATION_TRACE_TTL_MS),
    }
}

/// Whether `history` holds a version deployed by optimisation `id` (as
/// Redis's `DEPLOY_PROMPT` checks: a duplicate run does not deploy twice).
fn deployed_by(history: &[String], id: Option<&str>) -> bool {
    let Some(id) = id else { return false };
    history.iter().any(|item| {
        serde_json::from_str::<PromptVersion>(item)
            .is_ok_and(|entry| entry.optimisation.as_deref() == Some(id))
    })
}

/// How long an optimisation's cut-short runs are remembered (as Redis).
const CUT_SHORT_TTL_MS: u64 = 24 * 3_600_000;

/// The cut-short runs of optimisation `id` noted in `attempts`.
fn cut_short(ks: &Keyspace, attempts: &str, id: &str, now: u64) -> u64 {
    ks.hash(attempts, now)
        .and_then(|h| h.get(id))
        .and_then(|raw| std::str::from_utf8(raw).ok()?.parse().ok())
        .unwrap_or(0)
}

/// Members of a sorted set by score, oldest first.
fn by_score(ks: &Keyspace, key: &str, now: u64) -> Vec<(String, u64)> {
    let mut members: Vec<(String, u64)> = ks
        .sorted(key, now)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
        .unwrap_or_default();
    members.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    members
}

#[async_trait]
impl PromptHistoryStore for MemoryStore {
    async fn prompt_state(&self, key: &PromptKey) -> Result<PromptState, StoreError> {
        let keys = &self.settings.keys;
        let (live, version_key) = (key.key(keys), key.version_key(keys));
        self.read(|ks, now| PromptState {
            version: version_at(ks, &version_key, now),
            text: ks.string(&live, now).map(str::to_owned),
        })
    }

    async fn deploy_prompt(
        &self,
        key: &PromptKey,
        expected: u64,
        entry: &PromptVersion,
        trace: Option<&OptimisationTrace>,
    ) -> Result<Deployed, StoreError> {
        let keys = &self.settings.keys;
        let (live, version_key, history) =
            (key.key(keys), key.version_key(keys), key.history_key(keys));
        let entry_json = encode(&history, entry)?;
        let trace = trace
            .map(|t| {
                let key = keys.optimisation(&t.id);
                encode(&key, t).map(|json| (key, json))
            })
            .transpose()?;
        self.write(|ks, now| {
            let current = version_at(ks, &version_key, now);
            if current != expected
                || deployed_by(ks.list(&history, now), entry.optimisation.as_deref())
            {
                return (Vec::new(), Ok(Deployed::Conflict(current)));
            }
            let mut ops = Vec::new();
            if current == 0 && ks.list(&history, now).is_empty() {
                let before = PromptVersion {
                    version: 0,
                    prompt: ks.string(&live, now).unwrap_or_default().to_owned(),
                    scores: None,
                    deployed_at: rfc3339(entry.deployed_at_ms),
                    deployed_at_ms: entry.deployed_at_ms,
                    call_id: None,
                    optimisation: None,
                    reason: "the text before the first versioned deployment".into(),
                };
                match encode(&history, &before) {
                    Ok(json) => ops.push(Op::Push {
                        key: history.clone(),
                        values: vec![json],
                    }),
                    Err(err) => return (Vec::new(), Err(err)),
                }
            }
            ops.push(set(live, entry.prompt.clone()));
            ops.push(set(version_key, (current + 1).to_string()));
            // An empty history (the only one that gets version 0 first) is
            // far below the bound; a full one keeps its newest, as Redis's
            // LTRIM.
            let listed = ks.list(&history, now);
            if listed.len() < MAX_PROMPT_HISTORY {
                ops.push(Op::Push {
                    key: history,
                    values: vec![entry_json],
                });
            } else {
                let mut all = listed.to_vec();
                all.push(entry_json);
                all.drain(..all.len() - MAX_PROMPT_HISTORY);
                ops.push(Op::Del {
                    key: history.clone(),
                });
                ops.push(Op::Push {
                    key: history,
                    values: all,
                });
            }
            if let Some((key, json)) = trace {
                ops.push(set_trace(key, json, now));
            }
            (ops, Ok(Deployed::Deployed(current + 1)))
        })?
    }

    async fn prompt_history(&self, key: &PromptKey) -> Result<Vec<PromptVersion>, StoreError> {
        let history = key.history_key(&self.settings.keys);
        let items = self.read(|ks, now| ks.list(&history, now).to_vec())?;
        Ok(decode_list(&history, &items, "prompt version"))
    }

    async fn prompt_keys(&self) -> Result<Vec<PromptKey>, StoreError> {
        let keys = &self.settings.keys;
        let prefix = keys.prompt_pattern().trim_end_matches('*').to_owned();
        let mut found: Vec<PromptKey> = self.read(|ks, now| {
            ks.keys_with_prefix(&prefix, now)
                .filter(|name| ks.string(name, now).is_some())
                .filter_map(|name| PromptKey::parse(name.strip_prefix(keys.prefix())?))
                .collect()
        })?;
        found.sort_by_key(ToString::to_string);
        Ok(found)
    }

    async fn put_optimisation(&self, trace: &OptimisationTrace) -> Result<(), StoreError> {
        let key = self.settings.keys.optimisation(&trace.id);
        let json = encode(&key, trace)?;
        let kept = self.write(|ks, now| {
            let deployed = ks
                .string(&key, now)
                .and_then(|old| serde_json::from_str::<OptimisationTrace>(old).ok())
                .is_some_and(|old| old.decision == Decision::Deployed);
            if deployed {
                (Vec::new(), true)
            } else {
                (vec![set_trace(key, json, now)], false)
            }
        })?;
        if kept {
            tracing::info!(optimisation = %trace.id, decision = trace.decision.as_str(), "a deployed trace is kept; this one is not stored");
        }
        Ok(())
    }

    async fn optimisation(&self, id: &str) -> Result<Option<OptimisationTrace>, StoreError> {
        let key = self.settings.keys.optimisation(id);
        let json = self.read(|ks, now| ks.string(&key, now).map(str::to_owned))?;
        json.map(|json| serde_json::from_str(&json).map_err(|err| StoreError::corrupt(&key, err)))
            .transpose()
    }

    async fn take_optimisation_slot(
        &self,
        key: &PromptKey,
        id: &str,
        now_ms: u64,
        window_ms: u64,
        max: u64,
    ) -> Result<bool, StoreError> {
        let slots = key.optimisations_key(&self.settings.keys);
        self.write(|ks, now| {
            let members = by_score(ks, &slots, now);
            let oldest_kept = now_ms.saturating_sub(window_ms);
            let mut ops: Vec<Op> = members
                .iter()
                .filter(|(_, at)| *at < oldest_kept)
                .map(|(member, _)| Op::ZRem {
                    key: slots.clone(),
                    member: member.clone(),
                })
                .collect();
            let kept: Vec<&String> = members
                .iter()
                .filter(|(_, at)| *at >= oldest_kept)
                .map(|(m, _)| m)
                .collect();
            let taken = if kept.iter().any(|m| *m == id) {
                true
            } else if kept.len() as u64 >= max {
                false
            } else {
                ops.push(Op::ZAdd {
                    key: slots.clone(),
                    member: id.to_owned(),
                    score: now_ms,
                });
                true
            };
            (ops, taken)
        })
    }

    async fn note_cut_short_optimisation(
        &self,
        key: &PromptKey,
        id: &str,
    ) -> Result<u64, StoreError> {
        let attempts = key.attempts_key(&self.settings.keys);
        self.write(|ks, now| {
            let count = cut_short(ks, &attempts, id, now) + 1;
            let ops = vec![
                Op::HSet {
                    key: attempts.clone(),
                    fields: [(id.to_owned(), Blob(count.to_string().into_bytes()))].into(),
                },
                Op::ExpireAt {
                    key: attempts,
                    at_ms: now + CUT_SHORT_TTL_MS,
                },
            ];
            (ops, count)
        })
    }

    async fn cut_short_optimisations(&self, key: &PromptKey, id: &str) -> Result<u64, StoreError> {
        let attempts = key.attempts_key(&self.settings.keys);
        self.read(|ks, now| cut_short(ks, &attempts, id, now))
    }

    async fn give_back_optimisation_slot(
        &self,
        key: &PromptKey,
        id: &str,
    ) -> Result<(), StoreError> {
        let slots = key.optimisations_key(&self.settings.keys);
        self.write(|_, _| {
            let give_back = Op::ZRem {
                key: slots,
                member: id.to_owned(),
            };
            (vec![give_back], ())
        })
    }

    async fn note_failure(
        &self,
        key: &PromptKey,
        call_id: &str,
        now_ms: u64,
    ) -> Result<Vec<String>, StoreError> {
        let failures = key.failures_key(&self.settings.keys);
        self.write(|ks, now| {
            let mut members = by_score(ks, &failures, now);
            if members.iter().any(|(m, _)| m == call_id) {
                let listed = members.into_iter().map(|(m, _)| m).collect();
                return (Vec::new(), listed);
            }
            members.push((call_id.to_owned(), now_ms));
            members.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
            let add = Op::ZAdd {
                key: failures.clone(),
                member: call_id.to_owned(),
                score: now_ms,
            };
            (vec![add], members.into_iter().map(|(m, _)| m).collect())
        })
    }

    async fn clear_failures(&self, key: &PromptKey, call_ids: &[String]) -> Result<(), StoreError> {
        let failures = key.failures_key(&self.settings.keys);
        self.write(|_, _| {
            let ops = call_ids
                .iter()
                .map(|member| Op::ZRem {
                    key: failures.clone(),
                    member: member.clone(),
                })
                .collect();
            (ops, ())
        })
    }
}
