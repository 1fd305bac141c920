//! Skills in the embedded store.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::keyspace::{Blob, Op};
use super::store::MemoryStore;
use crate::store::{Skill, pack_vector};
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
        self.write(|_, _| (vec![Op::HSet { key, fields }], ()))
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
