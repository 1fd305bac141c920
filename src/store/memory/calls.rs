//! Calls and transcripts in the embedded store.

use async_trait::async_trait;

use super::keyspace::Op;
use super::store::MemoryStore;
use crate::store::codec::{created_ms, decode_call, decode_calls, decode_turns, encode};
use crate::store::settings::millis;
use crate::store::{Appended, CallStore, StoreError};
use crate::store::{CallChange, CallRecord, Interaction};

#[async_trait]
impl CallStore for MemoryStore {
    async fn create_call(&self, record: &CallRecord) -> Result<bool, StoreError> {
        let key = self.settings.keys.call(&record.call_id);
        let json = encode(&key, record)?;
        let ttl = millis(self.settings.call_ttl);
        let index = self.settings.keys.calls_by_created();
        self.write(|ks, now| {
            if ks.string(&key, now).is_some() {
                return (Vec::new(), false);
            }
            let set = Op::Set {
                key: key.clone(),
                value: json,
                expires_at_ms: Some(now + ttl),
            };
            let mut ops = vec![set];
            // The time index, as in Redis: this call in it (kept if already
            // there), the calls whose records have expired out of it.
            let indexed = ks.sorted(&index, now);
            let cutoff = now.saturating_sub(ttl);
            let created = created_ms(record, now);
            let unlisted = indexed.is_none_or(|members| !members.contains_key(&record.call_id));
            if unlisted && created >= cutoff {
                ops.push(Op::ZAdd {
                    key: index.clone(),
                    member: record.call_id.clone(),
                    score: created,
                });
            }
            ops.extend(
                indexed
                    .into_iter()
                    .flatten()
                    .filter(|(_, at)| **at < cutoff)
                    .map(|(member, _)| Op::ZRem {
                        key: index.clone(),
                        member: member.clone(),
                    }),
            );
            (ops, true)
        })
    }

    async fn calls_between(
        &self,
        from_ms: u64,
        to_ms: u64,
        limit: usize,
    ) -> Result<Vec<CallRecord>, StoreError> {
        let index = self.settings.keys.calls_by_created();
        let found = self.read(|ks, now| {
            // The embedded store's sorted set is kept by member: its
            // members are read (the index, never the keyspace).
            let mut ids: Vec<(u64, &String)> = ks
                .sorted(&index, now)
                .into_iter()
                .flatten()
                .filter(|(_, at)| (from_ms..=to_ms).contains(*at))
                .map(|(id, at)| (*at, id))
                .collect();
            ids.sort();
            ids.truncate(limit);
            ids.into_iter()
                .map(|(_, id)| {
                    let key = self.settings.keys.call(id);
                    let json = ks.string(&key, now).map(str::to_owned);
                    (key, json)
                })
                .collect::<Vec<_>>()
        })?;
        Ok(decode_calls(
            found
                .iter()
                .map(|(key, json)| (key.as_str(), json.as_deref())),
        ))
    }

    async fn call(&self, call_id: &str) -> Result<Option<CallRecord>, StoreError> {
        let key = self.settings.keys.call(call_id);
        let json = self.read(|ks, now| ks.string(&key, now).map(str::to_owned))?;
        json.map(|json| decode_call(&key, &json)).transpose()
    }

    async fn change_call(
        &self,
        call_id: &str,
        change: &CallChange,
    ) -> Result<Option<(CallRecord, bool)>, StoreError> {
        let key = self.settings.keys.call(call_id);
        let ttl = millis(self.settings.call_ttl);
        self.write(|ks, now| {
            let Some(json) = ks.string(&key, now) else {
                return (Vec::new(), Ok(None));
            };
            let updated = decode_call(&key, json).and_then(|mut record| {
                let json = if record.apply(change, now) {
                    Some(encode(&key, &record)?)
                } else {
                    None
                };
                Ok((record, json))
            });
            match updated {
                Ok((record, Some(json))) => {
                    let set = Op::Set {
                        key: key.clone(),
                        value: json,
                        expires_at_ms: Some(now + ttl),
                    };
                    (vec![set], Ok(Some((record, true))))
                }
                Ok((record, None)) => (Vec::new(), Ok(Some((record, false)))),
                Err(err) => (Vec::new(), Err(err)),
            }
        })?
    }

    async fn append_turn(&self, call_id: &str, turn: &Interaction) -> Result<Appended, StoreError> {
        let key = self.settings.keys.interactions(call_id);
        let json = encode(&key, turn)?;
        let ttl = millis(self.settings.call_ttl);
        self.write(|ks, now| {
            let stored = ks.list(&key, now).len() as u64;
            let appended = match stored.cmp(&turn.index) {
                std::cmp::Ordering::Greater => {
                    return (Vec::new(), Appended::AlreadyStored { stored });
                }
                std::cmp::Ordering::Equal => Appended::Added,
                std::cmp::Ordering::Less => Appended::AddedAfterGap { stored },
            };
            let ops = vec![
                Op::Push {
                    key: key.clone(),
                    values: vec![json],
                },
                Op::ExpireAt {
                    key: key.clone(),
                    at_ms: now + ttl,
                },
            ];
            (ops, appended)
        })
    }

    async fn turns(&self, call_id: &str) -> Result<Vec<Interaction>, StoreError> {
        let key = self.settings.keys.interactions(call_id);
        let items = self.read(|ks, now| ks.list(&key, now).to_vec())?;
        Ok(decode_turns(&key, &items))
    }
}
