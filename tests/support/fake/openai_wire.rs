//! The OpenAI API shapes the fake server speaks and parses: the script of
//! a reply ([`Reply`], [`Part`]), streamed chat-completion chunks (text,
//! tool-call fragments, the finish), a non-streamed completion, error
//! bodies, bag-of-words embeddings, and the multipart body of a
//! transcription request.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::Notify;

/// One piece of a streamed body.
#[derive(Debug, Clone)]
pub enum Part {
    /// `data: {text}` and a blank line.
    Data(String),
    /// Bytes as they are.
    Raw(Vec<u8>),
    /// Wait until the server has received `n` speech requests.
    WaitForSpeech(usize),
    /// Wait until the test says so (`notify_one`).
    WaitFor(Arc<Notify>, &'static str),
    /// Wait this long, as a model thinking or generating would.
    Pause(std::time::Duration),
    /// Fail the body: the connection drops mid-response.
    Abort,
    /// Send nothing more, and never end.
    Stall,
}

/// How the server answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// An error status with a body and extra headers.
    Status {
        status: u16,
        body: String,
        headers: Vec<(&'static str, String)>,
    },
    /// A JSON body.
    Json(Value),
    /// A whole (not streamed) chat completion whose message says this, for
    /// the model the request named.
    Completion(String),
    /// `text/event-stream` made of these parts.
    Sse(Vec<Part>),
    /// `application/octet-stream` (raw PCM) made of these parts.
    Pcm(Vec<Part>),
    /// Plain text, status 200.
    Text(String),
    /// Never answer: the request hangs until the client gives up.
    Hang,
    /// This reply, after a wait: a provider's latency.
    Delayed(std::time::Duration, Box<Reply>),
}

impl Reply {
    /// OpenAI's error body for `status`.
    pub fn error(status: u16, message: &str, kind: &str) -> Reply {
        Reply::Status {
            status,
            body: json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
                .to_string(),
            headers: Vec::new(),
        }
    }
}

/// OpenAI's 400 to a reasoning model (o-series, gpt-5) asked at a
/// temperature other than its default, `temperature` as the request sent it.
pub fn unsupported_temperature(temperature: &Value) -> Reply {
    let message = format!(
        "Unsupported value: 'temperature' does not support {temperature} with this model. \
         Only the default (1) value is supported."
    );
    Reply::Status {
        status: 400,
        body: json!({"error": {"message": message, "type": "invalid_request_error",
                               "param": "temperature", "code": "unsupported_value"}})
        .to_string(),
        headers: Vec::new(),
    }
}

/// A verdict as the judge (a non-streamed chat completion) answers it.
pub fn verdict(outcome: &str, score: f64, tactics: &[&str]) -> Reply {
    Reply::Completion(
        json!({"outcome": outcome, "score": score, "tactics": tactics, "reason": "as scripted"})
            .to_string(),
    )
}

/// The body of a whole chat completion saying `content`, for `model`.
pub fn completion_body(model: &Value, content: &str) -> Value {
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}
    })
}

/// A chunk carrying `text` in the chat-completions stream shape.
pub fn text_chunk(text: &str) -> String {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "fake",
           "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
    .to_string()
}

/// The first chunk OpenAI-compatible servers send: the role, and no
/// content yet (an empty string, as OpenAI sends it).
pub fn role_chunk() -> String {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "fake",
           "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]})
    .to_string()
}

/// A chunk carrying a fragment of tool call `index`.
pub fn tool_chunk(index: u32, id: Option<&str>, name: Option<&str>, arguments: &str) -> String {
    let mut call = json!({"index": index, "function": {"arguments": arguments}});
    if let Some(id) = id {
        call["id"] = json!(id);
        call["type"] = json!("function");
    }
    if let Some(name) = name {
        call["function"]["name"] = json!(name);
    }
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "fake",
           "choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": null}]})
    .to_string()
}

/// A whole tool call in one chunk, as Ollama's OpenAI-compatible stream
/// sends it: with the role and an empty content, an id of the call's own,
/// and `index` (which Ollama gives as 0 to every call of a response).
pub fn ollama_tool_chunk(index: u32, id: &str, name: &str, arguments: &str) -> String {
    json!({"id": "chatcmpl-838", "object": "chat.completion.chunk", "created": 1,
           "model": "qwen2.5:7b", "system_fingerprint": "fp_ollama",
           "choices": [{"index": 0, "delta": {"role": "assistant", "content": "", "tool_calls": [
               {"id": id, "index": index, "type": "function",
                "function": {"name": name, "arguments": arguments}}]},
               "finish_reason": null}]})
    .to_string()
}

/// The last chunk of a choice.
pub fn finish_chunk(reason: &str) -> String {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "fake",
           "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
    .to_string()
}

/// A whole streamed answer of `text`, a word per chunk.
pub fn text_answer(text: &str) -> Vec<Part> {
    let mut parts: Vec<Part> = text
        .split_inclusive(' ')
        .map(|word| Part::Data(text_chunk(word)))
        .collect();
    parts.push(Part::Data(finish_chunk("stop")));
    parts.push(Part::Data("[DONE]".into()));
    parts
}

/// Dimensions of the fake embeddings.
pub const DIMS: usize = 64;

/// Bag of words: each lower-cased word adds 1 to a hashed component, so
/// texts sharing words are close.
pub fn embed(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; DIMS];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let hash = word.to_lowercase().bytes().fold(2166136261u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(16777619)
        });
        v[hash as usize % DIMS] += 1.0;
    }
    v
}

/// The embeddings response for `request`, or `None` if its `input` is
/// neither a string nor strings. The vectors come in reverse order:
/// clients must place them by `index`.
pub fn embeddings_body(request: &Value) -> Option<Value> {
    let inputs: Vec<String> = match &request["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().unwrap_or_default().to_owned())
            .collect(),
        _ => return None,
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .rev()
        .map(|(index, text)| json!({"object": "embedding", "index": index, "embedding": embed(text)}))
        .collect();
    Some(json!({
        "object": "list",
        "data": data,
        "model": request["model"],
        "usage": {"prompt_tokens": 5, "total_tokens": 5}
    }))
}

/// The parts of a multipart body: (name, filename, content).
pub fn multipart(content_type: &str, body: &[u8]) -> Vec<(String, Option<String>, Vec<u8>)> {
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .unwrap()
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let positions: Vec<usize> = find_all(body, delimiter.as_bytes());
    for pair in positions.windows(2) {
        let section = &body[pair[0] + delimiter.len()..pair[1]];
        let section = section.strip_prefix(b"\r\n").unwrap_or(section);
        let split = find_all(section, b"\r\n\r\n")[0];
        let headers = String::from_utf8_lossy(&section[..split]).to_string();
        let content = section[split + 4..]
            .strip_suffix(b"\r\n")
            .unwrap_or(&section[split + 4..]);
        let field = |key: &str| {
            headers
                .split(';')
                .find_map(|h| h.trim().strip_prefix(&format!("{key}=\"")))
                .map(|v| {
                    v.trim_end_matches(|c: char| c == '"' || c.is_whitespace())
                        .split('"')
                        .next()
                        .unwrap()
                        .to_owned()
                })
        };
        parts.push((field("name").unwrap(), field("filename"), content.to_vec()));
    }
    parts
}

fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    (0..haystack.len().saturating_sub(needle.len() - 1))
        .filter(|&i| &haystack[i..i + needle.len()] == needle)
        .collect()
}
