//! `rate_limit:{phone_hash}` in the embedded store.

use async_trait::async_trait;

use super::keyspace::Op;
use super::store::MemoryStore;
use crate::store::{NumberLimitStore, StoreError};

#[async_trait]
impl NumberLimitStore for MemoryStore {
    async fn claim_number(
        &self,
        phone_hash: &str,
        call_id: &str,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        let key = self.settings.keys.rate_limit(phone_hash);
        self.write(|ks, now| match ks.string(&key, now) {
            Some(holder) => (Vec::new(), holder == call_id),
            None => {
                let set = Op::Set {
                    key: key.clone(),
                    value: call_id.to_owned(),
                    expires_at_ms: Some(now.saturating_add(ttl_ms)),
                };
                (vec![set], true)
            }
        })
    }

    async fn release_number(&self, phone_hash: &str, call_id: &str) -> Result<(), StoreError> {
        let key = self.settings.keys.rate_limit(phone_hash);
        self.write(|ks, now| {
            if ks.string(&key, now) == Some(call_id) {
                (vec![Op::Del { key: key.clone() }], ())
            } else {
                (Vec::new(), ())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_call_holds_a_number_until_it_lets_go() {
        let store = MemoryStore::new(crate::store::StoreSettings::default());
        assert!(store.claim_number("h1", "a", 60_000).await.unwrap());
        assert!(store.claim_number("h1", "a", 60_000).await.unwrap());
        assert!(!store.claim_number("h1", "b", 60_000).await.unwrap());
        store.release_number("h1", "b").await.unwrap();
        assert!(!store.claim_number("h1", "b", 60_000).await.unwrap());
        store.release_number("h1", "a").await.unwrap();
        assert!(store.claim_number("h1", "b", 60_000).await.unwrap());
    }
}
