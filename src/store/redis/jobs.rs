//! The evaluation job queue on a Redis Stream with a consumer group.

use std::time::Duration;

use async_trait::async_trait;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadReply};

use super::scripts::KEEP_JOB;
use super::store::{EVALUATORS, RedisStore};
use crate::store::settings::millis;
use crate::store::{JobDelivery, JobQueue, StoreError};

/// The stream keeps at most about this many entries (acknowledged jobs are
/// deleted at once; this bounds a backlog no worker consumes).
const MAX_STREAM_LEN: u64 = 100_000;

/// The field holding a job's payload.
const PAYLOAD: &str = "job";

#[async_trait]
impl JobQueue for RedisStore {
    async fn push_job(&self, payload: &str) -> Result<String, StoreError> {
        let key = self.settings.keys.eval_jobs();
        self.query(
            redis::cmd("XADD")
                .arg(key)
                .arg("MAXLEN")
                .arg("~")
                .arg(MAX_STREAM_LEN)
                .arg("*")
                .arg(PAYLOAD)
                .arg(payload),
        )
        .await
    }

    async fn read_jobs(
        &self,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<JobDelivery>, StoreError> {
        let key = self.settings.keys.eval_jobs();
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(EVALUATORS)
            .arg(consumer)
            .arg("COUNT")
            .arg(max);
        if !wait.is_zero() {
            read.arg("BLOCK").arg(millis(wait));
        }
        read.arg("STREAMS").arg(&key).arg(">");
        let reply: Option<StreamReadReply> = self
            .with_group(|| async {
                let mut conn = self.blocking.clone();
                let limit = self.settings.op_timeout + wait;
                match tokio::time::timeout(limit, read.query_async(&mut conn)).await {
                    Ok(result) => Ok(result?),
                    Err(_) => Err(StoreError::Timeout(limit)),
                }
            })
            .await?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .filter_map(|entry| delivery(entry, 1))
            .collect())
    }

    async fn reclaim_jobs(
        &self,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<JobDelivery>, StoreError> {
        let key = self.settings.keys.eval_jobs();
        let claim = {
            let mut claim = redis::cmd("XAUTOCLAIM");
            claim
                .arg(&key)
                .arg(EVALUATORS)
                .arg(consumer)
                .arg(u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX))
                .arg("0-0")
                .arg("COUNT")
                .arg(max);
            claim
        };
        let reply: StreamAutoClaimReply = self.with_group(|| self.query(&claim)).await?;
        if reply.claimed.is_empty() {
            return Ok(Vec::new());
        }
        // XAUTOCLAIM counted this delivery; read the counts back.
        let mut pipe = redis::pipe();
        for entry in &reply.claimed {
            pipe.cmd("XPENDING")
                .arg(&key)
                .arg(EVALUATORS)
                .arg(&entry.id)
                .arg(&entry.id)
                .arg(1);
        }
        let counts: Vec<StreamPendingCountReply> = self.query_pipe(&pipe).await?;
        Ok(reply
            .claimed
            .into_iter()
            .zip(counts)
            .filter_map(|(entry, count)| {
                let deliveries = count.ids.first().map_or(1, |p| p.times_delivered as u64);
                delivery(entry, deliveries)
            })
            .collect())
    }

    async fn ack_job(&self, id: &str) -> Result<(), StoreError> {
        let key = self.settings.keys.eval_jobs();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("XACK")
            .arg(&key)
            .arg(EVALUATORS)
            .arg(id)
            .ignore()
            .cmd("XDEL")
            .arg(&key)
            .arg(id)
            .ignore();
        self.query_pipe(&pipe).await
    }

    async fn keep_job(&self, consumer: &str, id: &str) -> Result<bool, StoreError> {
        let mut keep = KEEP_JOB.key(self.settings.keys.eval_jobs());
        keep.arg(EVALUATORS).arg(consumer).arg(id);
        let kept: i64 = self.invoke(&keep).await?;
        Ok(kept == 1)
    }
}

impl RedisStore {
    /// Runs `op`; if the consumer group does not exist (first use, or a
    /// Redis that restarted empty), creates it and runs `op` again.
    async fn with_group<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        match op().await {
            Err(StoreError::Redis(err)) if err.code() == Some("NOGROUP") => {
                let key = self.settings.keys.eval_jobs();
                // From the start of the stream: jobs queued before the group
                // existed are still evaluated.
                let created: Result<(), StoreError> = self
                    .query(
                        redis::cmd("XGROUP")
                            .arg("CREATE")
                            .arg(&key)
                            .arg(EVALUATORS)
                            .arg("0")
                            .arg("MKSTREAM"),
                    )
                    .await;
                match created {
                    Err(StoreError::Redis(err)) if err.code() == Some("BUSYGROUP") => {}
                    other => other?,
                }
                op().await
            }
            other => other,
        }
    }
}

fn delivery(entry: StreamId, deliveries: u64) -> Option<JobDelivery> {
    match entry.get::<String>(PAYLOAD) {
        Some(payload) => Some(JobDelivery {
            id: entry.id,
            payload,
            deliveries,
        }),
        None => {
            tracing::warn!(id = %entry.id, "evaluation job without a payload; ignored");
            None
        }
    }
}
