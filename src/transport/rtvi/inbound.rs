//! Messages from an RTVI client, read from JSON.
//!
//! Every message is `{"label": "rtvi-ai", "type", "id", "data"}`. A
//! message that cannot be used is a [`Rejected`]: it carries the message's
//! id when there is one, so the client's pending request (if any) gets its
//! `error-response`.

use serde::Deserialize;
use serde_json::Value;

/// The label every RTVI message carries.
pub const LABEL: &str = "rtvi-ai";

/// The most DTMF keys one message may carry.
const MAX_DTMF_KEYS: usize = 32;

/// What an RTVI client asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum RtviRequest {
    /// `client-ready`: the client speaks protocol `version`.
    ClientReady {
        /// The client's protocol version, e.g. `2.1.0`; `None` when it
        /// gave none, or one that cannot be read (not dot-separated
        /// numbers): such a client is taken to speak the current protocol,
        /// as Pipecat takes it.
        version: Option<String>,
        /// The client's library, e.g. `@pipecat-ai/client-js`.
        library: Option<String>,
    },
    /// `send-text`: the user typed this.
    SendText {
        /// The text, as sent.
        content: String,
    },
    /// `client-message`: a request of the app's own type, answered with
    /// `server-response` or `error-response`.
    ClientMessage {
        /// The app's type (`t`).
        kind: String,
        /// Its data (`d`), `null` when none.
        data: Value,
    },
    /// `disconnect-bot`: end the session.
    DisconnectBot,
    /// `dtmf`: keypad keys, in order (`buttons`, or protocol 2.0's single
    /// `button`).
    Dtmf(Vec<char>),
    /// `llm-function-call-result`: the result of a tool the client ran.
    FunctionCallResult {
        /// The tool call it answers.
        tool_call_id: String,
        /// The tool's name.
        function_name: String,
        /// The result: an object or a string.
        result: Value,
    },
}

/// One RTVI message from the client.
#[derive(Debug, Clone, PartialEq)]
pub struct RtviInbound {
    /// The message id (answers carry it back).
    pub id: Option<String>,
    /// What it asks.
    pub request: RtviRequest,
}

/// A message that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct Rejected {
    /// The message id, when it had one.
    pub id: Option<String>,
    /// Why, for the client and the log.
    pub error: String,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    data: Value,
}

#[derive(Deserialize)]
struct SendTextData {
    content: String,
}

#[derive(Deserialize)]
struct ClientMessageData {
    t: String,
    #[serde(default)]
    d: Value,
}

#[derive(Deserialize)]
struct DtmfData {
    #[serde(default)]
    buttons: Option<Vec<String>>,
    #[serde(default)]
    button: Option<String>,
}

#[derive(Deserialize)]
struct FunctionCallResultData {
    tool_call_id: String,
    function_name: String,
    result: Value,
}

/// Whether a JSON message is an RTVI one (its `label` is `rtvi-ai`).
pub fn is_rtvi(value: &Value) -> bool {
    value.get("label").and_then(Value::as_str) == Some(LABEL)
}

