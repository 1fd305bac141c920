//! The messages we send Twilio: `media` (base64 mu-law, 8 kHz mono, no
//! header), `mark` and `clear`, each naming the `streamSid`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;

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
}
