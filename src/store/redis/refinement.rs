//! Tactics lists and prompts in Redis.

use async_trait::async_trait;

use std::collections::HashMap;

use super::scripts::{ADD_CALL_TACTICS, ADD_TACTICS, REMOVE_TACTIC};
use super::store::RedisStore;
use crate::store::settings::millis;
use crate::store::{
    MAX_CALLS_NOTED_PER_TACTIC, MAX_TACTICS_KEPT, PromptKey, TacticsList, clean_tactic,
};
use crate::store::{RefinementStore, StoreError};

#[async_trait]
impl RefinementStore for RedisStore {
    async fn tactics(&self, list: TacticsList) -> Result<Vec<String>, StoreError> {
        let key = self.settings.keys.tactics(list);
        self.query(redis::cmd("LRANGE").arg(key).arg(0).arg(-1))
            .await
    }

    async fn add_tactics(
        &self,
        list: TacticsList,
        tactics: &[String],
    ) -> Result<usize, StoreError> {
        let tactics: Vec<String> = tactics.iter().filter_map(|t| clean_tactic(t)).collect();
        if tactics.is_empty() {
            return Ok(0);
        }
        let key = self.settings.keys.tactics(list);
        let mut add = ADD_TACTICS.key(key);
        add.arg(MAX_TACTICS_KEPT).arg(tactics);
        self.invoke(&add).await
    }

    async fn add_call_tactics(
        &self,
        list: TacticsList,
        call_id: &str,
        tactics: &[String],
    ) -> Result<usize, StoreError> {
        let tactics: Vec<String> = tactics.iter().filter_map(|t| clean_tactic(t)).collect();
        if tactics.is_empty() {
            return Ok(0);
        }
        let keys = &self.settings.keys;
        let mut add = ADD_CALL_TACTICS.key(keys.tactics(list));
        add.key(keys.tactic_calls(list))
            .arg(MAX_TACTICS_KEPT)
            .arg(call_id)
            .arg(MAX_CALLS_NOTED_PER_TACTIC)
            .arg(tactics);
        self.invoke(&add).await
    }

    async fn tactic_calls(&self, list: TacticsList) -> Result<HashMap<String, u64>, StoreError> {
        let key = self.settings.keys.tactic_calls(list);
        let fields: HashMap<String, String> = self.query(redis::cmd("HGETALL").arg(&key)).await?;
        Ok(fields
            .into_iter()
            .map(|(identity, calls)| (identity, noted_calls(&calls)))
            .collect())
    }

    async fn remove_tactic(&self, list: TacticsList, tactic: &str) -> Result<bool, StoreError> {
        let keys = &self.settings.keys;
        let mut remove = REMOVE_TACTIC.key(keys.tactics(list));
        remove.key(keys.tactic_calls(list)).arg(tactic);
        let removed: i64 = self.invoke(&remove).await?;
        Ok(removed > 0)
    }

    async fn set_session_tactics(
        &self,
        call_id: &str,
        tactics: &[String],
    ) -> Result<(), StoreError> {
        let key = self.settings.keys.session_tactics(call_id);
        let mut pipe = redis::pipe();
        pipe.atomic().del(&key).ignore();
        if !tactics.is_empty() {
            pipe.rpush(&key, tactics)
                .ignore()
                .pexpire(&key, millis(self.settings.session_tactics_ttl) as i64)
                .ignore();
        }
        self.query_pipe(&pipe).await
    }

    async fn session_tactics(&self, call_id: &str) -> Result<Vec<String>, StoreError> {
        let key = self.settings.keys.session_tactics(call_id);
        self.query(redis::cmd("LRANGE").arg(key).arg(0).arg(-1))
            .await
    }

    async fn first_prompt(
        &self,
        candidates: &[PromptKey],
    ) -> Result<Option<(PromptKey, String)>, StoreError> {
        if candidates.is_empty() {
            return Ok(None);
        }
        let keys: Vec<String> = candidates
            .iter()
            .map(|c| c.key(&self.settings.keys))
            .collect();
        let texts: Vec<Option<String>> = self.query(redis::cmd("MGET").arg(&keys)).await?;
        Ok(candidates.iter().zip(texts).find_map(|(candidate, text)| {
            text.filter(|t| !t.trim().is_empty())
                .map(|t| (candidate.clone(), t))
        }))
    }

    async fn set_prompt(&self, key: &PromptKey, text: &str) -> Result<(), StoreError> {
        let key = key.key(&self.settings.keys);
        self.query(redis::cmd("SET").arg(key).arg(text)).await
    }
}

/// How many calls a noted JSON array holds (0 if it cannot be read: a
/// tactic without evidence is not promoted).
pub(in crate::store) fn noted_calls(json: &str) -> u64 {
    serde_json::from_str::<Vec<String>>(json).map_or(0, |calls| calls.len() as u64)
}
