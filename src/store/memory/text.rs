//! Text conversations (`text:*`) in the embedded store.

use async_trait::async_trait;

use std::collections::BTreeMap;

use super::keyspace::{Blob, Op};
use super::store::MemoryStore;
use super::text_claims::{claimed, holder, owner};
use crate::store::{EndClaim, StoreError, TextEnd, TextStore};

#[async_trait]
impl TextStore for MemoryStore {
    async fn open_text_conversation(
        &self,
        key: &str,
        legacy: Option<&str>,
        candidate: &str,
        now_ms: u64,
    ) -> Result<String, StoreError> {
        let keys = &self.settings.keys;
        let mapping = keys.text_conversation(key);
        let active = keys.text_active();
        let legacy = legacy
            .filter(|legacy| *legacy != key)
            .map(|legacy| (legacy, keys.text_conversation(legacy)));
        self.write(|ks, now| {
            let mut ops = Vec::new();
            let open = ks.string(&mapping, now).map(str::to_owned);
            let id = match (open, &legacy) {
                (Some(id), _) => id,
                (None, legacy) => {
                    let moved = legacy.as_ref().and_then(|(member, legacy_mapping)| {
                        let id = ks.string(legacy_mapping, now)?.to_owned();
                        ops.push(Op::Del {
                            key: legacy_mapping.clone(),
                        });
                        ops.push(Op::ZRem {
                            key: active.clone(),
                            member: (*member).to_owned(),
                        });
                        Some(id)
                    });
                    let id = moved.unwrap_or_else(|| candidate.to_owned());
                    ops.push(Op::Set {
                        key: mapping.clone(),
                        value: id.clone(),
                        expires_at_ms: None,
                    });
                    id
                }
            };
            ops.push(Op::ZAdd {
                key: active.clone(),
                member: key.to_owned(),
                score: now_ms,
            });
            (ops, id)
        })
    }

