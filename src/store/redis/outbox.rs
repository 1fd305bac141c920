//! The webhook outbox in Redis: a sorted set of ids by due time and one
//! string per delivery.

use async_trait::async_trait;

use super::scripts::{CLAIM_DELIVERIES, ENQUEUE_DELIVERY, REDRIVE_DELIVERY};
use super::store::RedisStore;
use crate::store::settings::millis;
use crate::store::{DEAD_LETTERS_MAX, Enqueued, Outbox, OutboxEntry, StoreError};

#[async_trait]
impl Outbox for RedisStore {
    async fn enqueue_delivery(
        &self,
        id: &str,
        payload: &str,
        due_ms: u64,
    ) -> Result<Enqueued, StoreError> {
        let keys = &self.settings.keys;
        let mut enqueue = ENQUEUE_DELIVERY.key(keys.outbox_event(id));
        enqueue
            .key(keys.outbox())
            .arg(payload)
            .arg(millis(self.settings.outbox_ttl))
            .arg(due_ms)
            .arg(id);
        let added: i64 = self.invoke(&enqueue).await?;
        Ok(match added {
            1 => Enqueued::Queued,
            2 => Enqueued::Delivered,
            _ => Enqueued::Pending,
        })
    }

    async fn claim_deliveries(
        &self,
        now_ms: u64,
        lease_ms: u64,
        max: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let keys = &self.settings.keys;
        let mut claim = CLAIM_DELIVERIES.key(keys.outbox());
        claim
            .arg(now_ms)
            .arg(now_ms.saturating_add(lease_ms))
            .arg(max);
        let ids: Vec<String> = self.invoke(&claim).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let event_keys: Vec<String> = ids.iter().map(|id| keys.outbox_event(id)).collect();
        let payloads: Vec<Option<String>> = self.query(redis::cmd("MGET").arg(&event_keys)).await?;
        let mut claimed = Vec::with_capacity(ids.len());
        // Delivered by someone else meanwhile, or outlived its TTL: dropped
        // from the outbox in one ZREM, not one round trip each.
        let mut gone = Vec::new();
        for (id, payload) in ids.into_iter().zip(payloads) {
            match payload {
                Some(payload) => claimed.push(OutboxEntry { id, payload }),
                None => gone.push(id),
            }
        }
        if !gone.is_empty() {
            self.query::<i64>(redis::cmd("ZREM").arg(keys.outbox()).arg(&gone))
                .await?;
        }
        Ok(claimed)
    }

    async fn reschedule_delivery(
        &self,
        id: &str,
        payload: &str,
        due_ms: u64,
    ) -> Result<(), StoreError> {
        let keys = &self.settings.keys;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(keys.outbox_event(id))
            .arg(payload)
            .arg("KEEPTTL")
            .ignore()
            .cmd("ZADD")
            .arg(keys.outbox())
            .arg(due_ms)
            .arg(id)
            .ignore();
        self.query_pipe(&pipe).await
    }

    async fn complete_delivery(&self, id: &str) -> Result<(), StoreError> {
        // The event's key stays, emptied, until its TTL: a second queuing
        // of the same event (two servers ending one call) finds it and
        // adds nothing, so a delivered event is not delivered again.
        let keys = &self.settings.keys;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("ZREM")
            .arg(keys.outbox())
            .arg(id)
            .ignore()
            .cmd("SET")
            .arg(keys.outbox_event(id))
            .arg("")
            .arg("XX")
            .arg("KEEPTTL")
            .ignore();
        self.query_pipe(&pipe).await
    }

    async fn bury_delivery(&self, id: &str, payload: &str) -> Result<(), StoreError> {
        let dead = self.settings.keys.dead_letters();
        let keep = i64::try_from(DEAD_LETTERS_MAX).unwrap_or(i64::MAX);
        let mut pipe = self.remove_delivery(id);
        pipe.cmd("RPUSH")
            .arg(&dead)
            .arg(payload)
            .ignore()
            .cmd("LTRIM")
            .arg(&dead)
            .arg(-keep)
            .arg(-1)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&dead)
            .arg(millis(self.settings.outbox_ttl))
            .ignore();
        self.query_pipe(&pipe).await
    }

    async fn outbox_len(&self) -> Result<u64, StoreError> {
        self.query(redis::cmd("ZCARD").arg(self.settings.keys.outbox()))
            .await
    }

    async fn dead_letters_len(&self) -> Result<u64, StoreError> {
        self.query(redis::cmd("LLEN").arg(self.settings.keys.dead_letters()))
            .await
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<String>, StoreError> {
        let Some(last) = max.checked_sub(1) else {
            return Ok(Vec::new());
        };
        self.query(
            redis::cmd("LRANGE")
                .arg(self.settings.keys.dead_letters())
                .arg(0)
                .arg(last),
        )
        .await
    }

    async fn redrive_delivery(
        &self,
        buried: &str,
        id: &str,
        payload: &str,
        due_ms: u64,
    ) -> Result<bool, StoreError> {
        let keys = &self.settings.keys;
        let mut redrive = REDRIVE_DELIVERY.key(keys.dead_letters());
        redrive
            .key(keys.outbox_event(id))
            .key(keys.outbox())
            .arg(buried)
            .arg(payload)
            .arg(millis(self.settings.outbox_ttl))
            .arg(due_ms)
            .arg(id);
        let queued: i64 = self.invoke(&redrive).await?;
        Ok(queued == 1)
    }
}

impl RedisStore {
    /// A transaction taking a delivery out of the outbox.
    fn remove_delivery(&self, id: &str) -> redis::Pipeline {
        let keys = &self.settings.keys;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("ZREM")
            .arg(keys.outbox())
            .arg(id)
            .ignore()
            .cmd("DEL")
            .arg(keys.outbox_event(id))
            .ignore();
        pipe
    }
}
