//! The OpenAI chat-completions wire format (OpenAI, vLLM, llama.cpp,
//! Ollama and other compatible servers): the request body, and each
//! streamed `data:` payload parsed into [`ChatDelta`]s. Pure functions.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::conversation::Message;
use crate::services::error::{refuses_credentials, refuses_request, shorten};
use crate::services::{ApiKey, ServiceError};

use super::wire::{ChatDelta, ChatRequest, ChatWire, ToolChoice};

/// The JSON body of a streaming chat-completions request.
pub fn request_body(request: &ChatRequest<'_>, messages: &[Message]) -> Value {
    let mut body = json!({
        "model": request.model,
        "messages": messages,
        "stream": true,
    });
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|spec| {
                json!({
                    "type": "function",
                    "function": {
                        "name": spec.name,
                        "description": spec.description,
                        "parameters": spec.parameters,
                    }
                })
            })
            .collect();
        body["tools"] = Value::Array(tools);
        body["tool_choice"] = json!(match request.tool_choice {
            ToolChoice::Auto => "auto",
            ToolChoice::None => "none",
        });
    }
    if let Some(temperature) = request.temperature {
        body["temperature"] = json!(temperature);
    }
    if let Some(max_tokens) = request.max_tokens {
        body["max_tokens"] = json!(max_tokens);
    }
    if let Some(format) = request.response_format {
        body["response_format"] = format.clone();
    }
    body
}

/// A field that may be missing or `null` (servers built on pydantic send
/// `"tool_calls": null`), read as its default.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default, deserialize_with = "null_as_default")]
    choices: Vec<Choice>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    tool_calls: Vec<ToolCallDelta>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// The kinds (`type` or `code`) of an in-stream error that refuse the
/// request itself: OpenAI's `invalid_request_error` (and its
/// `context_length_exceeded`), its missing models, and llama.cpp's context
/// overflow.
const REFUSING_KINDS: &[&str] = &[
    "invalid_request_error",
    "context_length_exceeded",
    "not_found_error",
    "model_not_found",
    "exceed_context_size_error",
];

/// The kinds of an in-stream error that refuse the credentials (as HTTP
/// 401 and 403 do): a refused key or permission.
const CREDENTIAL_KINDS: &[&str] = &[
    "authentication_error",
    "invalid_api_key",
    "permission_error",
];

/// The longest provider message kept from an in-stream error (as from an
/// HTTP error body): it is logged and sent in the error event.
const MAX_MESSAGE_CHARS: usize = 300;

/// What an in-stream `error` object says of the request.
#[derive(Debug, PartialEq, Eq)]
enum StreamRefusal {
    /// The credentials are refused: no later request will fare better.
    Credentials,
    /// The request as it stands is refused: asking again the same way
    /// would be refused again.
    Request,
    /// Neither: worth another try before any content.
    Passing,
}

/// What an in-stream `error` object says. A numeric code (OpenRouter and
/// vLLM put the HTTP status there; a numeric string counts too) decides,
/// by the same rule as an HTTP status (`refuses_credentials`,
/// `refuses_request`). Without one, a `type` or `code` among
/// [`CREDENTIAL_KINDS`] or [`REFUSING_KINDS`] refuses. Anything else
/// (`server_error`, overloaded, no object at all) is taken as passing.
fn stream_refusal(error: &Value) -> StreamRefusal {
    let status = ["code", "status"]
        .iter()
        .find_map(|field| match error.get(field)? {
            Value::Number(number) => number.as_u64(),
            Value::String(text) => text.parse::<u64>().ok(),
            _ => None,
        });
    if let Some(status) = status {
        let status = u16::try_from(status).unwrap_or(u16::MAX);
        return if refuses_credentials(status) {
            StreamRefusal::Credentials
        } else if refuses_request(status) {
            StreamRefusal::Request
        } else {
            StreamRefusal::Passing
        };
    }
    let kinds: Vec<&str> = ["type", "code"]
        .iter()
        .filter_map(|field| error.get(field).and_then(Value::as_str))
        .collect();
    if kinds.iter().any(|kind| CREDENTIAL_KINDS.contains(kind)) {
        StreamRefusal::Credentials
    } else if kinds.iter().any(|kind| REFUSING_KINDS.contains(kind)) {
        StreamRefusal::Request
    } else {
        StreamRefusal::Passing
    }
}

