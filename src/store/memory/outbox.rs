//! The webhook outbox in the embedded store.

use async_trait::async_trait;

use super::keyspace::Op;
use super::store::MemoryStore;
use crate::store::settings::millis;
use crate::store::{DEAD_LETTERS_MAX, Enqueued, Outbox, OutboxEntry, StoreError};

#[async_trait]
impl Outbox for MemoryStore {
    async fn enqueue_delivery(
        &self,
        id: &str,
        payload: &str,
        due_ms: u64,
    ) -> Result<Enqueued, StoreError> {
        let keys = &self.settings.keys;
        let event_key = keys.outbox_event(id);
        let ttl = millis(self.settings.outbox_ttl);
        self.write(|ks, now| {
            match ks.string(&event_key, now) {
                Some("") => return (Vec::new(), Enqueued::Delivered),
                Some(_) => return (Vec::new(), Enqueued::Pending),
                None => {}
            }
            let ops = vec![
                Op::Set {
                    key: event_key.clone(),
                    value: payload.to_owned(),
                    expires_at_ms: Some(now + ttl),
                },
                Op::ZAdd {
                    key: keys.outbox(),
                    member: id.to_owned(),
                    score: due_ms,
                },
            ];
            (ops, Enqueued::Queued)
        })
    }

    async fn claim_deliveries(
        &self,
        now_ms: u64,
        lease_ms: u64,
        max: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let keys = &self.settings.keys;
        let outbox = keys.outbox();
        self.write(|ks, now| {
            let mut due: Vec<(&String, u64)> = ks
                .sorted(&outbox, now)
                .into_iter()
                .flatten()
                .filter(|&(_, &score)| score <= now_ms)
                .map(|(member, &score)| (member, score))
                .collect();
            due.sort_by_key(|&(member, score)| (score, member.clone()));
            let mut ops = Vec::new();
            let mut claimed = Vec::new();
            for (id, _) in due.into_iter().take(max) {
                match ks.string(&keys.outbox_event(id), now) {
                    Some(payload) => {
                        ops.push(Op::ZAdd {
                            key: outbox.clone(),
                            member: id.clone(),
                            score: now_ms.saturating_add(lease_ms),
                        });
                        claimed.push(OutboxEntry {
                            id: id.clone(),
                            payload: payload.to_owned(),
                        });
                    }
                    // The delivery outlived its TTL: nothing left to send.
                    None => ops.push(Op::ZRem {
                        key: outbox.clone(),
                        member: id.clone(),
                    }),
                }
            }
            (ops, claimed)
        })
    }

    async fn reschedule_delivery(
        &self,
        id: &str,
        payload: &str,
        due_ms: u64,
    ) -> Result<(), StoreError> {
        let keys = &self.settings.keys;
        let event_key = keys.outbox_event(id);
        let ttl = millis(self.settings.outbox_ttl);
        self.write(|ks, now| {
            let expires = ks
                .ttl_ms(&event_key, now)
                .map_or(now + ttl, |left| now + left);
            let ops = vec![
                Op::Set {
                    key: event_key.clone(),
                    value: payload.to_owned(),
                    expires_at_ms: Some(expires),
                },
                Op::ZAdd {
                    key: keys.outbox(),
                    member: id.to_owned(),
                    score: due_ms,
                },
            ];
            (ops, ())
        })
    }

    async fn complete_delivery(&self, id: &str) -> Result<(), StoreError> {
        // As in Redis: the event's key stays, emptied, until its TTL, so
        // the same event queued again adds nothing.
        let keys = &self.settings.keys;
        let event_key = keys.outbox_event(id);
        self.write(|ks, now| {
            let mut ops = vec![Op::ZRem {
                key: keys.outbox(),
                member: id.to_owned(),
            }];
            if let Some(left) = ks.ttl_ms(&event_key, now) {
                ops.push(Op::Set {
                    key: event_key.clone(),
                    value: String::new(),
                    expires_at_ms: Some(now + left),
                });
            }
            (ops, ())
        })
    }

    async fn bury_delivery(&self, id: &str, payload: &str) -> Result<(), StoreError> {
        let dead = self.settings.keys.dead_letters();
        let ttl = millis(self.settings.outbox_ttl);
        self.write(|ks, now| {
            let mut ops = self.remove_delivery(id);
            let kept = ks.list(&dead, now);
            if kept.len() >= DEAD_LETTERS_MAX {
                // LTRIM, as a rewrite of the newest.
                let start = kept.len() + 1 - DEAD_LETTERS_MAX;
                let mut values = kept[start..].to_vec();
                values.push(payload.to_owned());
                ops.push(Op::Del { key: dead.clone() });
                ops.push(Op::Push {
                    key: dead.clone(),
                    values,
                });
            } else {
                ops.push(Op::Push {
                    key: dead.clone(),
                    values: vec![payload.to_owned()],
                });
            }
            ops.push(Op::ExpireAt {
                key: dead.clone(),
                at_ms: now + ttl,
            });
            (ops, ())
        })
    }

    async fn outbox_len(&self) -> Result<u64, StoreError> {
        let key = self.settings.keys.outbox();
        self.read(|ks, now| ks.sorted(&key, now).map_or(0, |m| m.len() as u64))
    }

    async fn dead_letters_len(&self) -> Result<u64, StoreError> {
        let key = self.settings.keys.dead_letters();
        self.read(|ks, now| ks.list(&key, now).len() as u64)
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<String>, StoreError> {
        let key = self.settings.keys.dead_letters();
        self.read(|ks, now| ks.list(&key, now).iter().take(max).cloned().collect())
    }

    async fn redrive_delivery(
        &self,
        buried: &str,
        id: &str,
        payload: &str,
        due_ms: u64,
    ) -> Result<bool, StoreError> {
        // As the Redis script: requeued only if the letter was there and
        // the event is neither queued nor delivered (its key, emptied).
        let keys = &self.settings.keys;
        let dead = keys.dead_letters();
        let event_key = keys.outbox_event(id);
        let ttl = millis(self.settings.outbox_ttl);
        self.write(|ks, now| {
            let mut ops = Vec::new();
            let kept = ks.list(&dead, now);
            let Some(at) = kept.iter().position(|p| p == buried) else {
                return (ops, false);
            };
            // LREM, as a rewrite of the rest (keeping its expiry).
            let rest: Vec<String> = kept
                .iter()
                .enumerate()
                .filter(|&(n, _)| n != at)
                .map(|(_, p)| p.clone())
                .collect();
            let expires = ks.ttl_ms(&dead, now).map(|left| now + left);
            ops.push(Op::Del { key: dead.clone() });
            if !rest.is_empty() {
                ops.push(Op::Push {
                    key: dead.clone(),
                    values: rest,
                });
                if let Some(at_ms) = expires {
                    ops.push(Op::ExpireAt {
                        key: dead.clone(),
                        at_ms,
                    });
                }
            }
            if ks.string(&event_key, now).is_some() {
                return (ops, false);
            }
            ops.push(Op::Set {
                key: event_key.clone(),
                value: payload.to_owned(),
                expires_at_ms: Some(now + ttl),
            });
            ops.push(Op::ZAdd {
                key: keys.outbox(),
                member: id.to_owned(),
                score: due_ms,
            });
            (ops, true)
        })
    }
}

impl MemoryStore {
    /// Takes a delivery out of the outbox.
    fn remove_delivery(&self, id: &str) -> Vec<Op> {
        let keys = &self.settings.keys;
        vec![
            Op::ZRem {
                key: keys.outbox(),
                member: id.to_owned(),
            },
            Op::Del {
                key: keys.outbox_event(id),
            },
        ]
    }
}
