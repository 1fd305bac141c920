//! The Twilio Media Streams serializer: JSON text messages to typed values
//! and back, with no I/O.
//!
//! Twilio sends, in order: `connected`, `start` (once), then `media` every
//! 20 ms for as long as the call lasts (silence included), `dtmf` when the
//! caller presses a key, `mark` when audio we sent before a mark has played
//! (or was dropped by a `clear`), and `stop` when the stream ends. Counters
//! (`chunk`, `timestamp`) are decimal strings; numbers are accepted too.
//! Fields this module does not use (`sequenceNumber` among them) are
//! ignored, so that Twilio can add some.
//!
//! We send `media` (base64 mu-law, 8 kHz mono, no header), `mark` and
//! `clear`, each naming the `streamSid`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

/// The only audio format Twilio streams: G.711 mu-law.
pub const MULAW_ENCODING: &str = "audio/x-mulaw";
/// Twilio's sample rate.
pub const TWILIO_SAMPLE_RATE: u32 = 8_000;

/// A message from Twilio. Its text fields borrow from the message where
/// they can: `media` comes every 20 ms, and its stream SID is only
/// compared, never kept.
#[derive(Debug, Clone, PartialEq)]
pub enum InboundEvent<'a> {
    /// The WebSocket is open; the first message.
    Connected {
        /// `Call`.
        protocol: Option<Cow<'a, str>>,
        /// The protocol's version, e.g. `1.0.0`.
        version: Option<Cow<'a, str>>,
    },
    /// The stream starts; sent once.
    Start(StreamStart),
    /// 20 ms (usually) of the caller's audio.
    Media(Media<'a>),
    /// The caller pressed a key.
    Dtmf {
        /// The stream it belongs to.
        stream_sid: Option<Cow<'a, str>>,
        /// `0`-`9`, `*`, `#` or `A`-`D`.
        digit: char,
    },
    /// The audio we sent before the mark `name` has played, or was cleared.
    Mark {
        /// The stream it belongs to.
        stream_sid: Option<Cow<'a, str>>,
        /// The name we gave the mark.
        name: Cow<'a, str>,
    },
    /// The stream is over (the call ended or the stream was stopped).
    Stop {
        /// The stream it belongs to.
        stream_sid: Option<Cow<'a, str>>,
        /// The account, if given.
        account_sid: Option<Cow<'a, str>>,
        /// The call, if given.
        call_sid: Option<Cow<'a, str>>,
    },
}

impl InboundEvent<'_> {
    /// The event's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            InboundEvent::Connected { .. } => "connected",
            InboundEvent::Start(_) => "start",
            InboundEvent::Media(_) => "media",
            InboundEvent::Dtmf { .. } => "dtmf",
            InboundEvent::Mark { .. } => "mark",
            InboundEvent::Stop { .. } => "stop",
        }
    }
}

/// What a `start` message says about the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamStart {
    /// The stream's id (`MZ…`); every message we send names it.
    pub stream_sid: String,
    /// The account (`AC…`), needed to hang up through the REST API.
    pub account_sid: Option<String>,
    /// The call (`CA…`), needed to hang up through the REST API.
    pub call_sid: Option<String>,
    /// The tracks that will come: `inbound`, `outbound`.
    pub tracks: Vec<String>,
    /// The `<Parameter>`s of the TwiML `<Stream>`.
    pub custom_parameters: BTreeMap<String, String>,
    /// The audio format: always mu-law 8 kHz mono for Twilio.
    pub media_format: MediaFormat,
}

/// The audio format of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFormat {
    /// `audio/x-mulaw`.
    pub encoding: String,
    /// 8000.
    pub sample_rate: u32,
    /// 1.
    pub channels: u16,
}

impl Default for MediaFormat {
    fn default() -> Self {
        MediaFormat {
            encoding: MULAW_ENCODING.to_owned(),
            sample_rate: TWILIO_SAMPLE_RATE,
            channels: 1,
        }
    }
}

/// Which side of the call audio belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// The caller.
    Inbound,
    /// What the call plays (our audio, on streams that carry both tracks).
    Outbound,
}

