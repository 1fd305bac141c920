//! Skills in Redis.

use async_trait::async_trait;

use super::store::RedisStore;
use crate::store::{Skill, pack_vector};
use crate::store::{SkillStore, StoreError};

/// Keys asked per SCAN step and skills per pipelined batch.
const BATCH: usize = 512;

type SkillFields = (Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>);

#[async_trait]
impl SkillStore for RedisStore {
    async fn put_skill(&self, skill: &Skill) -> Result<(), StoreError> {
        let key = self.settings.keys.skill(&skill.hash);
        self.query(
            redis::cmd("HSET")
                .arg(key)
                .arg("trigger")
                .arg(&skill.trigger)
                .arg("rebuttal")
                .arg(&skill.rebuttal)
                .arg("vector")
                .arg(pack_vector(&skill.vector)),
        )
        .await
        .map(|_: i64| ())
    }

    async fn skill_hashes(&self) -> Result<Vec<String>, StoreError> {
        let keys = &self.settings.keys;
        let pattern = keys.skill_pattern();
        let mut hashes = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = self
                .query(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(BATCH)
                        .arg("TYPE")
                        .arg("hash"),
                )
                .await?;
            hashes.extend(
                batch
                    .iter()
                    .filter_map(|key| keys.skill_hash(key))
                    .map(str::to_owned),
            );
            if next == 0 {
                break;
            }
            cursor = next;
        }
        // SCAN may return a key more than once.
        hashes.sort_unstable();
        hashes.dedup();
        Ok(hashes)
    }

    async fn skills(&self, hashes: &[String]) -> Result<Vec<Option<Skill>>, StoreError> {
        let mut skills = Vec::with_capacity(hashes.len());
        for chunk in hashes.chunks(BATCH) {
            let mut pipe = redis::pipe();
            for hash in chunk {
                pipe.cmd("HMGET")
                    .arg(self.settings.keys.skill(hash))
                    .arg("trigger")
                    .arg("rebuttal")
                    .arg("vector");
            }
            let rows: Vec<SkillFields> = self.query_pipe(&pipe).await?;
            for (hash, row) in chunk.iter().zip(rows) {
                skills.push(decode_skill(hash, row));
            }
        }
        Ok(skills)
    }
}

fn decode_skill(hash: &str, fields: SkillFields) -> Option<Skill> {
    let (Some(trigger), Some(rebuttal), Some(vector)) = fields else {
        return None;
    };
    Skill::from_fields(hash, &trigger, &rebuttal, &vector)
        .inspect_err(|err| tracing::warn!(skill = hash, error = %err, "skipping a malformed skill"))
        .ok()
}
