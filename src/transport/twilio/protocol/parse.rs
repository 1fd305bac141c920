//! One message from Twilio: its JSON shape read in one pass, then checked
//! and turned into a typed value.

use std::borrow::Cow;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::error::{ProtocolError, truncated};
use super::inbound::{
    InboundEvent, MULAW_ENCODING, Media, MediaFormat, StreamStart, TWILIO_SAMPLE_RATE, Track,
};
use super::wire::{Counter, Envelope, MediaBody, StartBody};

/// Reads one text message from Twilio. A WebSocket text message is UTF-8,
/// checked once by the WebSocket layer, so the JSON parser reads it as
/// text and does not check each string again (reading bytes, it did: 2.5%
/// of a Twilio parrot session's instructions, callgrind).
pub fn parse_inbound(message: &str) -> Result<InboundEvent<'_>, ProtocolError> {
    let envelope: Envelope<'_> = serde_json::from_str(message).map_err(|e| {
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