/// One `media` message.
#[derive(Debug, Clone, PartialEq)]
pub struct Media<'a> {
    /// The stream it belongs to.
    pub stream_sid: Option<Cow<'a, str>>,
    /// Whose audio.
    pub track: Track,
    /// Chunk number, from 1.
    pub chunk: Option<u64>,
    /// Milliseconds since the stream started.
    pub timestamp: Option<Duration>,
    /// mu-law bytes, one per sample at 8 kHz.
    pub payload: Vec<u8>,
}

/// A message that could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Not JSON at all.
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    /// JSON, but not the shape of any Twilio message.
    #[error("not a Twilio message: {0}")]
    BadShape(serde_json::Error),
    /// An `event` Twilio does not send.
    #[error("unknown event `{0}`")]
    UnknownEvent(String),
    /// A field the event needs is missing.
    #[error("`{event}` message without `{field}`")]
    MissingField {
        /// The event.
        event: &'static str,
        /// The missing field, as a dotted path.
        field: &'static str,
    },
    /// A field has a value Twilio does not send.
    #[error("`{event}` message: `{field}` {reason}")]
    InvalidField {
        /// The event.
        event: &'static str,
        /// The field, as a dotted path.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The media payload is not base64.
    #[error("media payload is not base64: {0}")]
    BadBase64(base64::DecodeError),
    /// The stream's audio is not mu-law 8 kHz mono.
    #[error(
        "unsupported media format {encoding} at {sample_rate} Hz x{channels}; \
         expected audio/x-mulaw at 8000 Hz mono"
    )]
    UnsupportedFormat {
        /// The encoding given.
        encoding: String,
        /// The rate given.
        sample_rate: u32,
        /// The channels given.
        channels: u16,
    },
}

impl ProtocolError {
    /// A short stable label for metrics and logs, e.g. `bad_base64`.
    pub fn kind(&self) -> &'static str {
        match self {
            ProtocolError::NotJson(_) => "not_json",
            ProtocolError::BadShape(_) => "bad_shape",
            ProtocolError::UnknownEvent(_) => "unknown_event",
            ProtocolError::MissingField { .. } => "missing_field",
            ProtocolError::InvalidField { .. } => "invalid_field",
            ProtocolError::BadBase64(_) => "bad_base64",
            ProtocolError::UnsupportedFormat { .. } => "unsupported_format",
        }
    }
}

/// Reads one text message from Twilio, as the socket's bytes: JSON
/// parsing checks them, so the text is not copied or checked beforehand.
pub fn parse_inbound<T>(message: &T) -> Result<InboundEvent<'_>, ProtocolError>
where
    T: AsRef<[u8]> + ?Sized,
{
    let envelope: Envelope<'_> = serde_json::from_slice(message.as_ref()).map_err(|e| {
        if e.is_data() {
            ProtocolError::BadShape(e)
        } else {
            ProtocolError::NotJson(e)
        }
    })?;
    let stream_sid = envelope.stream_sid;
    match &*envelope.event {
        "connected" => Ok(InboundEvent::Connected {
            protocol: envelope.protocol,
            version: envelope.version,
        }),
        "start" => {
            start_of(envelope.start, stream_sid.map(Cow::into_owned)).map(InboundEvent::Start)
        }
        "media" => media_of(envelope.media, stream_sid).map(InboundEvent::Media),
        "dtmf" => {
            let body = envelope.dtmf.ok_or(ProtocolError::MissingField {
                event: "dtmf",
                field: "dtmf",
            })?;
            let digit = body.digit.ok_or(ProtocolError::MissingField {
                event: "dtmf",
                field: "dtmf.digit",
            })?;
            Ok(InboundEvent::Dtmf {
                stream_sid,
                digit: dtmf_digit(&digit)?,
            })
        }
        "mark" => {
            let name = envelope
                .mark
                .and_then(|m| m.name)
                .ok_or(ProtocolError::MissingField {
                    event: "mark",
                    field: "mark.name",
                })?;
            Ok(InboundEvent::Mark { stream_sid, name })
        }
        "stop" => {
            let stop = envelope.stop.unwrap_or_default();
            Ok(InboundEvent::Stop {
                stream_sid,
                account_sid: stop.account_sid,
                call_sid: stop.call_sid,
            })
        }
        other => Err(ProtocolError::UnknownEvent(truncated(other))),
    }
}

