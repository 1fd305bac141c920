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
        self.set_once(self.settings.keys.stream_token(token_id), ttl_ms)
            .await
    }
}
