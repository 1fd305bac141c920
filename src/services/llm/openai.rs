//! The OpenAI chat-completions wire format (OpenAI, vLLM, llama.cpp,
//! Ollama and other compatible servers): the request body, and each
//! streamed `data:` payload parsed into [`ChatDelta`]s. Pure functions.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::conversation::Message;
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
/// `context_length_exceeded`), its refused keys, models and permissions,
/// and llama.cpp's context overflow.
const REFUSING_KINDS: &[&str] = &[
    "invalid_request_error",
    "context_length_exceeded",
    "authentication_error",
    "invalid_api_key",
    "permission_error",
    "not_found_error",
    "model_not_found",
    "exceed_context_size_error",
];

/// Whether an in-stream `error` object refuses the request as it stands,
/// so that asking again the same way would be refused again. A numeric
/// code (OpenRouter and vLLM put the HTTP status there; a numeric string
/// counts too) decides: a 4xx other than 408, 409 and 429 refuses, others
/// pass. Without one, a `type` or `code` among [`REFUSING_KINDS`] refuses.
/// Anything else (`server_error`, overloaded, no object at all) is taken
/// as passing, and worth another try before any content.
fn refuses_the_request(error: &Value) -> bool {
    let status = ["code", "status"]
        .iter()
        .find_map(|field| match error.get(field)? {
            Value::Number(number) => number.as_u64(),
            Value::String(text) => text.parse::<u64>().ok(),
            _ => None,
        });
    if let Some(status) = status {
        return (400..500).contains(&status) && !matches!(status, 408 | 409 | 429);
    }
    ["type", "code"]
        .iter()
        .filter_map(|field| error.get(field).and_then(Value::as_str))
        .any(|kind| REFUSING_KINDS.contains(&kind))
}

/// Parses the `data` of one server-sent event.
///
/// An `error` object in the stream (how OpenAI reports a failure after the
/// response started) is [`ServiceError::Refused`] when it refuses the
/// request as it stands (see [`refuses_the_request`]: not worth asking
/// again), otherwise [`ServiceError::Remote`]; data that is not a chunk is
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
            .unwrap_or("the server reported an error")
            .to_owned();
        return Err(if refuses_the_request(&error) {
            ServiceError::Refused(message)
        } else {
            ServiceError::Remote(message)
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
