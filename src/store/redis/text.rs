//! Text conversations (`text:*`) in Redis.

use std::sync::LazyLock;

use async_trait::async_trait;
use redis::Script;

use super::scripts::{
    CLAIM_TEXT_END, CLOSE_TEXT_CONVERSATION, OPEN_TEXT_CONVERSATION, PENDING_TEXT_ENDS,
    TEXT_END_FAILED, TEXT_END_RECORDED,
};
use super::store::RedisStore;
use crate::store::{EndClaim, StoreError, TextEnd, TextStore};

/// Deletes a message's note only while it is the owner's.
/// KEYS: the note. ARGV: owner. Returns 1 if deleted.
static FORGET_MESSAGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
",
    )
});

/// Notes a text conversation's last message only while it is still open
/// under the same id.
/// KEYS: `{text:active}:conversation:{key}`, `text:active`. ARGV: key, call
/// id, now ms. Returns 1 if noted.
static TOUCH_TEXT_CONVERSATION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
",
    )
});

/// A sorted set's score as Lua hands it back: text a float may need
/// (`1.8446744073709552e+19`); ms past `u64::MAX` are `u64::MAX`.
fn score_ms(score: &str) -> u64 {
    score.parse::<f64>().map_or(0, |ms| ms as u64)
}

#[async_trait]
impl TextStore for RedisStore {
    async fn open_text_conversation(
        &self,
        key: &str,
        legacy: Option<&str>,
        candidate: &str,
        now_ms: u64,
    ) -> Result<String, StoreError> {
        let keys = &self.settings.keys;
        let mut invocation = OPEN_TEXT_CONVERSATION.prepare_invoke();
        invocation
            .key(keys.text_conversation(key))
            .key(keys.text_active())
            .arg(key)
            .arg(candidate)
            .arg(now_ms);
        if let Some(legacy) = legacy.filter(|legacy| *legacy != key) {
            invocation.key(keys.text_conversation(legacy)).arg(legacy);
        }
        self.invoke(&invocation).await
    }

    async fn touch_text_conversation(
        &self,
        key: &str,
        call_id: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let keys = &self.settings.keys;
        let touched: u8 = self
            .invoke(
                TOUCH_TEXT_CONVERSATION
                    .key(keys.text_conversation(key))
                    .key(keys.text_active())
                    .arg(key)
                    .arg(call_id)
                    .arg(now_ms),
            )
            .await?;
        Ok(touched == 1)
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
        claim: &EndClaim,
    ) -> Result<Option<String>, StoreError> {
        let keys = &self.settings.keys;
        self.invoke(
            CLOSE_TEXT_CONVERSATION
                .key(keys.text_conversation(key))
                .key(keys.text_active())
                .key(keys.text_ending())
                .key(keys.text_ending_claims())
                .arg(key)
                .arg(before_ms)
                .arg(reason)
                .arg(at_ms)
                .arg(&claim.owner)
                .arg(claim.ttl_ms),
        )
        .await
    }

    async fn pending_text_ends(&self, now_ms: u64, max: usize) -> Result<Vec<TextEnd>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let keys = &self.settings.keys;
        let flat: Vec<String> = self
            .invoke(
                PENDING_TEXT_ENDS
                    .key(keys.text_ending())
                    .key(keys.text_ending_tries())
                    .arg(now_ms)
                    .arg(max),
            )
            .await?;
        Ok(flat
            .chunks_exact(3)
            .map(|end| {
                let tries = (!end[2].is_empty()).then_some(end[2].as_str());
                TextEnd::from_member(&end[0], score_ms(&end[1]), tries)
            })
            .collect())
    }

    async fn claim_text_end(
        &self,
        end: &TextEnd,
        claim: &EndClaim,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let keys = &self.settings.keys;
        let claimed: u8 = self
            .invoke(
                CLAIM_TEXT_END
                    .key(keys.text_ending())
                    .key(keys.text_ending_claims())
                    .arg(end.member())
                    .arg(&claim.owner)
                    .arg(claim.ttl_ms)
                    .arg(now_ms),
            )
            .await?;
        Ok(claimed == 1)
    }

    async fn text_end_recorded(&self, end: &TextEnd) -> Result<(), StoreError> {
        let keys = &self.settings.keys;
        self.invoke::<()>(
            TEXT_END_RECORDED
                .key(keys.text_ending())
                .key(keys.text_ending_tries())
                .key(keys.text_ending_claims())
                .arg(end.member()),
        )
        .await
    }

    async fn text_end_failed(
        &self,
        end: &TextEnd,
        owner: &str,
        retry_at_ms: Option<u64>,
    ) -> Result<bool, StoreError> {
        let keys = &self.settings.keys;
        let retry_at = retry_at_ms.map(|at| at.to_string()).unwrap_or_default();
        let done: u8 = self
            .invoke(
                TEXT_END_FAILED
                    .key(keys.text_ending())
                    .key(keys.text_ending_tries())
                    .key(keys.text_ending_claims())
                    .key(keys.text_ending_set_aside())
                    .arg(end.member())
                    .arg(owner)
                    .arg(end.tries())
                    .arg(end.at_ms)
                    .arg(retry_at),
            )
            .await?;
        Ok(done == 1)
    }

    async fn set_aside_text_ends(&self, max: usize) -> Result<Vec<TextEnd>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let keys = &self.settings.keys;
        // Scores come back as text a float may need (`1.8e+19`).
        let members: Vec<(String, f64)> = self
            .query(
                redis::cmd("ZRANGE")
                    .arg(keys.text_ending_set_aside())
                    .arg(0)
                    .arg(max - 1)
                    .arg("WITHSCORES"),
            )
            .await?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let mut hmget = redis::cmd("HMGET");
        hmget.arg(keys.text_ending_tries());
        for (member, _) in &members {
            hmget.arg(member);
        }
        let tries: Vec<Option<String>> = self.query(&hmget).await?;
        Ok(members
            .iter()
            .zip(tries)
            .map(|((member, at_ms), tries)| {
                TextEnd::from_member(member, *at_ms as u64, tries.as_deref())
            })
            .collect())
    }

    async fn first_sight_of_message(
        &self,
        message_id: &str,
        owner: &str,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        self.set_once_as(self.settings.keys.text_message(message_id), owner, ttl_ms)
            .await
    }

    async fn keep_message(
        &self,
        message_id: &str,
        owner: &str,
        ttl_ms: u64,
    ) -> Result<(), StoreError> {
        self.query::<()>(
            redis::cmd("SET")
                .arg(self.settings.keys.text_message(message_id))
                .arg(owner)
                .arg("PX")
                .arg(ttl_ms.max(1)),
        )
        .await
    }

    async fn forget_message(&self, message_id: &str, owner: &str) -> Result<(), StoreError> {
        self.invoke::<()>(
            FORGET_MESSAGE
                .key(self.settings.keys.text_message(message_id))
                .arg(owner),
        )
        .await
    }
}