/// At most 64 characters of untrusted text, for messages and logs.
fn truncated(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn start_of(
    start: Option<StartBody<'_>>,
    top_level_sid: Option<String>,
) -> Result<StreamStart, ProtocolError> {
    let start = start.ok_or(ProtocolError::MissingField {
        event: "start",
        field: "start",
    })?;
    let stream_sid = start
        .stream_sid
        .map(Cow::into_owned)
        .or(top_level_sid)
        .ok_or(ProtocolError::MissingField {
            event: "start",
            field: "start.streamSid",
        })?;
    let media_format = match start.media_format {
        None => MediaFormat::default(),
        Some(format) => MediaFormat {
            encoding: format
                .encoding
                .map_or_else(|| MULAW_ENCODING.to_owned(), Cow::into_owned),
            sample_rate: narrow(
                format.sample_rate,
                TWILIO_SAMPLE_RATE,
                "mediaFormat.sampleRate",
            )?,
            channels: narrow(format.channels, 1, "mediaFormat.channels")?,
        },
    };
    if media_format.encoding != MULAW_ENCODING
        || media_format.sample_rate != TWILIO_SAMPLE_RATE
        || media_format.channels != 1
    {
        return Err(ProtocolError::UnsupportedFormat {
            encoding: truncated(&media_format.encoding),
            sample_rate: media_format.sample_rate,
            channels: media_format.channels,
        });
    }
    let custom_parameters = start
        .custom_parameters
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| {
            let value = match value {
                serde_json::Value::String(text) => text,
                other => other.to_string(),
            };
            (name, value)
        })
        .collect();
    Ok(StreamStart {
        stream_sid,
        account_sid: start.account_sid.map(Cow::into_owned),
        call_sid: start.call_sid.map(Cow::into_owned),
        tracks: start.tracks.unwrap_or_default(),
        custom_parameters,
        media_format,
    })
}

fn narrow<T: TryFrom<u64>>(
    value: Option<Counter>,
    default: T,
    field: &'static str,
) -> Result<T, ProtocolError> {
    match value {
        None => Ok(default),
        Some(Counter(n)) => T::try_from(n).map_err(|_| ProtocolError::InvalidField {
            event: "start",
            field,
            reason: format!("is out of range: {n}"),
        }),
    }
}

fn media_of<'a>(
    media: Option<MediaBody<'_>>,
    stream_sid: Option<Cow<'a, str>>,
) -> Result<Media<'a>, ProtocolError> {
    let media = media.ok_or(ProtocolError::MissingField {
        event: "media",
        field: "media",
    })?;
    let payload = media.payload.ok_or(ProtocolError::MissingField {
        event: "media",
        field: "media.payload",
    })?;
    let track = match media.track.as_deref() {
        None | Some("inbound" | "inbound_track") => Track::Inbound,
        Some("outbound" | "outbound_track") => Track::Outbound,
        Some(other) => {
            return Err(ProtocolError::InvalidField {
                event: "media",
                field: "media.track",
                reason: format!("is `{}`, not inbound or outbound", truncated(other)),
            });
        }
    };
    let payload = BASE64
        .decode(payload.as_bytes())
        .map_err(ProtocolError::BadBase64)?;
    Ok(Media {
        stream_sid,
        track,
        chunk: media.chunk.map(|c| c.0),
        timestamp: media.timestamp.map(|t| Duration::from_millis(t.0)),
        payload,
    })
}

fn dtmf_digit(digit: &str) -> Result<char, ProtocolError> {
    let mut chars = digit.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_digit() || matches!(c, '*' | '#') => Ok(c),
        (Some(c @ ('A'..='D' | 'a'..='d')), None) => Ok(c.to_ascii_uppercase()),
        _ => Err(ProtocolError::InvalidField {
            event: "dtmf",
            field: "dtmf.digit",
            reason: format!("is `{}`, not one key of 0-9, *, #, A-D", truncated(digit)),
        }),
    }
}

