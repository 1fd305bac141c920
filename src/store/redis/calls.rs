//! Calls and transcripts in Redis.

use async_trait::async_trait;

use super::scripts::{APPEND_TURN, COMPARE_AND_SET};
use super::store::RedisStore;
use crate::store::codec::{created_ms, decode_call, decode_calls, decode_turns, encode};
use crate::store::settings::millis;
use crate::store::time::unix_ms;
use crate::store::{Appended, CallStore, StoreError};
use crate::store::{CallChange, CallRecord, Interaction};

/// Compare-and-set attempts before an update gives up (each lost race means
/// another writer changed the call in between).
const UPDATE_ATTEMPTS: u32 = 16;

/// Calls read per `MGET` by [`CallStore::calls_between`].
const CALLS_PER_READ: usize = 500;

#[async_trait]
impl CallStore for RedisStore {
    async fn create_call(&self, record: &CallRecord) -> Result<bool, StoreError> {
        let key = self.settings.keys.call(&record.call_id);
        let json = encode(&key, record)?;
        let ttl = millis(self.settings.call_ttl);
        let now = unix_ms();
        // The call's place in the time index first (kept if already there,
        // so a retry never moves it; the index trimmed of calls whose
        // records have expired), then the call. Two keys in two slots of a
        // cluster, so two requests: an id indexed whose record is not
        // written yet is skipped by `calls_between`, and a retry completes
        // it.
        let index = self.settings.keys.calls_by_created();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("ZADD")
            .arg(&index)
            .arg("NX")
            .arg(created_ms(record, now))
            .arg(&record.call_id)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&index)
            .arg("-inf")
            .arg(format!("({}", now.saturating_sub(ttl)))
            .ignore();
        self.query_pipe::<()>(&pipe).await?;
        let created: Option<String> = self
            .query(
                redis::cmd("SET")
                    .arg(&key)
                    .arg(json)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl),
            )
            .await?;
        Ok(created.is_some())
    }

    async fn calls_between(
        &self,
        from_ms: u64,
        to_ms: u64,
        limit: usize,
    ) -> Result<Vec<CallRecord>, StoreError> {
        let ids: Vec<String> = self
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(self.settings.keys.calls_by_created())
                    .arg(from_ms)
                    .arg(to_ms)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit),
            )
            .await?;
        let mut records = Vec::with_capacity(ids.len());
        // MGET in slices: few round trips, none of them huge.
        for chunk in ids.chunks(CALLS_PER_READ) {
            let keys: Vec<String> = chunk.iter().map(|id| self.settings.keys.call(id)).collect();
            let found: Vec<Option<String>> = self.query(redis::cmd("MGET").arg(&keys)).await?;
            records.extend(decode_calls(
                keys.iter()
                    .map(String::as_str)
                    .zip(found.iter().map(Option::as_deref)),
            ));
        }
        Ok(records)
    }

    async fn call(&self, call_id: &str) -> Result<Option<CallRecord>, StoreError> {
        let key = self.settings.keys.call(call_id);
        let json: Option<String> = self.query(redis::cmd("GET").arg(&key)).await?;
        json.map(|json| decode_call(&key, &json)).transpose()
    }

    async fn change_call(
        &self,
        call_id: &str,
        change: &CallChange,
    ) -> Result<Option<(CallRecord, bool)>, StoreError> {
        // Read, change in Rust (typed, keeping unknown fields), write back
        // only if nobody wrote in between; else read again.
        let key = self.settings.keys.call(call_id);
        let ttl = millis(self.settings.call_ttl);
        for _ in 0..UPDATE_ATTEMPTS {
            let Some(old) = self
                .query::<Option<String>>(redis::cmd("GET").arg(&key))
                .await?
            else {
                return Ok(None);
            };
            let mut record = decode_call(&key, &old)?;
            if !record.apply(change, unix_ms()) {
                return Ok(Some((record, false)));
            }
            let new = encode(&key, &record)?;
            let mut cas = COMPARE_AND_SET.key(&key);
            cas.arg(&old).arg(&new).arg(ttl);
            let set: i64 = self.invoke(&cas).await?;
            if set == 1 {
                return Ok(Some((record, true)));
            }
        }
        Err(StoreError::Contended {
            key,
            attempts: UPDATE_ATTEMPTS,
        })
    }

    async fn append_turn(&self, call_id: &str, turn: &Interaction) -> Result<Appended, StoreError> {
        let key = self.settings.keys.interactions(call_id);
        let json = encode(&key, turn)?;
        let mut append = APPEND_TURN.key(&key);
        append
            .arg(turn.index)
            .arg(json)
            .arg(millis(self.settings.call_ttl));
        let stored: i64 = self.invoke(&append).await?;
        self.wait_for_replicas(&key).await?;
        Ok(if stored < 0 {
            Appended::AlreadyStored {
                stored: stored.unsigned_abs() - 1,
            }
        } else if stored.unsigned_abs() == turn.index {
            Appended::Added
        } else {
            Appended::AddedAfterGap {
                stored: stored.unsigned_abs(),
            }
        })
    }

    async fn turns(&self, call_id: &str) -> Result<Vec<Interaction>, StoreError> {
        let key = self.settings.keys.interactions(call_id);
        let items: Vec<String> = self
            .query(redis::cmd("LRANGE").arg(&key).arg(0).arg(-1))
            .await?;
        Ok(decode_turns(&key, &items))
    }
}

impl RedisStore {
    /// Waits until `wait_replicas` replicas of `key`'s master (or as many
    /// as it has now: a replica promoted after a failover has none until
    /// one is added) hold every write this connection made to it. `WAIT`
    /// and `ROLE` are pipelined after a single-key read that routes them to
    /// `key`'s master in a cluster (`EXISTS` would not: a cluster splits it
    /// by slot).
    async fn wait_for_replicas(&self, key: &str) -> Result<(), StoreError> {
        let wanted = self.settings.wait_replicas;
        if wanted == 0 {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.cmd("PTTL")
            .arg(key)
            .ignore()
            .cmd("WAIT")
            .arg(wanted)
            // Half the operation's time: the answer must come within it.
            .arg((millis(self.settings.op_timeout) / 2).max(1))
            .cmd("ROLE");
        let (acked, role): (u32, redis::Value) = self.query_pipe(&pipe).await?;
        let wanted = wanted.min(replicas_of(&role));
        if acked < wanted {
            return Err(StoreError::NotReplicated {
                key: key.to_owned(),
                acked,
                wanted,
            });
        }
        Ok(())
    }
}

/// How many replicas a `ROLE` answer lists: a master answers
/// `["master", offset, [[host, port, offset], ...]]`.
fn replicas_of(role: &redis::Value) -> u32 {
    match role {
        redis::Value::Array(fields) => match fields.get(2) {
            Some(redis::Value::Array(replicas)) => {
                u32::try_from(replicas.len()).unwrap_or(u32::MAX)
            }
            _ => 0,
        },
        _ => 0,
    }
}
