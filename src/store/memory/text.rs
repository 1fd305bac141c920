//! Text conversations (`text:*`) in the embedded store.

use async_trait::async_trait;

use super::keyspace::Op;
use super::store::MemoryStore;
use crate::store::{StoreError, TextEnd, TextStore};

#[async_trait]
impl TextStore for MemoryStore {
    async fn open_text_conversation(
        &self,
        key: &str,
        candidate: &str,
        now_ms: u64,
    ) -> Result<String, StoreError> {
        let mapping = self.settings.keys.text_conversation(key);
        let active = self.settings.keys.text_active();
        self.write(|ks, now| {
            let mut ops = vec![Op::ZAdd {
                key: active.clone(),
                member: key.to_owned(),
                score: now_ms,
            }];
            let id = match ks.string(&mapping, now) {
                Some(id) => id.to_owned(),
                None => {
                    ops.push(Op::Set {
                        key: mapping.clone(),
                        value: candidate.to_owned(),
                        expires_at_ms: None,
                    });
                    candidate.to_owned()
                }
            };
            (ops, id)
        })
    }

    async fn idle_text_conversations(
        &self,
        before_ms: u64,
        max: usize,
    ) -> Result<Vec<String>, StoreError> {
        let active = self.settings.keys.text_active();
        self.read(|ks, now| {
            let mut idle: Vec<(u64, &String)> = ks
                .sorted(&active, now)
                .into_iter()
                .flatten()
                .filter(|(_, score)| **score <= before_ms)
                .map(|(member, score)| (*score, member))
                .collect();
            idle.sort();
            idle.into_iter()
                .take(max)
                .map(|(_, member)| member.clone())
                .collect()
        })
    }

    async fn close_text_conversation(
        &self,
        key: &str,
        before_ms: u64,
        reason: &str,
        at_ms: u64,
    ) -> Result<Option<String>, StoreError> {
        let mapping = self.settings.keys.text_conversation(key);
        let active = self.settings.keys.text_active();
        let ending = self.settings.keys.text_ending();
        self.write(|ks, now| {
            let last = ks
                .sorted(&active, now)
                .and_then(|set| set.get(key).copied());
            if last.is_none_or(|last| last > before_ms) {
                return (Vec::new(), None);
            }
            let id = ks.string(&mapping, now).map(str::to_owned);
            let mut ops = vec![
                Op::ZRem {
                    key: active.clone(),
                    member: key.to_owned(),
                },
                Op::Del {
                    key: mapping.clone(),
                },
            ];
            if let Some(id) = &id {
                let end = TextEnd {
                    call_id: id.clone(),
                    reason: reason.to_owned(),
                    at_ms,
                };
                ops.push(Op::ZAdd {
                    key: ending.clone(),
                    member: end.member(),
                    score: at_ms,
                });
            }
            (ops, id)
        })
    }

    async fn pending_text_ends(&self, max: usize) -> Result<Vec<TextEnd>, StoreError> {
        let ending = self.settings.keys.text_ending();
        self.read(|ks, now| {
            let mut ends: Vec<(u64, &String)> = ks
                .sorted(&ending, now)
                .into_iter()
                .flatten()
                .map(|(member, at_ms)| (*at_ms, member))
                .collect();
            ends.sort();
            ends.into_iter()
                .take(max)
                .map(|(at_ms, member)| TextEnd::from_member(member, at_ms))
                .collect()
        })
    }

    async fn text_end_recorded(&self, end: &TextEnd) -> Result<(), StoreError> {
        let ending = self.settings.keys.text_ending();
        let member = end.member();
        self.write(|_, _| {
            (
                vec![Op::ZRem {
                    key: ending,
                    member,
                }],
                (),
            )
        })
    }

    async fn first_sight_of_message(
        &self,
        message_id: &str,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        self.set_once(&self.settings.keys.text_message(message_id), ttl_ms)
    }

    async fn forget_message(&self, message_id: &str) -> Result<(), StoreError> {
        let key = self.settings.keys.text_message(message_id);
        self.write(|_, _| (vec![Op::Del { key }], ()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreSettings;

    #[tokio::test]
    async fn a_conversation_stays_open_until_idle_and_closes_once() {
        let store = MemoryStore::new(StoreSettings::default());
        let id = store
            .open_text_conversation("sms:k", "c1", 1_000)
            .await
            .unwrap();
        assert_eq!(id, "c1");
        let again = store
            .open_text_conversation("sms:k", "c2", 2_000)
            .await
            .unwrap();
        assert_eq!(again, "c1");
        assert!(
            store
                .idle_text_conversations(1_999, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store.idle_text_conversations(2_000, 10).await.unwrap(),
            ["sms:k"]
        );
        // A message came since the sweep looked: not closed.
        assert_eq!(
            store
                .close_text_conversation("sms:k", 1_500, "idle_timeout", 9)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .close_text_conversation("sms:k", 2_000, "idle_timeout", 9)
                .await
                .unwrap(),
            Some("c1".to_owned())
        );
        // Its end is pending until recorded.
        let pending = store.pending_text_ends(10).await.unwrap();
        let end = TextEnd {
            call_id: "c1".into(),
            reason: "idle_timeout".into(),
            at_ms: 9,
        };
        assert_eq!(pending, std::slice::from_ref(&end));
        store.text_end_recorded(&end).await.unwrap();
        assert!(store.pending_text_ends(10).await.unwrap().is_empty());
        assert_eq!(
            store
                .close_text_conversation("sms:k", 2_000, "idle_timeout", 9)
                .await
                .unwrap(),
            None
        );
        let next = store
            .open_text_conversation("sms:k", "c3", 3_000)
            .await
            .unwrap();
        assert_eq!(next, "c3");
    }

    #[tokio::test]
    async fn a_message_id_is_seen_first_once() {
        let store = MemoryStore::new(StoreSettings::default());
        assert!(store.first_sight_of_message("SM1", 60_000).await.unwrap());
        assert!(!store.first_sight_of_message("SM1", 60_000).await.unwrap());
        assert!(store.first_sight_of_message("SM2", 60_000).await.unwrap());
        store.forget_message("SM1").await.unwrap();
        assert!(store.first_sight_of_message("SM1", 60_000).await.unwrap());
        assert!(!store.first_sight_of_message("SM1", 60_000).await.unwrap());
    }
}
