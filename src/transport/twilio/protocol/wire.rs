//! The JSON shapes of Twilio's messages as serde reads them: every field of
//! every message, borrowed from the text where it can be, each optional so
//! that `parse` can say which one is missing.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::error::truncated;

/// A decimal counter sent as a string (`"12"`), or as a number.
#[derive(Debug, Clone, Copy)]
pub(super) struct Counter(pub(super) u64);

impl<'de> Deserialize<'de> for Counter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl de::Visitor<'_> for Visit {
            type Value = Counter;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number, or one written as a string")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Counter, E> {
                Ok(Counter(n))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Counter, E> {
                text.trim()
                    .parse()
                    .map(Counter)
                    .map_err(|_| E::custom(format!("`{}` is not a counter", truncated(text))))
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

/// An optional string borrowed from the text when it has no escapes:
/// serde's `borrow` borrows a `Cow` field only when the field is one, and
/// inside an `Option` it copies (an allocation per field per message).
fn borrowed<'de: 'a, 'a, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Text<'a>>::deserialize(deserializer)?.map(|text| text.0))
}

/// Every field of every message, borrowed where it can be. One pass of
/// serde over the text, no intermediate `Value`: `media` is the hot path.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Envelope<'a> {
    #[serde(borrow)]
    pub(super) event: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub(super) stream_sid: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub(super) protocol: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub(super) version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) start: Option<StartBody<'a>>,
    #[serde(borrow, default)]
    pub(super) media: Option<MediaBody<'a>>,
    #[serde(borrow, default)]
    pub(super) dtmf: Option<DtmfBody<'a>>,
    #[serde(borrow, default)]
    pub(super) mark: Option<MarkBody<'a>>,
    #[serde(borrow, default)]
    pub(super) stop: Option<StopBody<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StartBody<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub(super) stream_sid: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub(super) account_sid: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub(super) call_sid: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) tracks: Option<Vec<String>>,
    #[serde(default)]
    pub(super) custom_parameters: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(borrow, default)]
    pub(super) media_format: Option<MediaFormatBody<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct MediaFormatBody<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub(super) encoding: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) sample_rate: Option<Counter>,
    #[serde(default)]
    pub(super) channels: Option<Counter>,
}

#[derive(Deserialize)]
pub(super) struct MediaBody<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub(super) track: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) chunk: Option<Counter>,
    #[serde(default)]
    pub(super) timestamp: Option<Counter>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub(super) payload: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub(super) struct DtmfBody<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub(super) digit: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub(super) struct MarkBody<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub(super) name: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct StopBody<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub(super) account_sid: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub(super) call_sid: Option<Cow<'a, str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_media_message_is_read_without_copying_its_strings() {
        let text = br#"{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"2","timestamp":"5","payload":"//8A"},"streamSid":"MZ1"}"#;
        let envelope: Envelope<'_> = serde_json::from_slice(text).unwrap();
        assert!(matches!(envelope.event, Cow::Borrowed("media")));
        assert!(matches!(envelope.stream_sid, Some(Cow::Borrowed("MZ1"))));
        let media = envelope.media.unwrap();
        assert!(matches!(media.track, Some(Cow::Borrowed("inbound"))));
        assert!(matches!(media.payload, Some(Cow::Borrowed("//8A"))));
    }
}