/// Parses the `data` of one server-sent event.
///
/// An `error` object in the stream (how OpenAI reports a failure after the
/// response started) is [`ServiceError::CredentialsRefused`] when it
/// refuses the credentials (the session ends, as on HTTP 401 and 403),
/// [`ServiceError::Refused`] when it refuses the request as it stands
/// (see [`stream_refusal`]: not worth asking again), otherwise
/// [`ServiceError::Remote`]; its message is cut to
/// [`MAX_MESSAGE_CHARS`]. Data that is not a chunk is
/// [`ServiceError::Protocol`].
pub fn parse_event_data(data: &str) -> Result<Vec<ChatDelta>, ServiceError> {
    let data = data.trim();
    if data == "[DONE]" {
        return Ok(vec![ChatDelta::Done]);
    }
    let chunk: Chunk = serde_json::from_str(data).map_err(|e| {
        let shown: String = data.chars().take(120).collect();
        ServiceError::Protocol(format!("not a chat-completion chunk ({e}): {shown}"))
    })?;
    if let Some(error) = chunk.error {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .or_else(|| error.as_str())
            .unwrap_or("the server reported an error");
        let message = shorten(message, MAX_MESSAGE_CHARS);
        return Err(match stream_refusal(&error) {
            StreamRefusal::Credentials => ServiceError::CredentialsRefused(message),
            StreamRefusal::Request => ServiceError::Refused(message),
            StreamRefusal::Passing => ServiceError::Remote(message),
        });
    }
    let mut deltas = Vec::new();
    // Only the first choice is asked for (n = 1).
    let Some(choice) = chunk.choices.into_iter().next() else {
        return Ok(deltas); // e.g. a usage-only chunk
    };
    if let Some(delta) = choice.delta {
        if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
            deltas.push(ChatDelta::Text(text));
        }
        for call in delta.tool_calls {
            let (name, arguments) = match call.function {
                Some(f) => (f.name, f.arguments),
                None => (None, None),
            };
            deltas.push(ChatDelta::ToolCall {
                // Servers that send whole calls sometimes omit the index.
                index: call.index,
                id: call.id.filter(|id| !id.is_empty()),
                name: name.filter(|n| !n.is_empty()),
                arguments: arguments.filter(|a| !a.is_empty()),
            });
        }
    }
    if let Some(reason) = choice.finish_reason {
        deltas.push(ChatDelta::Finish(reason));
    }
    Ok(deltas)
}

/// The chat-completions wire of an OpenAI-compatible server.
#[derive(Debug)]
pub(crate) struct OpenAiChat {
    url: String,
    api_key: Option<ApiKey>,
}

impl OpenAiChat {
    /// The endpoint under `base_url` (e.g. `https://api.openai.com/v1`).
    pub(crate) fn new(base_url: &str, api_key: Option<ApiKey>) -> Self {
        OpenAiChat {
            url: format!("{}/chat/completions", base_url.trim_end_matches('/')),
            api_key,
        }
    }
}