/// A decimal counter sent as a string (`"12"`), or as a number.
#[derive(Debug, Clone, Copy)]
struct Counter(u64);

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

/// Every field of every message, borrowed where it can be. One pass of
/// serde over the text, no intermediate `Value`: `media` is the hot path.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    stream_sid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    protocol: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    start: Option<StartBody<'a>>,
    #[serde(borrow, default)]
    media: Option<MediaBody<'a>>,
    #[serde(borrow, default)]
    dtmf: Option<DtmfBody<'a>>,
    #[serde(borrow, default)]
    mark: Option<MarkBody<'a>>,
    #[serde(borrow, default)]
    stop: Option<StopBody<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartBody<'a> {
    #[serde(borrow, default)]
    stream_sid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    account_sid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    call_sid: Option<Cow<'a, str>>,
    #[serde(default)]
    tracks: Option<Vec<String>>,
    #[serde(default)]
    custom_parameters: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(borrow, default)]
    media_format: Option<MediaFormatBody<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MediaFormatBody<'a> {
    #[serde(borrow, default)]
    encoding: Option<Cow<'a, str>>,
    #[serde(default)]
    sample_rate: Option<Counter>,
    #[serde(default)]
    channels: Option<Counter>,
}

#[derive(Deserialize)]
struct MediaBody<'a> {
    #[serde(borrow, default)]
    track: Option<Cow<'a, str>>,
    #[serde(default)]
    chunk: Option<Counter>,
    #[serde(default)]
    timestamp: Option<Counter>,
    #[serde(borrow, default)]
    payload: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct DtmfBody<'a> {
    #[serde(borrow, default)]
    digit: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct MarkBody<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct StopBody<'a> {
    #[serde(borrow, default)]
    account_sid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    call_sid: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Outbound<'a> {
    event: &'static str,
    stream_sid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    mark: Option<NameBody<'a>>,
}

#[derive(Serialize)]
struct NameBody<'a> {
    name: &'a str,
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    // Serializing strings and structs of strings into a String cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

/// The `media` messages of one stream, playing mu-law (8 kHz mono) on the
/// call. One goes out every 20 ms while the bot speaks, and all but the
/// payload is the same each time: that part is serialized once, and each
/// message is one allocation with the base64 written straight into it.
#[derive(Debug, Clone)]
pub struct MediaMessages {
    /// `{"event":"media","streamSid":"…","media":{"payload":"`
    prefix: String,
}

impl MediaMessages {
    /// What closes a message after its payload.
    const SUFFIX: &str = "\"}}";

