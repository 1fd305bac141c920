//! JSON encoding of stored values, shared by both backends.

use super::error::StoreError;
use crate::store::{CallRecord, Interaction, TestCase};

pub(crate) fn encode(key: &str, value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Encode {
        key: key.to_owned(),
        source,
    })
}

pub(crate) fn decode_call(key: &str, json: &str) -> Result<CallRecord, StoreError> {
    serde_json::from_str(json).map_err(|err| StoreError::corrupt(key, err))
}

/// The calls among `(key, json)` pairs, in order; one that cannot be read
/// is skipped with a warning rather than hiding the others.
pub(crate) fn decode_calls<'a>(
    found: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> Vec<CallRecord> {
    found
        .into_iter()
        .filter_map(|(key, json)| match decode_call(key, json?) {
            Ok(record) => Some(record),
            Err(error) => {
                tracing::warn!(%error, "a call that cannot be read is left out");
                None
            }
        })
        .collect()
}

/// When `record` was created, in Unix ms: its `created_at`, or `now_ms`
/// when another program wrote something else there.
pub(crate) fn created_ms(record: &CallRecord, now_ms: u64) -> u64 {
    super::time::parse_rfc3339(&record.created_at).unwrap_or(now_ms)
}

/// The turns among `items`; an item that is not a turn (another program's
/// entry, a hand edit) is skipped with a warning rather than hiding the rest
/// of the transcript.
pub(crate) fn decode_turns(key: &str, items: &[String]) -> Vec<Interaction> {
    items
        .iter()
        .enumerate()
        .filter_map(|(position, item)| match serde_json::from_str(item) {
            Ok(turn) => Some(turn),
            Err(err) => {
                tracing::warn!(key, position, error = %err, "skipping a transcript item that is not a turn");
                None
            }
        })
        .collect()
}

/// The test cases among `items`; one that is not a test case is skipped
/// with a warning.
pub(crate) fn decode_test_cases(key: &str, items: &[String]) -> Vec<TestCase> {
    decode_list(key, items, "test case")
}

/// The `T`s among the JSON `items` of the list at `key`; an item that is
/// not one (another program's entry, a hand edit) is skipped with a
/// warning naming `what` it should be.
pub(crate) fn decode_list<T: serde::de::DeserializeOwned>(
    key: &str,
    items: &[String],
    what: &str,
) -> Vec<T> {
    items
        .iter()
        .enumerate()
        .filter_map(|(position, item)| match serde_json::from_str(item) {
            Ok(value) => Some(value),
            Err(err) => {
                tracing::warn!(key, position, error = %err, "skipping a list item that is not a {what}");
                None
            }
        })
        .collect()
}
