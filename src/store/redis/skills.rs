//! Skills in Redis.

use async_trait::async_trait;

use super::store::RedisStore;
use crate::store::time::unix_ms;
use crate::store::{MAX_SKILLS_KEPT, Skill, pack_vector};
use crate::store::{SkillStore, StoreError};

/// Skills read per batch.
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
        .map(|_: i64| ())?;
        // The index and the oldest skills are other slots: separate steps,
        // each idempotent (a crash between them leaves one skill out of
        // the index, never the index naming a skill twice).
        let index = self.settings.keys.skills_by_added();
        let _added: i64 = self
            .query(
                redis::cmd("ZADD")
                    .arg(&index)
                    .arg(unix_ms())
                    .arg(&skill.hash),
            )
            .await?;
        let listed: usize = self.query(redis::cmd("ZCARD").arg(&index)).await?;
        if listed <= MAX_SKILLS_KEPT {
            return Ok(());
        }
        let oldest: Vec<String> = self
            .query(
                redis::cmd("ZPOPMIN")
                    .arg(&index)
                    .arg(listed - MAX_SKILLS_KEPT),
            )
            .await
            .map(|popped: Vec<(String, f64)>| popped.into_iter().map(|(hash, _)| hash).collect())?;
        for hash in oldest {
            let _deleted: i64 = self
                .query(redis::cmd("DEL").arg(self.settings.keys.skill(&hash)))
                .await?;
        }
        Ok(())
    }

    async fn skill_hashes(&self) -> Result<Vec<String>, StoreError> {
        let keys = &self.settings.keys;
        let found = self.scan_keys(&keys.skill_pattern(), "hash").await?;
        Ok(found
            .iter()
            .filter_map(|key| keys.skill_hash(key))
            .map(str::to_owned)
            .collect())
    }

    async fn skills(&self, hashes: &[String]) -> Result<Vec<Option<Skill>>, StoreError> {
        let mut skills = Vec::with_capacity(hashes.len());
        for chunk in hashes.chunks(BATCH) {
            // One HMGET each, all in flight at once: the multiplexed
            // connection sends them together, as a pipeline would, and a
            // cluster sends each to its key's master (a pipeline must keep
            // to one slot).
            let reads = chunk.iter().map(|hash| async move {
                let mut read = redis::cmd("HMGET");
                read.arg(self.settings.keys.skill(hash))
                    .arg("trigger")
                    .arg("rebuttal")
                    .arg("vector");
                self.query::<SkillFields>(&read).await
            });
            let rows = futures_util::future::try_join_all(reads).await?;
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
