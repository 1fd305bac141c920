//! `calls:lost_sessions` in Redis: a sorted set of checks by due time,
//! claimed as the webhook outbox's deliveries are (one script moves the due
//! ones to their lease's end).

use async_trait::async_trait;

use super::scripts::CLAIM_LOST_SESSIONS;
use super::store::RedisStore;
use crate::store::{LostSessionCheck, LostSessionStore, StoreError};

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
        self.query::<i64>(
            redis::cmd("ZREM")
                .arg(self.settings.keys.lost_sessions())
                .arg(check.member()),
        )
        .await
        .map(|_| ())
    }

    async fn renew_lease(
        &self,
        call_id: &str,
        due_ms: u64,
        only_held: bool,
    ) -> Result<bool, StoreError> {
        let key = self.settings.keys.lost_sessions();
        let member = LostSessionCheck::lease(call_id).member();
        let mut pipe = redis::pipe();
        pipe.atomic();
        let add = pipe.cmd("ZADD").arg(&key);
        if only_held {
            add.arg("XX");
        }
        add.arg(due_ms).arg(&member).ignore();
        pipe.cmd("ZSCORE").arg(&key).arg(&member);
        let (score,): (Option<f64>,) = self.query_pipe(&pipe).await?;
        Ok(score.is_some())
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
