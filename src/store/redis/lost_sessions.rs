//! `calls:lost_sessions` in Redis: a sorted set of checks by due time,
//! claimed as the webhook outbox's deliveries are (one script moves the due
//! ones to their lease's end).

use async_trait::async_trait;

use super::scripts::{CLAIM_LOST_SESSIONS, FORGET_LEASE, RENEW_LEASE};
use super::store::RedisStore;
use crate::store::{
    HOLDS_KEPT_MS, LeaseHold, LostSessionCheck, LostSessionSource, LostSessionStore, StoreError,
};

/// The latest expiry `PEXPIREAT` takes: a due time that far out (a test's)
/// keeps its holds for ever.
const LATEST_EXPIRY_MS: u64 = i64::MAX as u64 / 2;

#[async_trait]
impl LostSessionStore for RedisStore {
    async fn note_lost_session(
        &self,
        check: &LostSessionCheck,
        due_ms: u64,
    ) -> Result<(), StoreError> {
        self.query::<i64>(
            redis::cmd("ZADD")
                .arg(self.settings.keys.lost_sessions())
                .arg("NX")
                .arg(due_ms)
                .arg(check.member()),
        )
        .await
        .map(|_| ())
    }

    async fn claim_lost_sessions(
        &self,
        now_ms: u64,
        lease_ms: u64,
        max: usize,
    ) -> Result<Vec<LostSessionCheck>, StoreError> {
        let key = self.settings.keys.lost_sessions();
        let mut claim = CLAIM_LOST_SESSIONS.key(&key);
        claim
            .arg(now_ms)
            .arg(now_ms.saturating_add(lease_ms))
            .arg(max);
        // Members and their scores before the claim (a lease's due time).
        let members: Vec<(String, f64)> = self.invoke(&claim).await?;
        let mut claimed = Vec::with_capacity(members.len());
        // Not a check voxpipe wrote: nothing to do with it.
        let mut foreign = Vec::new();
        for (member, due) in members {
            match LostSessionCheck::from_member(&member, due as u64) {
                Some(check) => claimed.push(check),
                None => foreign.push(member),
            }
        }
        if !foreign.is_empty() {
            self.query::<i64>(redis::cmd("ZREM").arg(&key).arg(&foreign))
                .await?;
        }
        Ok(claimed)
    }

    async fn next_lost_session_due(&self) -> Result<Option<u64>, StoreError> {
        // Scores come back as text a float may need (`1.8e+19`).
        let first: Vec<(String, f64)> = self
            .query(
                redis::cmd("ZRANGE")
                    .arg(self.settings.keys.lost_sessions())
                    .arg(0)
                    .arg(0)
                    .arg("WITHSCORES"),
            )
            .await?;
        Ok(first.first().map(|(_, due)| *due as u64))
    }

    async fn lost_session_checked(&self, check: &LostSessionCheck) -> Result<(), StoreError> {
        let key = self.settings.keys.lost_sessions();
        if check.source != LostSessionSource::Lease {
            return self
                .query::<i64>(redis::cmd("ZREM").arg(key).arg(check.member()))
                .await
                .map(|_| ());
        }
        // A lease goes with its holds (one slot: the holds are a part of
        // the set's).
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("ZREM").arg(&key).arg(check.member()).ignore();
        pipe.cmd("DEL")
            .arg(self.settings.keys.lease_holds(&check.call_id))
            .ignore();
        self.query_pipe::<()>(&pipe).await
    }

    async fn renew_lease(
        &self,
        call_id: &str,
        hold: &LeaseHold,
        only_held: bool,
    ) -> Result<bool, StoreError> {
        let mut renew = RENEW_LEASE.key(self.settings.keys.lost_sessions());
        renew
            .key(self.settings.keys.lease_holds(call_id))
            .arg(LostSessionCheck::lease(call_id).member())
            .arg(&hold.holder)
            .arg(hold.value())
            .arg(if only_held { "1" } else { "0" })
            .arg(
                hold.due_ms
                    .saturating_add(HOLDS_KEPT_MS)
                    .min(LATEST_EXPIRY_MS),
            );
        let held: i64 = self.invoke(&renew).await?;
        Ok(held == 1)
    }

    async fn forget_lease(&self, call_id: &str, holder: Option<&str>) -> Result<(), StoreError> {
        let mut forget = FORGET_LEASE.key(self.settings.keys.lost_sessions());
        forget
            .key(self.settings.keys.lease_holds(call_id))
            .arg(LostSessionCheck::lease(call_id).member())
            .arg(holder.unwrap_or_default());
        self.invoke::<i64>(&forget).await.map(|_| ())
    }

    async fn lease_holds(&self, call_id: &str) -> Result<Vec<LeaseHold>, StoreError> {
        let fields: Vec<(String, String)> = self
            .query(redis::cmd("HGETALL").arg(self.settings.keys.lease_holds(call_id)))
            .await?;
        // A value that is not a hold is not one.
        Ok(fields
            .iter()
            .filter_map(|(holder, value)| LeaseHold::from_field(holder, value))
            .collect())
    }

    async fn lost_session_due(&self, check: &LostSessionCheck) -> Result<Option<u64>, StoreError> {
        let score: Option<f64> = self
            .query(
                redis::cmd("ZSCORE")
                    .arg(self.settings.keys.lost_sessions())
                    .arg(check.member()),
            )
            .await?;
        Ok(score.map(|due| due as u64))
    }
}
