//! Used stream tokens (`stream:token:*`) in the embedded store.

use async_trait::async_trait;

use super::store::MemoryStore;
use crate::store::{StoreError, StreamTokenStore};

#[async_trait]
impl StreamTokenStore for MemoryStore {
    async fn first_use_of_stream_token(
        &self,
        token_id: &str,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        self.set_once(&self.settings.keys.stream_token(token_id), ttl_ms)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{MemoryStore, StoreSettings, StreamTokenStore};

    #[tokio::test]
    async fn a_token_is_used_once_until_it_expires() {
        let store = MemoryStore::new(StoreSettings::default());
        assert!(store.first_use_of_stream_token("t1", 60_000).await.unwrap());
        assert!(!store.first_use_of_stream_token("t1", 60_000).await.unwrap());
        assert!(store.first_use_of_stream_token("t2", 60_000).await.unwrap());
    }
}
