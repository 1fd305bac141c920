//! Skills in the embedded store.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::keyspace::{Blob, Op};
use super::store::MemoryStore;
use crate::store::{MAX_SKILLS_KEPT, Skill, pack_vector};
use crate::store::{SkillStore, StoreError};

#[async_trait]
impl SkillStore for MemoryStore {
    async fn put_skill(&self, skill: &Skill) -> Result<(), StoreError> {
        let key = self.settings.keys.skill(&skill.hash);
        let fields = BTreeMap::from([
            (
                "trigger".to_owned(),
                Blob(skill.trigger.as_bytes().to_vec()),
            ),
            (
                "rebuttal".to_owned(),
                Blob(skill.rebuttal.as_bytes().to_vec()),
            ),
            ("vector".to_owned(), Blob(pack_vector(&skill.vector))),
        ]);
        let index = self.settings.keys.skills_by_added();
        let keys = &self.settings.keys;
        self.write(|ks, now| {
            let mut ops = vec![
                Op::HSet { key, fields },
                Op::ZAdd {
                    key: index.clone(),
                    member: skill.hash.clone(),
                    score: now,
                },
            ];
            // As Redis: the oldest beyond MAX_SKILLS_KEPT go (looked at
            // only when the index is full: a put stays cheap below it).
            if ks.sorted(&index, now).map_or(0, BTreeMap::len) < MAX_SKILLS_KEPT {
                return (ops, ());
            }
            let mut listed: Vec<(String, u64)> = ks
                .sorted(&index, now)
                .map(|m| {
                    m.iter()
                        .filter(|(hash, _)| **hash != skill.hash)
                        .map(|(hash, at)| (hash.clone(), *at))
                        .collect()
                })
                .unwrap_or_default();
            let total = listed.len() + 1;
            if total > MAX_SKILLS_KEPT {
                listed.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
                for (hash, _) in listed.into_iter().take(total - MAX_SKILLS_KEPT) {
                    ops.push(Op::ZRem {
                        key: index.clone(),
                        member: hash.clone(),
                    });
                    ops.push(Op::Del {
                        key: keys.skill(&hash),
                    });
                }
            }
            (ops, ())
        })
    }

    async fn skill_hashes(&self) -> Result<Vec<String>, StoreError> {
        let keys = &self.settings.keys;
        let prefix = keys.skill("");
        self.read(|ks, now| {
            ks.keys_with_prefix(&prefix, now)
                .filter_map(|key| keys.skill_hash(key))
                .map(str::to_owned)
                .collect()
        })
    }

    async fn skills(&self, hashes: &[String]) -> Result<Vec<Option<Skill>>, StoreError> {
        let keys = &self.settings.keys;
        self.read(|ks, now| {
            hashes
                .iter()
                .map(|hash| {
                    let key = keys.skill(hash);
                    let fields = ks.hash(&key, now)?;
                    let field = |name: &str| fields.get(name).map_or(&[][..], Vec::as_slice);
                    Skill::from_fields(hash, field("trigger"), field("rebuttal"), field("vector"))
                        .inspect_err(
                            |err| tracing::warn!(key, error = %err, "skipping a malformed skill"),
                        )
                        .ok()
                })
                .collect()
        })
    }
}
