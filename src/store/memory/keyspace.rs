//! The embedded store's data: a small keyspace with Redis's types and key
//! names, changed only by [`Op`]s so that the same ops can be logged to a
//! file and replayed.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

/// A value, by Redis type.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    Str(String),
    List(Vec<String>),
    Hash(BTreeMap<String, Vec<u8>>),
    /// A sorted set: member → score.
    Sorted(BTreeMap<String, u64>),
    /// A stream: sequence number → payload; `last` never decreases.
    Stream {
        entries: BTreeMap<u64, String>,
        last: u64,
    },
}

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    value: Value,
    expires_at_ms: Option<u64>,
}

/// Bytes, written as base64 in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Blob(pub(super) Vec<u8>);

impl Serialize for Blob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        BASE64
            .decode(text)
            .map(Blob)
            .map_err(serde::de::Error::custom)
    }
}

/// One change to the keyspace. Applying an op to a key of another type
/// replaces the key (the store never does that to its own keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum Op {
    /// SET with an optional absolute expiry.
    Set {
        key: String,
        value: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at_ms: Option<u64>,
    },
    /// RPUSH.
    Push { key: String, values: Vec<String> },
    /// DEL.
    Del { key: String },
    /// PEXPIREAT.
    ExpireAt { key: String, at_ms: u64 },
    /// HSET.
    HSet {
        key: String,
        fields: BTreeMap<String, Blob>,
    },
    /// HDEL.
    HDel { key: String, fields: Vec<String> },
    /// ZADD.
    ZAdd {
        key: String,
        member: String,
        score: u64,
    },
    /// ZREM.
    ZRem { key: String, member: String },
    /// XADD with an explicit sequence number.
    XAdd {
        key: String,
        seq: u64,
        payload: String,
    },
    /// XDEL.
    XDel { key: String, seq: u64 },
}

/// Keys and values, with lazy expiry against a passed-in clock.
#[derive(Debug, Default)]
pub(super) struct Keyspace {
    entries: HashMap<String, Entry>,
}

impl Keyspace {
    /// The live value at `key` at `now_ms`.
    pub(super) fn get(&self, key: &str, now_ms: u64) -> Option<&Value> {
        self.entries
            .get(key)
            .filter(|e| e.expires_at_ms.is_none_or(|at| at > now_ms))
            .map(|e| &e.value)
    }

    /// Milliseconds left before `key` expires; `None` if it has no TTL or
    /// does not exist.
    pub(super) fn ttl_ms(&self, key: &str, now_ms: u64) -> Option<u64> {
        self.get(key, now_ms)?;
        self.entries[key].expires_at_ms.map(|at| at - now_ms)
    }

    pub(super) fn string(&self, key: &str, now_ms: u64) -> Option<&str> {
        match self.get(key, now_ms) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    pub(super) fn list(&self, key: &str, now_ms: u64) -> &[String] {
        match self.get(key, now_ms) {
            Some(Value::List(items)) => items,
            _ => &[],
        }
    }

    pub(super) fn hash(&self, key: &str, now_ms: u64) -> Option<&BTreeMap<String, Vec<u8>>> {
        match self.get(key, now_ms) {
            Some(Value::Hash(fields)) => Some(fields),
            _ => None,
        }
    }

    pub(super) fn sorted(&self, key: &str, now_ms: u64) -> Option<&BTreeMap<String, u64>> {
        match self.get(key, now_ms) {
            Some(Value::Sorted(members)) => Some(members),
            _ => None,
        }
    }

    /// The stream's entries and its last sequence number.
    pub(super) fn stream(&self, key: &str, now_ms: u64) -> (Option<&BTreeMap<u64, String>>, u64) {
        match self.get(key, now_ms) {
            Some(Value::Stream { entries, last }) => (Some(entries), *last),
            _ => (None, 0),
        }
    }

    /// Live keys starting with `prefix`.
    pub(super) fn keys_with_prefix<'a>(
        &'a self,
        prefix: &'a str,
        now_ms: u64,
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |(k, e)| {
                k.starts_with(prefix) && e.expires_at_ms.is_none_or(|at| at > now_ms)
            })
            .map(|(k, _)| k.as_str())
    }

    /// Drops every key expired at `now_ms` (expiry is otherwise lazy, and a
    /// long-running server never reads most old calls again).
    pub(super) fn purge_expired(&mut self, now_ms: u64) {
        self.entries
            .retain(|_, e| e.expires_at_ms.is_none_or(|at| at > now_ms));
    }

    /// Applies `op`; `now_ms` decides whether an existing key has expired.
    pub(super) fn apply(&mut self, op: Op, now_ms: u64) {
        if let Some(key) = op.key()
            && self
                .entries
                .get(key)
                .is_some_and(|e| e.expires_at_ms.is_some_and(|at| at <= now_ms))
        {
            self.entries.remove(key);
        }
        match op {
            Op::Set {
                key,
                value,
                expires_at_ms,
            } => {
                self.entries.insert(
                    key,
                    Entry {
                        value: Value::Str(value),
                        expires_at_ms,
                    },
                );
            }
            Op::Push { key, values } => match self.value_mut(key, || Value::List(Vec::new())) {
                Value::List(items) => items.extend(values),
                other => *other = Value::List(values),
            },
            Op::Del { key } => {
                self.entries.remove(&key);
            }
            Op::ExpireAt { key, at_ms } => {
                if let Some(entry) = self.entries.get_mut(&key) {
                    entry.expires_at_ms = Some(at_ms);
                }
            }
            Op::HSet { key, fields } => {
                let fields = fields.into_iter().map(|(k, v)| (k, v.0));
                match self.value_mut(key, || Value::Hash(BTreeMap::new())) {
                    Value::Hash(map) => map.extend(fields),
                    other => *other = Value::Hash(fields.collect()),
                }
            }
            Op::HDel { key, fields } => {
                if let Some(Entry {
                    value: Value::Hash(map),
                    ..
                }) = self.entries.get_mut(&key)
                {
                    for field in &fields {
                        map.remove(field);
                    }
                    if map.is_empty() {
                        self.entries.remove(&key);
                    }
                }
            }
            Op::ZAdd { key, member, score } => {
                match self.value_mut(key, || Value::Sorted(BTreeMap::new())) {
                    Value::Sorted(members) => {
                        members.insert(member, score);
                    }
                    other => *other = Value::Sorted(BTreeMap::from([(member, score)])),
                }
            }
            Op::ZRem { key, member } => {
                if let Some(Entry {
                    value: Value::Sorted(members),
                    ..
                }) = self.entries.get_mut(&key)
                {
                    members.remove(&member);
                    if members.is_empty() {
                        self.entries.remove(&key);
                    }
                }
            }
            Op::XAdd { key, seq, payload } => {
                let empty = || Value::Stream {
                    entries: BTreeMap::new(),
                    last: 0,
                };
                match self.value_mut(key, empty) {
                    Value::Stream { entries, last } => {
                        entries.insert(seq, payload);
                        *last = (*last).max(seq);
                    }
                    other => {
                        *other = Value::Stream {
                            entries: BTreeMap::from([(seq, payload)]),
                            last: seq,
                        }
                    }
                }
            }
            Op::XDel { key, seq } => {
                if let Some(Entry {
                    value: Value::Stream { entries, .. },
                    ..
                }) = self.entries.get_mut(&key)
                {
                    entries.remove(&seq);
                }
            }
        }
    }

    fn value_mut(&mut self, key: String, empty: impl FnOnce() -> Value) -> &mut Value {
        &mut self
            .entries
            .entry(key)
            .or_insert_with(|| Entry {
                value: empty(),
                expires_at_ms: None,
            })
            .value
    }
}

