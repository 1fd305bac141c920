//! Used stream tokens (`stream:token:*`) in the embedded store.

use async_trait::async_trait;

use super::keyspace::Op;
use super::store::MemoryStore;
use crate::store::{StoreError, StreamTokenStore};

#[async_trait]
impl StreamTokenStore for MemoryStore {
    async fn first_use_of_stream_token(
        &self,
        token_id: &str,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        let key = self.settings.keys.stream_token(token_id);
        self.write(|ks, now| {
            if ks.string(&key, now).is_some() {
                return (Vec::new(), false);
            }
            let set = Op::Set {
                key: key.clone(),
                value: "1".to_owned(),
                expires_at_ms: Some(now.saturating_add(ttl_ms.max(1))),
            };
            (vec![set], true)
        })
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