    async fn touch_text_conversation(
        &self,
        key: &str,
        call_id: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let keys = &self.settings.keys;
        let mapping = keys.text_conversation(key);
        let active = keys.text_active();
        self.write(|ks, now| {
            if ks.string(&mapping, now) != Some(call_id) {
                return (Vec::new(), false);
            }
            let touch = Op::ZAdd {
                key: active,
                member: key.to_owned(),
                score: now_ms,
            };
            (vec![touch], true)
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
        claim: &EndClaim,
    ) -> Result<Option<String>, StoreError> {
        let keys = &self.settings.keys;
        let mapping = keys.text_conversation(key);
        let active = keys.text_active();
        let ending = keys.text_ending();
        let claims = keys.text_ending_claims();
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
                    attempts: 0,
                };
                ops.push(Op::ZAdd {
                    key: ending.clone(),
                    member: end.member(),
                    score: at_ms,
                });
                ops.push(claimed(&claims, &end, claim, now));
            }
            (ops, id)
        })
    }

    async fn pending_text_ends(&self, now_ms: u64, max: usize) -> Result<Vec<TextEnd>, StoreError> {
        let ending = self.settings.keys.text_ending();
        let tries = self.settings.keys.text_ending_tries();
        self.read(|ks, now| {
            let mut ends: Vec<(u64, &String)> = ks
                .sorted(&ending, now)
                .into_iter()
                .flatten()
                .filter(|(_, due_ms)| **due_ms <= now_ms)
                .map(|(member, due_ms)| (*due_ms, member))
                .collect();
            ends.sort();
            let tries = ks.hash(&tries, now);
            ends.into_iter()
                .take(max)
                .map(|(due_ms, member)| {
                    let tried = tries
                        .and_then(|t| t.get(member))
                        .and_then(|t| std::str::from_utf8(t).ok());
                    TextEnd::from_member(member, due_ms, tried)
                })
                .collect()
        })
    }

    async fn claim_text_end(
        &self,
        end: &TextEnd,
        claim: &EndClaim,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let keys = &self.settings.keys;
        let ending = keys.text_ending();
        let claims = keys.text_ending_claims();
        let member = end.member();
        self.write(|ks, now| {
            let due = ks
                .sorted(&ending, now)
                .and_then(|set| set.get(&member).copied());
            if due.is_none_or(|due| due > now_ms) || holder(ks, &claims, &member, now).is_some() {
                return (Vec::new(), false);
            }
            (vec![claimed(&claims, end, claim, now)], true)
        })
    }

    async fn text_end_recorded(&self, end: &TextEnd) -> Result<(), StoreError> {
        let keys = &self.settings.keys;
        let (ending, tries, claims) = (
            keys.text_ending(),
            keys.text_ending_tries(),
            keys.text_ending_claims(),
        );
        let member = end.member();
        self.write(|_, _| {
            // The claim goes whoever holds it, as in Redis: no one would
            // take it off an end no longer pending.
            let ops = vec![
                Op::ZRem {
                    key: ending,
                    member: member.clone(),
                },
                Op::HDel {
                    key: tries,
                    fields: vec![member.clone()],
                },
                Op::HDel {
                    key: claims,
                    fields: vec![member],
                },
            ];
            (ops, ())
        })
    }

    async fn text_end_failed(
        &self,
        end: &TextEnd,
        owner: &str,
        retry_at_ms: Option<u64>,
    ) -> Result<bool, StoreError> {
        let keys = &self.settings.keys;
        let (ending, tries, claims, set_aside) = (
            keys.text_ending(),
            keys.text_ending_tries(),
            keys.text_ending_claims(),
            keys.text_ending_set_aside(),
        );
        let member = end.member();
        self.write(|ks, now| {
            let pending = ks
                .sorted(&ending, now)
                .is_some_and(|set| set.contains_key(&member));
            // Counted only while the claim names this attempt, as in Redis:
            // after another's claim, the tries it read may be stale.
            if !pending || self::owner(ks, &claims, &member, now) != Some(owner) {
                return (Vec::new(), false);
            }
            let mut ops = vec![
                Op::HDel {
                    key: claims,
                    fields: vec![member.clone()],
                },
                Op::HSet {
                    key: tries,
                    fields: BTreeMap::from([(member.clone(), Blob(end.tries().into_bytes()))]),
                },
            ];
            match retry_at_ms {
                Some(due_ms) => ops.push(Op::ZAdd {
                    key: ending,
                    member,
                    score: due_ms,
                }),
                None => {
                    ops.push(Op::ZRem {
                        key: ending,
                        member: member.clone(),
                    });
                    ops.push(Op::ZAdd {
                        key: set_aside,
                        member,
                        score: end.at_ms,
                    });
                }
            }
            (ops, true)
        })
    }

    async fn set_aside_text_ends(&self, max: usize) -> Result<Vec<TextEnd>, StoreError> {
        let set_aside = self.settings.keys.text_ending_set_aside();
        let tries = self.settings.keys.text_ending_tries();
        self.read(|ks, now| {
            let mut ends: Vec<(u64, &String)> = ks
                .sorted(&set_aside, now)
                .into_iter()
                .flatten()
                .map(|(member, at_ms)| (*at_ms, member))
                .collect();
            ends.sort();
            let tries = ks.hash(&tries, now);
            ends.into_iter()
                .take(max)
                .map(|(at_ms, member)| {
                    let tried = tries
                        .and_then(|t| t.get(member))
                        .and_then(|t| std::str::from_utf8(t).ok());
                    TextEnd::from_member(member, at_ms, tried)
                })
                .collect()
        })
    }

    async fn first_sight_of_message(
        &self,
        message_id: &str,
        owner: &str,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        self.set_once_as(&self.settings.keys.text_message(message_id), owner, ttl_ms)
    }

    async fn keep_message(
        &self,
        message_id: &str,
        owner: &str,
        ttl_ms: u64,
    ) -> Result<(), StoreError> {
        let key = self.settings.keys.text_message(message_id);
        self.write(|_, now| {
            let set = Op::Set {
                key,
                value: owner.to_owned(),
                expires_at_ms: Some(now.saturating_add(ttl_ms.max(1))),
            };
            (vec![set], ())
        })
    }

    async fn forget_message(&self, message_id: &str, owner: &str) -> Result<(), StoreError> {
        let key = self.settings.keys.text_message(message_id);
        // Compared under the write lock: no one takes the note in between.
        self.write(|ks, now| match ks.string(&key, now) {
            Some(noted) if noted == owner => (vec![Op::Del { key }], ()),
            _ => (Vec::new(), ()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreSettings;

    fn claim(owner: &str) -> EndClaim {
        EndClaim {
            owner: owner.to_owned(),
            ttl_ms: 60_000,
        }
    }

    #[tokio::test]
    async fn a_conversation_stays_open_until_idle_and_closes_once() {
        let store = MemoryStore::new(StoreSettings::default());
        let id = store
            .open_text_conversation("sms:k", None, "c1", 1_000)
            .await
            .unwrap();
        assert_eq!(id, "c1");
        let again = store
            .open_text_conversation("sms:k", None, "c2", 2_000)
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
                .close_text_conversation("sms:k", 1_500, "idle_timeout", 9, &claim("a"))
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .close_text_conversation("sms:k", 2_000, "idle_timeout", 9, &claim("a"))
                .await
                .unwrap(),
            Some("c1".to_owned())
        );
        // Its end is pending until recorded, and the closer's.
        let pending = store.pending_text_ends(9, 10).await.unwrap();
        let end = TextEnd {
            call_id: "c1".into(),
            reason: "idle_timeout".into(),
            at_ms: 9,
            attempts: 0,
        };
        assert_eq!(pending, std::slice::from_ref(&end));
        assert!(!store.claim_text_end(&end, &claim("b"), 9).await.unwrap());
        store.text_end_recorded(&end).await.unwrap();
        assert!(store.pending_text_ends(9, 10).await.unwrap().is_empty());
        // Recorded: no one claims it again (a sweep that read it before).
        assert!(!store.claim_text_end(&end, &claim("b"), 9).await.unwrap());
        assert_eq!(
            store
                .close_text_conversation("sms:k", 2_000, "idle_timeout", 9, &claim("a"))
                .await
                .unwrap(),
            None
        );
        let next = store
            .open_text_conversation("sms:k", None, "c3", 3_000)
            .await
            .unwrap();
        assert_eq!(next, "c3");
    }

    /// An end noted pending by a closer whose claim lapsed at once (a
    /// server gone), as `{call}`.
    async fn pending_end(store: &MemoryStore, call: &str, at_ms: u64) -> TextEnd {
        let key = format!("chat:{call}");
        store
            .open_text_conversation(&key, None, call, 0)
            .await
            .unwrap();
        let gone = EndClaim {
            owner: "gone".into(),
            ttl_ms: 0,
        };
        store
            .close_text_conversation(&key, 0, "idle_timeout", at_ms, &gone)
            .await
            .unwrap();
        TextEnd {
            call_id: call.into(),
            reason: "idle_timeout".into(),
            at_ms,
            attempts: 0,
        }
    }

    #[tokio::test]
    async fn one_claim_on_an_end_holds_until_let_go_or_lapsed() {
        let store = MemoryStore::new(StoreSettings::default());
        let end = pending_end(&store, "c1", 100).await;
        assert!(store.claim_text_end(&end, &claim("a"), 100).await.unwrap());
        assert!(!store.claim_text_end(&end, &claim("b"), 100).await.unwrap());
        // Not yet due: not claimed.
        let early = pending_end(&store, "c2", 500).await;
        assert!(
            !store
                .claim_text_end(&early, &claim("b"), 499)
                .await
                .unwrap()
        );
        // Only the holder reschedules it, which lets the claim go.
        let failed = TextEnd {
            attempts: 1,
            ..end.clone()
        };
        assert!(
            !store
                .text_end_failed(&failed, "b", Some(200))
                .await
                .unwrap()
        );
        assert!(
            store
                .text_end_failed(&failed, "a", Some(200))
                .await
                .unwrap()
        );
        assert_eq!(store.pending_text_ends(199, 10).await.unwrap(), []);
        assert_eq!(
            store.pending_text_ends(200, 10).await.unwrap(),
            std::slice::from_ref(&failed)
        );
        assert!(
            store
                .claim_text_end(&failed, &claim("b"), 200)
                .await
                .unwrap()
        );
        // A claim that lapsed is taken over.
        let lapsing = EndClaim {
            owner: "c".into(),
            ttl_ms: 0,
        };
        let other = pending_end(&store, "c3", 100).await;
        assert!(store.claim_text_end(&other, &lapsing, 100).await.unwrap());
        assert!(
            store
                .claim_text_end(&other, &claim("d"), 100)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn an_end_set_aside_is_no_longer_pending_and_is_listed() {
        let store = MemoryStore::new(StoreSettings::default());
        let end = pending_end(&store, "c1", 100).await;
        let newer = pending_end(&store, "c2", 150).await;
        assert!(store.claim_text_end(&end, &claim("a"), 100).await.unwrap());
        let last = TextEnd {
            attempts: 10,
            ..end.clone()
        };
        assert!(store.text_end_failed(&last, "a", None).await.unwrap());
        assert_eq!(
            store.pending_text_ends(u64::MAX, 10).await.unwrap(),
            [newer]
        );
        assert_eq!(store.set_aside_text_ends(10).await.unwrap(), [last]);
    }

    /// How many claims the claims hash keeps.
    fn claims_left(store: &MemoryStore) -> usize {
        let claims = store.settings.keys.text_ending_claims();
        store
            .read(|ks, now| ks.hash(&claims, now).map_or(0, BTreeMap::len))
            .unwrap()
    }

    #[tokio::test]
    async fn recording_an_end_lets_its_claim_go_whoever_holds_it() {
        let store = MemoryStore::new(StoreSettings::default());
        let end = pending_end(&store, "c1", 100).await;
        // The closer's claim lapsed and "b" took the end; the closer,
        // slower than its claim, records it then.
        assert!(store.claim_text_end(&end, &claim("b"), 100).await.unwrap());
        store.text_end_recorded(&end).await.unwrap();
        assert_eq!(claims_left(&store), 0, "the claim of b outlived its end");
        let failed = TextEnd {
            attempts: 1,
            ..end.clone()
        };
        assert!(
            !store
                .text_end_failed(&failed, "b", Some(200))
                .await
                .unwrap()
        );
        assert_eq!(claims_left(&store), 0);
    }

    #[tokio::test]
    async fn a_failure_counts_only_while_the_claim_is_its_own() {
        let store = MemoryStore::new(StoreSettings::default());
        let end = pending_end(&store, "c1", 100).await;
        let attempt = |attempts| TextEnd {
            attempts,
            ..end.clone()
        };
        let lapsing = EndClaim {
            owner: "a".into(),
            ttl_ms: 0,
        };
        assert!(store.claim_text_end(&end, &lapsing, 100).await.unwrap());
        assert!(store.claim_text_end(&end, &claim("b"), 100).await.unwrap());
        let once = attempt(1);
        assert!(store.text_end_failed(&once, "b", Some(200)).await.unwrap());
        assert!(store.claim_text_end(&once, &claim("c"), 200).await.unwrap());
        let twice = attempt(2);
        assert!(store.text_end_failed(&twice, "c", Some(300)).await.unwrap());
        // "a", whose claim was taken since, reports the count it read
        // plus one, last.
        assert!(!store.text_end_failed(&once, "a", Some(150)).await.unwrap());
        assert!(store.pending_text_ends(299, 10).await.unwrap().is_empty());
        assert_eq!(store.pending_text_ends(300, 10).await.unwrap(), [twice]);
        assert_eq!(claims_left(&store), 0);
    }

    #[tokio::test]
    async fn a_message_id_is_seen_first_once_and_forgotten_only_by_its_owner() {
        let store = MemoryStore::new(StoreSettings::default());
        let first_sight = |sid, owner| store.first_sight_of_message(sid, owner, 60_000);
        assert!(first_sight("SM1", "a").await.unwrap());
        assert!(!first_sight("SM1", "b").await.unwrap());
        assert!(first_sight("SM2", "a").await.unwrap());
        // Another's note stays: only the owner's forget deletes it.
        store.forget_message("SM1", "b").await.unwrap();
        assert!(!first_sight("SM1", "b").await.unwrap());
        store.forget_message("SM1", "a").await.unwrap();
        assert!(first_sight("SM1", "b").await.unwrap());
        assert!(!first_sight("SM1", "a").await.unwrap());
        // A note kept longer, or taken by keeping it (it had lapsed).
        assert!(first_sight("SM3", "a").await.unwrap());
        store.keep_message("SM3", "a", 120_000).await.unwrap();
        assert!(!first_sight("SM3", "b").await.unwrap());
        store.keep_message("SM4", "a", 60_000).await.unwrap();
        assert!(!first_sight("SM4", "b").await.unwrap());
    }
}
