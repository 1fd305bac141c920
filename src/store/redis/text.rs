//! Text conversations (`text:*`) in Redis.

use async_trait::async_trait;

use super::scripts::{CLOSE_TEXT_CONVERSATION, OPEN_TEXT_CONVERSATION};
use super::store::RedisStore;
use crate::store::{StoreError, TextStore};

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
    ) -> Result<Option<String>, StoreError> {
        let keys = &self.settings.keys;
        self.invoke(
            CLOSE_TEXT_CONVERSATION
                .key(keys.text_conversation(key))
                .key(keys.text_active())
                .arg(key)
                .arg(before_ms),
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