/// Reads one RTVI message (already known to be one: see [`is_rtvi`]).
///
/// # Errors
/// A message without a `type`, of a type voxpipe does not serve, or whose
/// `data` lacks what its type needs.
pub fn parse_rtvi(value: &Value) -> Result<RtviInbound, Rejected> {
    let id = value.get("id").and_then(Value::as_str).map(str::to_owned);
    let envelope = Envelope::deserialize(value).map_err(|e| Rejected {
        id: id.clone(),
        error: format!("malformed RTVI message: {e}"),
    })?;
    let reject = |error: String| Rejected {
        id: envelope.id.clone(),
        error,
    };
    let data = |what: &str, e: serde_json::Error| reject(format!("`{what}` data: {e}"));
    let request = match envelope.kind.as_str() {
        // Read leniently: a client whose version cannot be read still
        // gets its `bot-ready`, as Pipecat's processor gives it.
        "client-ready" => {
            let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
            let version = text(envelope.data.get("version")).filter(|v| readable_version(v));
            let about = envelope.data.get("about");
            RtviRequest::ClientReady {
                version,
                library: text(about.and_then(|a| a.get("library"))),
            }
        }
        "send-text" => {
            let text =
                SendTextData::deserialize(&envelope.data).map_err(|e| data("send-text", e))?;
            RtviRequest::SendText {
                content: text.content,
            }
        }
        "client-message" => {
            let message = ClientMessageData::deserialize(&envelope.data)
                .map_err(|e| data("client-message", e))?;
            RtviRequest::ClientMessage {
                kind: message.t,
                data: message.d,
            }
        }
        "disconnect-bot" => RtviRequest::DisconnectBot,
        "dtmf" => {
            let dtmf = DtmfData::deserialize(&envelope.data).map_err(|e| data("dtmf", e))?;
            let keys: Vec<String> = dtmf
                .buttons
                .or(dtmf.button.map(|b| vec![b]))
                .unwrap_or_default();
            RtviRequest::Dtmf(dtmf_keys(&keys).map_err(reject)?)
        }
        "llm-function-call-result" => {
            let result = FunctionCallResultData::deserialize(&envelope.data)
                .map_err(|e| data("llm-function-call-result", e))?;
            RtviRequest::FunctionCallResult {
                tool_call_id: result.tool_call_id,
                function_name: result.function_name,
                result: result.result,
            }
        }
        other => return Err(reject(format!("unsupported RTVI message type `{other}`"))),
    };
    Ok(RtviInbound {
        id: envelope.id,
        request,
    })
}