impl ChatWire for OpenAiChat {
    fn provider(&self) -> &'static str {
        "openai"
    }

    fn request(
        &self,
        client: &reqwest::Client,
        request: &ChatRequest<'_>,
        messages: &[Message],
    ) -> reqwest::RequestBuilder {
        let builder = client
            .post(&self.url)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&request_body(request, messages));
        match &self.api_key {
            Some(key) => builder.bearer_auth(key.expose()),
            None => builder,
        }
    }

    fn parse(&self, data: &str) -> Result<Vec<ChatDelta>, ServiceError> {
        parse_event_data(data)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tools::ToolSpec;
    use super::*;
    use crate::conversation::Role;

    #[test]
    fn text_tool_fragments_finish_and_done_are_parsed() {
        let text = r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]}"#;
        assert_eq!(
            parse_event_data(text).unwrap(),
            [ChatDelta::Text("Hel".into())]
        );
        let first = r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}"#;
        assert_eq!(
            parse_event_data(first).unwrap(),
            [ChatDelta::ToolCall {
                index: Some(0),
                id: Some("call_1".into()),
                name: Some("get_weather".into()),
                arguments: None
            }]
        );
        let piece = r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"ci"}}]},"finish_reason":null}]}"#;
        assert_eq!(
            parse_event_data(piece).unwrap(),
            [ChatDelta::ToolCall {
                index: Some(1),
                id: None,
                name: None,
                arguments: Some("{\"ci".into())
            }]
        );
        let finish = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#;
        assert_eq!(
            parse_event_data(finish).unwrap(),
            [ChatDelta::Finish("tool_calls".into())]
        );
        assert_eq!(parse_event_data(" [DONE] ").unwrap(), [ChatDelta::Done]);
        let usage = r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2}}"#;
        assert!(parse_event_data(usage).unwrap().is_empty());
    }

    #[test]
    fn null_fields_as_pydantic_servers_send_them_are_empty() {
        // sglang and other servers built on pydantic write every field,
        // `null` when unset; before, each such chunk was malformed.
        let text = r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi","tool_calls":null},"finish_reason":null}]}"#;
        assert_eq!(
            parse_event_data(text).unwrap(),
            [ChatDelta::Text("Hi".into())]
        );
        let usage = r#"{"choices":null,"usage":{"prompt_tokens":9}}"#;
        assert!(parse_event_data(usage).unwrap().is_empty());
        let whole = r#"{"choices":[{"delta":{"content":null,"tool_calls":[{"id":"a","function":{"name":"f","arguments":"{}"}}]}}]}"#;
        assert_eq!(
            parse_event_data(whole).unwrap(),
            [ChatDelta::ToolCall {
                index: None,
                id: Some("a".into()),
                name: Some("f".into()),
                arguments: Some("{}".into())
            }]
        );
    }

    #[test]
    fn errors_in_the_stream_and_malformed_data_are_errors() {
        let error = r#"{"error":{"message":"The server had an error while processing your request.","type":"server_error"}}"#;
        assert!(matches!(
            parse_event_data(error),
            Err(ServiceError::Remote(m)) if m.starts_with("The server had an error")
        ));
        assert!(matches!(
            parse_event_data("{not json"),
            Err(ServiceError::Protocol(_))
        ));
        assert!(matches!(
            parse_event_data("[1,2]"),
            Err(ServiceError::Protocol(_))
        ));
    }

    #[test]
    fn in_stream_errors_that_refuse_the_request_are_refusals() {
        let refusals = [
            r#"{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
            r#"{"error":{"message":"Bad value","type":"invalid_request_error","param":null,"code":null}}"#,
            r#"{"error":{"message":"Too long","code":"context_length_exceeded"}}"#,
            r#"{"error":{"message":"No credit left","code":402}}"#,
            r#"{"error":{"object":"error","message":"Bad request","type":"BadRequestError","code":"400"}}"#,
            r#"{"error":{"message":"Too long","type":"exceed_context_size_error","n_ctx":4096}}"#,
        ];
        for data in refusals {
            assert!(
                matches!(parse_event_data(data), Err(ServiceError::Refused(_))),
                "{data}"
            );
        }
        let passing = [
            r#"{"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}"#,
            r#"{"error":{"message":"Overloaded","type":"overloaded_error"}}"#,
            r#"{"error":{"message":"Busy","code":"server_is_overloaded"}}"#,
            r#"{"error":{"message":"Slow down","type":"invalid_request_error","code":429}}"#,
            r#"{"error":{"message":"Timed out","code":408}}"#,
            r#"{"error":{"message":"Conflict","code":409}}"#,
            r#"{"error":{"message":"Upstream down","code":502}}"#,
            r#"{"error":"something broke"}"#,
        ];
        for data in passing {
            assert!(
                matches!(parse_event_data(data), Err(ServiceError::Remote(_))),
                "{data}"
            );
        }
        assert!(matches!(
            parse_event_data(refusals[0]),
            Err(ServiceError::Refused(m)) if m.starts_with("This model's maximum context length")
        ));
    }

    #[test]
    fn in_stream_credential_refusals_are_told_apart() {
        let refused = [
            r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#,
            r#"{"error":{"message":"Invalid x-api-key","type":"authentication_error"}}"#,
            r#"{"error":{"message":"Not allowed","type":"permission_error"}}"#,
            r#"{"error":{"message":"No auth credentials found","code":401}}"#,
            r#"{"error":{"message":"Forbidden","code":"403"}}"#,
        ];
        for data in refused {
            assert!(
                matches!(
                    parse_event_data(data),
                    Err(ServiceError::CredentialsRefused(_))
                ),
                "{data}"
            );
        }
    }

    #[test]
    fn a_long_in_stream_error_message_is_cut() {
        let long = "x".repeat(5_000);
        for kind in ["server_error", "invalid_request_error", "invalid_api_key"] {
            let data = json!({"error": {"message": long, "type": kind}}).to_string();
            let error = parse_event_data(&data).unwrap_err();
            let shown = error.to_string();
            assert_eq!(shown.chars().count(), MAX_MESSAGE_CHARS + 1, "{kind}");
            assert!(shown.ends_with('…'), "{kind}");
        }
    }

    #[test]
    fn the_request_asks_for_a_stream_with_tools_in_the_function_shape() {
        let tools = [ToolSpec {
            name: "end_call".into(),
            description: "Hang up.".into(),
            parameters: json!({"type": "object", "properties": {}}),
        }];
        let request = ChatRequest {
            model: "gpt-4o-mini",
            temperature: Some(0.5),
            max_tokens: None,
            tools: &tools,
            tool_choice: ToolChoice::None,
            response_format: None,
        };
        let body = request_body(&request, &[Message::text(Role::User, "bye")]);
        assert_eq!(body["stream"], json!(true));
        assert_eq!(body["model"], json!("gpt-4o-mini"));
        assert_eq!(
            body["messages"][0],
            json!({"role": "user", "content": "bye"})
        );
        assert_eq!(body["tools"][0]["type"], json!("function"));
        assert_eq!(body["tools"][0]["function"]["name"], json!("end_call"));
        assert_eq!(body["tool_choice"], json!("none"));
        assert_eq!(body["temperature"], json!(0.5));
        assert!(body.get("max_tokens").is_none());
        let bare = ChatRequest {
            tools: &[],
            ..request
        };
        assert!(request_body(&bare, &[]).get("tool_choice").is_none());
        let format = json!({"type": "json_object"});
        let formatted = ChatRequest {
            response_format: Some(&format),
            ..bare
        };
        assert_eq!(request_body(&formatted, &[])["response_format"], format);
    }
}
