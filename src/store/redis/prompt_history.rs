//! Prompt versions, optimisation traces and the optimiser's per-segment
//! sets in Redis.

use async_trait::async_trait;

use super::scripts::{DEPLOY_PROMPT, PUT_TRACE, TAKE_SLOT};
use super::store::RedisStore;
use crate::store::codec::{decode_list, encode};
use crate::store::time::rfc3339;
use crate::store::{
    Deployed, MAX_PROMPT_HISTORY, OPTIMISATION_TRACE_TTL_MS, OptimisationTrace, PromptKey,
    PromptState, PromptVersion,
};
use crate::store::{PromptHistoryStore, StoreError};

/// How long an optimisation's cut-short runs are remembered: a day, as
/// long as a job is deferred before it is given up.
const CUT_SHORT_TTL_MS: u64 = 24 * 3_600_000;

#[async_trait]
impl PromptHistoryStore for RedisStore {
    async fn prompt_state(&self, key: &PromptKey) -> Result<PromptState, StoreError> {
        let keys = &self.settings.keys;
        let version_key = key.version_key(keys);
        let (text, version): (Option<String>, Option<String>) = self
            .query(redis::cmd("MGET").arg(key.key(keys)).arg(&version_key))
            .await?;
        let version = match version {
            None => 0,
            Some(v) => v
                .parse()
                .map_err(|err| StoreError::corrupt(&version_key, err))?,
        };
        Ok(PromptState { version, text })
    }

    async fn deploy_prompt(
        &self,
        key: &PromptKey,
        expected: u64,
        entry: &PromptVersion,
        trace: Option<&OptimisationTrace>,
    ) -> Result<Deployed, StoreError> {
        let keys = &self.settings.keys;
        let history = key.history_key(keys);
        let mut deploy = DEPLOY_PROMPT.key(key.key(keys));
        deploy
            .key(key.version_key(keys))
            .key(&history)
            .arg(expected)
            .arg(encode(&history, entry)?)
            .arg(&entry.prompt)
            .arg(rfc3339(entry.deployed_at_ms))
            .arg(entry.deployed_at_ms)
            .arg(entry.optimisation.as_deref().unwrap_or_default())
            .arg(MAX_PROMPT_HISTORY);
        let answer: i64 = self.invoke(&deploy).await?;
        let Ok(version) = u64::try_from(answer) else {
            return Ok(Deployed::Conflict(answer.unsigned_abs() - 1));
        };
        // The trace is keyed by its own id, in another slot (so not in the
        // script): written once the version it explains is deployed. If it
        // cannot be, the error makes the job run again, and the optimiser
        // rebuilds the trace from the history entry written above instead
        // of deploying again (`OptimiserStep`).
        if let Some(trace) = trace
            && let Err(error) = self.put_optimisation(trace).await
        {
            tracing::warn!(%error, optimisation = %trace.id, "deployed, but the optimisation trace is not stored yet");
            return Err(error);
        }
        Ok(Deployed::Deployed(version))
    }

    async fn prompt_history(&self, key: &PromptKey) -> Result<Vec<PromptVersion>, StoreError> {
        let history = key.history_key(&self.settings.keys);
        let items: Vec<String> = self
            .query(redis::cmd("LRANGE").arg(&history).arg(0).arg(-1))
            .await?;
        Ok(decode_list(&history, &items, "prompt version"))
    }

    async fn prompt_keys(&self) -> Result<Vec<PromptKey>, StoreError> {
        let keys = &self.settings.keys;
        let found = self.scan_keys(&keys.prompt_pattern(), "string").await?;
        let mut found: Vec<PromptKey> = found
            .iter()
            .filter_map(|name| PromptKey::parse(name.strip_prefix(keys.prefix()).unwrap_or(name)))
            .collect();
        found.sort_by_key(ToString::to_string);
        found.dedup();
        Ok(found)
    }

    async fn put_optimisation(&self, trace: &OptimisationTrace) -> Result<(), StoreError> {
        let key = self.settings.keys.optimisation(&trace.id);
        let json = encode(&key, trace)?;
        let mut put = PUT_TRACE.key(&key);
        put.arg(json).arg(OPTIMISATION_TRACE_TTL_MS);
        let written: i64 = self.invoke(&put).await?;
        if written == 0 {
            tracing::info!(optimisation = %trace.id, decision = trace.decision.as_str(), "a deployed trace is kept; this one is not stored");
        }
        Ok(())
    }

    async fn optimisation(&self, id: &str) -> Result<Option<OptimisationTrace>, StoreError> {
        let key = self.settings.keys.optimisation(id);
        let json: Option<String> = self.query(redis::cmd("GET").arg(&key)).await?;
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
        let mut take = TAKE_SLOT.key(key.optimisations_key(&self.settings.keys));
        take.arg(id).arg(now_ms).arg(window_ms).arg(max);
        let taken: i64 = self.invoke(&take).await?;
        Ok(taken == 1)
    }

    async fn give_back_optimisation_slot(
        &self,
        key: &PromptKey,
        id: &str,
    ) -> Result<(), StoreError> {
        let slots = key.optimisations_key(&self.settings.keys);
        let _removed: i64 = self.query(redis::cmd("ZREM").arg(&slots).arg(id)).await?;
        Ok(())
    }

    async fn note_cut_short_optimisation(
        &self,
        key: &PromptKey,
        id: &str,
    ) -> Result<u64, StoreError> {
        let attempts = key.attempts_key(&self.settings.keys);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HINCRBY")
            .arg(&attempts)
            .arg(id)
            .arg(1)
            .cmd("PEXPIRE")
            .arg(&attempts)
            .arg(CUT_SHORT_TTL_MS)
            .ignore();
        let (count,): (u64,) = self.query_pipe(&pipe).await?;
        Ok(count)
    }

    async fn cut_short_optimisations(&self, key: &PromptKey, id: &str) -> Result<u64, StoreError> {
        let attempts = key.attempts_key(&self.settings.keys);
        let count: Option<u64> = self
            .query(redis::cmd("HGET").arg(&attempts).arg(id))
            .await?;
        Ok(count.unwrap_or(0))
    }

    async fn note_failure(
        &self,
        key: &PromptKey,
        call_id: &str,
        now_ms: u64,
    ) -> Result<Vec<String>, StoreError> {
        let failures = key.failures_key(&self.settings.keys);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("ZADD")
            .arg(&failures)
            .arg("NX")
            .arg(now_ms)
            .arg(call_id)
            .ignore()
            .cmd("ZRANGE")
            .arg(&failures)
            .arg(0)
            .arg(-1);
        let (listed,): (Vec<String>,) = self.query_pipe(&pipe).await?;
        Ok(listed)
    }

    async fn clear_failures(&self, key: &PromptKey, call_ids: &[String]) -> Result<(), StoreError> {
        if call_ids.is_empty() {
            return Ok(());
        }
        let failures = key.failures_key(&self.settings.keys);
        self.query(redis::cmd("ZREM").arg(failures).arg(call_ids))
            .await
            .map(|_: i64| ())
    }
}