    /// Messages for the stream `stream_sid`.
    pub fn new(stream_sid: &str) -> Self {
        let sid = to_json(stream_sid);
        MediaMessages {
            prefix: format!(r#"{{"event":"media","streamSid":{sid},"media":{{"payload":""#),
        }
    }

    /// The message playing `mulaw`.
    pub fn message(&self, mulaw: &[u8]) -> String {
        let payload = base64::encoded_len(mulaw.len(), true).unwrap_or_default();
        let mut json = String::with_capacity(self.prefix.len() + payload + Self::SUFFIX.len());
        json.push_str(&self.prefix);
        BASE64.encode_string(mulaw, &mut json);
        json.push_str(Self::SUFFIX);
        json
    }
}

/// A `mark` message: Twilio echoes it once the audio sent before it has
/// played.
pub fn mark_message(stream_sid: &str, name: &str) -> String {
    to_json(&Outbound {
        event: "mark",
        stream_sid,
        mark: Some(NameBody { name }),
    })
}

/// A `clear` message: Twilio drops the audio it has buffered and echoes the
/// marks still pending.
pub fn clear_message(stream_sid: &str) -> String {
    to_json(&Outbound {
        event: "clear",
        stream_sid,
        mark: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "MZ18ad3ab5a668481ce02b83e7395059f0";

    // Shapes as Twilio's "Media Streams - WebSocket Messages" page shows them.
    const CONNECTED: &str = r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#;
    const START: &str = r#"{
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": "ACd5a6a5c1b9f6a1e6f6bc2c7e4a1b8e3f",
            "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0",
            "callSid": "CA7c4b5e3e9a0e4c2b8f5d1a6e3c9b0a7f",
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {"FirstName": "Jane", "segment": "retail"}
        },
        "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0"
    }"#;
    const MEDIA: &str = r#"{
        "event": "media",
        "sequenceNumber": "3",
        "media": {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": "/38AAQ=="},
        "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0"
    }"#;
    const DTMF: &str = r#"{"event":"dtmf","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"1"}}"#;
    const MARK: &str = r#"{"event":"mark","sequenceNumber":"4","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","mark":{"name":"my label"}}"#;
    const STOP: &str = r#"{"event":"stop","sequenceNumber":"5","stop":{"accountSid":"ACd5a6a5c1b9f6a1e6f6bc2c7e4a1b8e3f","callSid":"CA7c4b5e3e9a0e4c2b8f5d1a6e3c9b0a7f"},"streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0"}"#;

    #[test]
    fn reads_every_event_twilio_sends() {
        assert_eq!(
            parse_inbound(CONNECTED).unwrap(),
            InboundEvent::Connected {
                protocol: Some("Call".into()),
                version: Some("1.0.0".into())
            }
        );
        let InboundEvent::Start(start) = parse_inbound(START).unwrap() else {
            panic!("not a start");
        };
        assert_eq!(start.stream_sid, SID);
        assert_eq!(
            start.call_sid.as_deref(),
            Some("CA7c4b5e3e9a0e4c2b8f5d1a6e3c9b0a7f")
        );
        assert_eq!(
            start.account_sid.as_deref(),
            Some("ACd5a6a5c1b9f6a1e6f6bc2c7e4a1b8e3f")
        );
        assert_eq!(start.tracks, ["inbound"]);
        assert_eq!(start.media_format, MediaFormat::default());
        assert_eq!(start.custom_parameters["segment"], "retail");
        assert_eq!(
            parse_inbound(MEDIA).unwrap(),
            InboundEvent::Media(Media {
                stream_sid: Some(SID.into()),
                track: Track::Inbound,
                chunk: Some(1),
                timestamp: Some(Duration::from_millis(5)),
                payload: vec![0xFF, 0x7F, 0x00, 0x01],
            })
        );
        assert_eq!(
            parse_inbound(DTMF).unwrap(),
            InboundEvent::Dtmf {
                stream_sid: Some(SID.into()),
                digit: '1'
            }
        );
        assert_eq!(
            parse_inbound(MARK).unwrap(),
            InboundEvent::Mark {
                stream_sid: Some(SID.into()),
                name: "my label".into()
            }
        );
        assert!(matches!(
            parse_inbound(STOP).unwrap(),
            InboundEvent::Stop { call_sid: Some(c), .. } if c.starts_with("CA7c")
        ));
    }

    #[test]
    fn counters_may_be_numbers_and_unknown_fields_are_ignored() {
        let text = r#"{"event":"media","sequenceNumber":3,"future":{"x":1},
            "media":{"track":"inbound","chunk":2,"timestamp":40,"payload":"","extra":true}}"#;
        let InboundEvent::Media(media) = parse_inbound(text).unwrap() else {
            panic!("not media");
        };
        assert_eq!(media.chunk, Some(2));
        assert_eq!(media.timestamp, Some(Duration::from_millis(40)));
        assert!(media.payload.is_empty());
    }

