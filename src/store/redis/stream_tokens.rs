//! Used stream tokens (`stream:token:*`) in Redis.

use async_trait::async_trait;

use super::store::RedisStore;
use crate::store::{StoreError, StreamTokenStore};

#[async_trait]
impl StreamTokenStore for RedisStore {
    async fn first_use_of_stream_token(
        &self,
        token_id: &str,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        let set: Option<String> = self
            .query(
                redis::cmd("SET")
                    .arg(self.settings.keys.stream_token(token_id))
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms.max(1)),
            )
            .await?;
        Ok(set.is_some())
    }
}