impl Op {
    fn key(&self) -> Option<&str> {
        match self {
            Op::Set { key, .. }
            | Op::Push { key, .. }
            | Op::Del { key }
            | Op::ExpireAt { key, .. }
            | Op::HSet { key, .. }
            | Op::HDel { key, .. }
            | Op::ZAdd { key, .. }
            | Op::ZRem { key, .. }
            | Op::XAdd { key, .. }
            | Op::XDel { key, .. } => Some(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_expire_lazily_and_ops_round_trip_through_json() {
        let mut ks = Keyspace::default();
        let ops = [
            Op::Push {
                key: "l".into(),
                values: vec!["a".into()],
            },
            Op::ExpireAt {
                key: "l".into(),
                at_ms: 100,
            },
            Op::HSet {
                key: "h".into(),
                fields: BTreeMap::from([("v".to_owned(), Blob(vec![0, 255, 7]))]),
            },
        ];
        for op in ops {
            let line = serde_json::to_string(&op).unwrap();
            let back: Op = serde_json::from_str(&line).unwrap();
            assert_eq!(back, op);
            ks.apply(back, 0);
        }
        assert_eq!(ks.list("l", 99), ["a"]);
        assert_eq!(ks.ttl_ms("l", 40), Some(60));
        assert!(ks.list("l", 100).is_empty());
        // A push after expiry starts a fresh list without the old TTL.
        ks.apply(
            Op::Push {
                key: "l".into(),
                values: vec!["b".into()],
            },
            150,
        );
        assert_eq!(ks.list("l", 10_000), ["b"]);
        ks.apply(
            Op::ExpireAt {
                key: "l".into(),
                at_ms: 200,
            },
            150,
        );
        ks.purge_expired(200);
        assert!(!ks.entries.contains_key("l"));
        assert!(ks.entries.contains_key("h"));
        assert_eq!(ks.hash("h", 0).unwrap()["v"], [0, 255, 7]);
    }

    #[test]
    fn hdel_removes_fields_and_the_emptied_hash() {
        let mut ks = Keyspace::default();
        let fields = ["a", "b"].map(|f| (f.to_owned(), Blob(vec![1])));
        ks.apply(
            Op::HSet {
                key: "h".into(),
                fields: BTreeMap::from(fields),
            },
            0,
        );
        let hdel = |fields: &[&str]| Op::HDel {
            key: "h".into(),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        };
        let line = serde_json::to_string(&hdel(&["a"])).unwrap();
        assert_eq!(line, r#"{"op":"h_del","key":"h","fields":["a"]}"#);
        ks.apply(serde_json::from_str(&line).unwrap(), 0);
        assert!(!ks.hash("h", 0).unwrap().contains_key("a"));
        ks.apply(hdel(&["b", "c"]), 0);
        assert!(!ks.entries.contains_key("h"));
    }
}