/// Whether `version` reads as a protocol version: dot-separated numbers,
/// the first of them the major version.
fn readable_version(version: &str) -> bool {
    version
        .split('.')
        .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

/// The keys of a `dtmf` message: each one of `0`-`9`, `*`, `#`.
fn dtmf_keys(buttons: &[String]) -> Result<Vec<char>, String> {
    if buttons.is_empty() || buttons.len() > MAX_DTMF_KEYS {
        return Err(format!(
            "`dtmf` needs 1 to {MAX_DTMF_KEYS} buttons, not {}",
            buttons.len()
        ));
    }
    buttons
        .iter()
        .map(|button| {
            let mut chars = button.chars();
            match (chars.next(), chars.next()) {
                (Some(key @ ('0'..='9' | '*' | '#')), None) => Ok(key),
                _ => Err(format!("`{button}` is not a DTMF key")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<RtviInbound, Rejected> {
        let value: Value = serde_json::from_str(s).unwrap();
        assert!(is_rtvi(&value));
        parse_rtvi(&value)
    }

    /// The messages `@pipecat-ai/client-js` 1.13.1 sent in the browser
    /// test's two scenarios (`tests/pipecat_client.rs`), one JSON object a
    /// line.
    const CAPTURED: [&str; 2] = [
        include_str!("../../../tests/fixtures/rtvi/call.jsonl"),
        include_str!("../../../tests/fixtures/rtvi/agent.jsonl"),
    ];

    fn lines() -> impl Iterator<Item = &'static str> {
        CAPTURED.iter().flat_map(|file| file.lines())
    }

    fn captured(kind: &str) -> Value {
        lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|v| v["type"] == kind)
            .unwrap_or_else(|| panic!("no captured `{kind}` message"))
    }

    #[test]
    fn captured_client_messages_are_understood() {
        let ready = parse_rtvi(&captured("client-ready")).unwrap();
        assert!(matches!(
            &ready.request,
            RtviRequest::ClientReady { version: Some(version), library: Some(library) }
                if version == "2.1.0" && library == "@pipecat-ai/client-js"
        ));
        assert!(ready.id.is_some());
        assert_eq!(
            parse_rtvi(&captured("send-text")).unwrap().request,
            RtviRequest::SendText {
                content: "hello from the page".into()
            }
        );
        let request = parse_rtvi(&captured("client-message")).unwrap();
        assert!(
            matches!(request.request, RtviRequest::ClientMessage { ref kind, .. } if kind == "session-info")
        );
        assert_eq!(
            parse_rtvi(&captured("dtmf")).unwrap().request,
            RtviRequest::Dtmf(vec!['1', '2', '#'])
        );
        assert_eq!(
            parse_rtvi(&captured("disconnect-bot")).unwrap().request,
            RtviRequest::DisconnectBot
        );
        assert_eq!(
            parse_rtvi(&captured("llm-function-call-result"))
                .unwrap()
                .request,
            RtviRequest::FunctionCallResult {
                tool_call_id: "call_loc".into(),
                function_name: "get_location".into(),
                result: serde_json::json!({"city": "Oslo"}),
            }
        );
    }

    #[test]
    fn every_captured_rtvi_message_parses() {
        for line in lines() {
            let value: Value = serde_json::from_str(line).unwrap();
            assert!(is_rtvi(&value), "{line}");
            assert!(parse_rtvi(&value).is_ok(), "{line}");
        }
    }

    #[test]
    fn legacy_dtmf_and_function_results() {
        assert_eq!(
            parse(r#"{"label":"rtvi-ai","type":"dtmf","id":"a","data":{"button":"*"}}"#)
                .unwrap()
                .request,
            RtviRequest::Dtmf(vec!['*'])
        );
        let result = parse(
            r#"{"label":"rtvi-ai","type":"llm-function-call-result","id":"b","data":{"function_name":"get_location","tool_call_id":"call_1","arguments":{},"result":{"city":"Oslo"}}}"#,
        )
        .unwrap();
        assert!(matches!(
            result.request,
            RtviRequest::FunctionCallResult { ref tool_call_id, .. } if tool_call_id == "call_1"
        ));
    }

    #[test]
    fn a_client_ready_without_a_readable_version_is_still_ready() {
        let ready = |data: &str| {
            let json =
                format!(r#"{{"label":"rtvi-ai","type":"client-ready","id":"r","data":{data}}}"#);
            parse(&json).map(|inbound| inbound.request)
        };
        let unread = |library: Option<&str>| {
            Ok(RtviRequest::ClientReady {
                version: None,
                library: library.map(str::to_owned),
            })
        };
        assert_eq!(ready("{}"), unread(None));
        assert_eq!(ready("null"), unread(None));
        assert_eq!(ready(r#"{"version":2}"#), unread(None));
        assert_eq!(ready(r#"{"version":"next"}"#), unread(None));
        assert_eq!(ready(r#"{"version":"2..0"}"#), unread(None));
        assert_eq!(
            ready(r#"{"version":"v2","about":{"library":"mine"}}"#),
            unread(Some("mine"))
        );
        let no_data = parse(r#"{"label":"rtvi-ai","type":"client-ready","id":"r"}"#);
        assert_eq!(no_data.map(|m| m.request), unread(None));
        assert_eq!(
            ready(r#"{"version":"1.0","about":"?"}"#),
            Ok(RtviRequest::ClientReady {
                version: Some("1.0".into()),
                library: None
            })
        );
    }

    #[test]
    fn bad_messages_are_rejected_with_their_id() {
        let unknown = parse(r#"{"label":"rtvi-ai","type":"dance","id":"x1","data":{}}"#);
        assert_eq!(
            unknown,
            Err(Rejected {
                id: Some("x1".into()),
                error: "unsupported RTVI message type `dance`".into()
            })
        );
        let no_content = parse(r#"{"label":"rtvi-ai","type":"send-text","id":"x2","data":{}}"#);
        assert_eq!(no_content.unwrap_err().id.as_deref(), Some("x2"));
        let bad_key =
            parse(r#"{"label":"rtvi-ai","type":"dtmf","id":"x3","data":{"buttons":["1","x"]}}"#);
        assert!(bad_key.unwrap_err().error.contains("not a DTMF key"));
        let no_type = parse(r#"{"label":"rtvi-ai","id":"x4"}"#).unwrap_err();
        assert_eq!(no_type.id.as_deref(), Some("x4"));
        let many = format!(
            r#"{{"label":"rtvi-ai","type":"dtmf","id":"x5","data":{{"buttons":[{}]}}}}"#,
            vec!["\"1\""; 33].join(",")
        );
        assert!(parse(&many).is_err());
    }
}