    #[test]
    fn bad_messages_get_errors_that_say_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            ("hello", "not_json"),
            ("", "not_json"),
            ("[1,2]", "bad_shape"),
            (r#"{"event":5}"#, "bad_shape"),
            (r#"{"no_event":true}"#, "bad_shape"),
            (r#"{"event":"dance"}"#, "unknown_event"),
            (r#"{"event":"media"}"#, "missing_field"),
            (
                r#"{"event":"media","media":{"track":"inbound"}}"#,
                "missing_field",
            ),
            (
                r#"{"event":"media","media":{"payload":"!!!not base64"}}"#,
                "bad_base64",
            ),
            (
                r#"{"event":"media","media":{"payload":"AA==","chunk":"x"}}"#,
                "bad_shape",
            ),
            (
                r#"{"event":"media","media":{"payload":"AA==","track":"sideways"}}"#,
                "invalid_field",
            ),
            (r#"{"event":"dtmf","dtmf":{"digit":"12"}}"#, "invalid_field"),
            (r#"{"event":"dtmf","dtmf":{}}"#, "missing_field"),
            (r#"{"event":"mark","mark":{}}"#, "missing_field"),
            (r#"{"event":"start","start":{}}"#, "missing_field"),
            (
                r#"{"event":"start","start":{"streamSid":"MZ1","mediaFormat":{"encoding":"audio/x-l16","sampleRate":16000,"channels":1}}}"#,
                "unsupported_format",
            ),
            (
                r#"{"event":"start","start":{"streamSid":"MZ1","mediaFormat":{"sampleRate":99999999999}}}"#,
                "invalid_field",
            ),
        ];
        for (text, kind) in cases {
            let err = parse_inbound(text).unwrap_err();
            assert_eq!(err.kind(), *kind, "{text}: {err}");
        }
        let err = parse_inbound(&format!(r#"{{"event":"{}"}}"#, "x".repeat(500))).unwrap_err();
        assert!(err.to_string().len() < 100, "{err}");
    }

    #[test]
    fn dtmf_keys_are_read_as_one_character() {
        for (digit, expected) in [("0", '0'), ("9", '9'), ("*", '*'), ("#", '#'), ("a", 'A')] {
            let text = format!(r#"{{"event":"dtmf","dtmf":{{"digit":"{digit}"}}}}"#);
            assert!(
                matches!(parse_inbound(&text).unwrap(), InboundEvent::Dtmf { digit, .. } if digit == expected)
            );
        }
    }

    #[test]
    fn builds_the_messages_twilio_accepts() {
        let media: serde_json::Value =
            serde_json::from_str(&MediaMessages::new(SID).message(&[0xFF, 0x7F, 0x00, 0x01]))
                .unwrap();
        assert_eq!(
            media,
            serde_json::json!({"event": "media", "streamSid": SID, "media": {"payload": "/38AAQ=="}})
        );
        let odd_sid: serde_json::Value =
            serde_json::from_str(&MediaMessages::new("a\"b\\").message(&[])).unwrap();
        assert_eq!(
            odd_sid,
            serde_json::json!({"event": "media", "streamSid": "a\"b\\", "media": {"payload": ""}})
        );
        let mark: serde_json::Value = serde_json::from_str(&mark_message(SID, "a\"b")).unwrap();
        assert_eq!(
            mark,
            serde_json::json!({"event": "mark", "streamSid": SID, "mark": {"name": "a\"b"}})
        );
        let clear: serde_json::Value = serde_json::from_str(&clear_message(SID)).unwrap();
        assert_eq!(
            clear,
            serde_json::json!({"event": "clear", "streamSid": SID})
        );
    }

    #[test]
    fn never_panics_on_mangled_messages() {
        // A small deterministic fuzzer: every fixture, cut and corrupted at
        // many places, must come back as a value or an error.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for fixture in [CONNECTED, START, MEDIA, DTMF, MARK, STOP] {
            let bytes = fixture.as_bytes();
            for _ in 0..2_000 {
                let mut mangled = bytes.to_vec();
                match next() % 3 {
                    0 => mangled.truncate((next() as usize) % bytes.len()),
                    1 => {
                        let at = (next() as usize) % mangled.len();
                        mangled[at] = (next() % 128) as u8;
                    }
                    _ => {
                        let at = (next() as usize) % mangled.len();
                        let piece = b"\"{}[],:0-\\u00";
                        mangled.insert(at, piece[(next() as usize) % piece.len()]);
                    }
                }
                if let Ok(text) = std::str::from_utf8(&mangled) {
                    let _result = parse_inbound(text);
                }
            }
        }
    }
}
