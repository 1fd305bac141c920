//! `rate_limit:{phone_hash}` in Redis.

use async_trait::async_trait;

use super::scripts::{CLAIM_NUMBER, RELEASE_NUMBER};
use super::store::RedisStore;
use crate::store::{NumberLimitStore, StoreError};

#[async_trait]
impl NumberLimitStore for RedisStore {
    async fn claim_number(
        &self,
        phone_hash: &str,
        call_id: &str,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        let key = self.settings.keys.rate_limit(phone_hash);
        let held: i64 = self
            .invoke(CLAIM_NUMBER.key(&key).arg(call_id).arg(ttl_ms.max(1)))
            .await?;
        Ok(held == 1)
    }

    async fn release_number(&self, phone_hash: &str, call_id: &str) -> Result<(), StoreError> {
        let key = self.settings.keys.rate_limit(phone_hash);
        let _released: i64 = self.invoke(RELEASE_NUMBER.key(&key).arg(call_id)).await?;
        Ok(())
    }
}
