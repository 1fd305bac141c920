//! Text conversations (`text:*`) in Redis.

use async_trait::async_trait;

use super::scripts::{CLOSE_TEXT_CONVERSATION, OPEN_TEXT_CONVERSATION};
use super::store::RedisStore;
use crate::store::{StoreError, TextEnd, TextStore};

#[async_trait]
impl TextStore for RedisStore {
    async fn open_text_conversation(
        &self,
        key: &str,
        candidate: &str,
        now_ms: u64,
    ) -> Result<String, StoreError> {
        let keys = &self.settings.keys;
        self.invoke(
            OPEN_TEXT_CONVERSATION
                .key(keys.text_conversation(key))
                .key(keys.text_active())
                .arg(key)
                .arg(candidate)
                .arg(now_ms),
        )
        .await
    }

    async fn idle_text_conversations(
        &self,
        before_ms: u64,
        max: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.query(
            redis::cmd("ZRANGEBYSCORE")
                .arg(self.settings.keys.text_active())
                .arg("-inf")
                .arg(before_ms)
                .arg("LIMIT")
                .arg(0)
                .arg(max),
        )
        .await
    }

    async fn close_text_conversation(
        &self,
        key: &str,
        before_ms: u64,
        reason: &str,
        at_ms: u64,
    ) -> Result<Option<String>, StoreError> {
        let keys = &self.settings.keys;
        self.invoke(
            CLOSE_TEXT_CONVERSATION
                .key(keys.text_conversation(key))
                .key(keys.text_active())
                .key(keys.text_ending())
                .arg(key)
                .arg(before_ms)
                .arg(reason)
                .arg(at_ms),
        )
        .await
    }

    async fn pending_text_ends(&self, max: usize) -> Result<Vec<TextEnd>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        // Scores come back as text a float may need (`1.8e+19`).
        let members: Vec<(String, f64)> = self
            .query(
                redis::cmd("ZRANGE")
                    .arg(self.settings.keys.text_ending())
                    .arg(0)
                    .arg(max - 1)
                    .arg("WITHSCORES"),
            )
            .await?;
        Ok(members
            .iter()
            .map(|(member, at_ms)| TextEnd::from_member(member, *at_ms as u64))
            .collect())
    }

    async fn text_end_recorded(&self, end: &TextEnd) -> Result<(), StoreError> {
        self.query::<()>(
            redis::cmd("ZREM")
                .arg(self.settings.keys.text_ending())
                .arg(end.member()),
        )
        .await
    }

    async fn first_sight_of_message(
        &self,
        message_id: &str,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        self.set_once(self.settings.keys.text_message(message_id), ttl_ms)
            .await
    }

    async fn forget_message(&self, message_id: &str) -> Result<(), StoreError> {
        self.query::<()>(redis::cmd("DEL").arg(self.settings.keys.text_message(message_id)))
            .await
    }
}
