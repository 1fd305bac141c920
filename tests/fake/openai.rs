//! A fake OpenAI-compatible server: `/chat/completions` (SSE), `/audio/speech`
//! (streamed raw PCM), `/audio/transcriptions` (multipart), and a tool
//! endpoint, each answering from a script of replies.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

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
    /// `text/event-stream` made of these parts.
    Sse(Vec<Part>),
    /// `application/octet-stream` (raw PCM) made of these parts.
    Pcm(Vec<Part>),
    /// Plain text, status 200.
    Text(String),
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

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// The `authorization` header, if any.
    pub authorization: Option<String>,
    /// The `content-type` header, if any.
    pub content_type: Option<String>,
    /// The body.
    pub body: Vec<u8>,
    /// When it came (tokio's clock).
    pub at: Instant,
}

impl Received {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// The parts of a multipart body: (name, filename, content).
    pub fn multipart(&self) -> Vec<(String, Option<String>, Vec<u8>)> {
        let content_type = self.content_type.clone().unwrap();
        let boundary = content_type
            .split("boundary=")
            .nth(1)
            .unwrap()
            .trim_matches('"');
        let delimiter = format!("--{boundary}");
        let mut parts = Vec::new();
        let body = &self.body;
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
}

fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    (0..haystack.len().saturating_sub(needle.len() - 1))
        .filter(|&i| &haystack[i..i + needle.len()] == needle)
        .collect()
}

/// The server's script and records.
#[derive(Default)]
pub struct OpenAiState {
    chat: Mutex<VecDeque<Reply>>,
    speech: Mutex<VecDeque<Reply>>,
    transcription: Mutex<VecDeque<Reply>>,
    tool: Mutex<VecDeque<Reply>>,
    received: Mutex<Vec<Received>>,
    log: Mutex<Vec<String>>,
    /// When each streamed reply's first bytes were handed to the server.
    first_bytes: Mutex<Vec<(String, std::time::Instant)>>,
    speech_arrived: Notify,
}

/// A running fake server.
#[derive(Clone)]
pub struct FakeOpenAi {
    /// `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
    state: Arc<OpenAiState>,
}

impl FakeOpenAi {
    pub async fn start() -> FakeOpenAi {
        let state = Arc::new(OpenAiState::default());
        let router = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/audio/speech", post(speech))
            .route("/v1/audio/transcriptions", post(transcription))
            .route("/tools/{name}", post(tool))
            .with_state(Arc::clone(&state));
        let addr = super::serve(router).await;
        FakeOpenAi {
            base_url: format!("http://{addr}/v1"),
            state,
        }
    }

    /// The URL of the tool endpoint `name`.
    pub fn tool_url(&self, name: &str) -> String {
        format!("{}/tools/{name}", self.base_url.trim_end_matches("/v1"))
    }

    pub fn push_chat(&self, reply: Reply) {
        self.state.chat.lock().unwrap().push_back(reply);
    }

    pub fn push_speech(&self, reply: Reply) {
        self.state.speech.lock().unwrap().push_back(reply);
    }

    pub fn push_transcription(&self, reply: Reply) {
        self.state.transcription.lock().unwrap().push_back(reply);
    }

    pub fn push_tool(&self, reply: Reply) {
        self.state.tool.lock().unwrap().push_back(reply);
    }

    /// Every request received on a path containing `path` (e.g. `chat/completions`).
    pub fn received(&self, path: &str) -> Vec<Received> {
        self.state
            .received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path.contains(path))
            .cloned()
            .collect()
    }

    /// When the first bytes of each streamed reply of `who` (`speech`,
    /// `chat 1`, ...) went out.
    pub fn first_bytes(&self, who: &str) -> Vec<std::time::Instant> {
        self.state
            .first_bytes
            .lock()
            .unwrap()
            .iter()
            .filter(|(w, _)| w.starts_with(who))
            .map(|(_, at)| *at)
            .collect()
    }

    /// What the server did, in order.
    pub fn log(&self) -> Vec<String> {
        self.state.log.lock().unwrap().clone()
    }
}

fn record(state: &OpenAiState, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> usize {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut received = state.received.lock().unwrap();
    received.push(Received {
        path: uri.path().to_owned(),
        authorization: header("authorization"),
        content_type: header("content-type"),
        body: body.to_vec(),
        at: Instant::now(),
    });
    received.iter().filter(|r| r.path == uri.path()).count()
}

fn log(state: &OpenAiState, line: String) {
    state.log.lock().unwrap().push(line);
}

async fn chat(
    State(state): State<Arc<OpenAiState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let n = record(&state, &uri, &headers, &body);
    log(&state, format!("chat {n}: request"));
    let reply = state.chat.lock().unwrap().pop_front();
    let reply = reply.unwrap_or_else(|| Reply::Sse(text_answer("OK.")));
    respond(state, format!("chat {n}"), reply)
}

async fn speech(
    State(state): State<Arc<OpenAiState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&state, &uri, &headers, &body);
    let input = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["input"].as_str().map(str::to_owned))
        .unwrap_or_default();
    log(&state, format!("speech: {input}"));
    state.speech_arrived.notify_waiters();
    let reply = state.speech.lock().unwrap().pop_front();
    let reply = reply.unwrap_or_else(|| Reply::Pcm(vec![Part::Raw(super::tone_pcm(24_000, 0.5))]));
    respond(state, "speech".into(), reply)
}

async fn transcription(
    State(state): State<Arc<OpenAiState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&state, &uri, &headers, &body);
    log(&state, "transcription: request".into());
    let reply = state.transcription.lock().unwrap().pop_front();
    respond(
        state,
        "transcription".into(),
        reply.unwrap_or_else(|| Reply::Json(json!({"text": "Hello."}))),
    )
}

async fn tool(
    State(state): State<Arc<OpenAiState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&state, &uri, &headers, &body);
    log(
        &state,
        format!("tool {}: {}", uri.path(), String::from_utf8_lossy(&body)),
    );
    let reply = state.tool.lock().unwrap().pop_front();
    respond(
        state,
        "tool".into(),
        reply.unwrap_or_else(|| Reply::Json(json!({"ok": true}))),
    )
}

fn respond(state: Arc<OpenAiState>, who: String, reply: Reply) -> Response {
    match reply {
        Reply::Status {
            status,
            body,
            headers,
        } => {
            let mut response = Response::builder()
                .status(StatusCode::from_u16(status).unwrap())
                .header("content-type", "application/json");
            for (name, value) in headers {
                response = response.header(name, value);
            }
            response.body(Body::from(body)).unwrap()
        }
        Reply::Json(value) => Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(value.to_string()))
            .unwrap(),
        Reply::Text(text) => Response::builder()
            .header("content-type", "text/plain")
            .body(Body::from(text))
            .unwrap(),
        Reply::Sse(parts) => streamed("text/event-stream", parts, state, who),
        Reply::Pcm(parts) => streamed("application/octet-stream", parts, state, who),
    }
}

fn streamed(
    content_type: &str,
    parts: Vec<Part>,
    state: Arc<OpenAiState>,
    who: String,
) -> Response {
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    tokio::spawn(async move {
        for (i, part) in parts.into_iter().enumerate() {
            let bytes = match part {
                Part::Data(text) => format!("data: {text}\n\n").into_bytes(),
                Part::Raw(bytes) => bytes,
                Part::WaitForSpeech(n) => {
                    loop {
                        let arrived = state.speech_arrived.notified();
                        let count = state
                            .received
                            .lock()
                            .unwrap()
                            .iter()
                            .filter(|r| r.path.ends_with("audio/speech"))
                            .count();
                        if count >= n {
                            break;
                        }
                        arrived.await;
                    }
                    log(&state, format!("{who}: saw {n} speech request(s)"));
                    continue;
                }
                Part::WaitFor(signal, what) => {
                    signal.notified().await;
                    log(&state, format!("{who}: saw {what}"));
                    continue;
                }
                Part::Abort => {
                    log(&state, format!("{who}: abort"));
                    let _ = tx.send(Err(std::io::Error::other("dropped"))).await;
                    return;
                }
                Part::Stall => {
                    log(&state, format!("{who}: stall"));
                    std::future::pending::<()>().await;
                    return;
                }
            };
            log(&state, format!("{who}: part {i}"));
            if i == 0 {
                state
                    .first_bytes
                    .lock()
                    .unwrap()
                    .push((who.clone(), std::time::Instant::now()));
            }
            if tx.send(Ok(Bytes::from(bytes))).await.is_err() {
                return;
            }
        }
        log(&state, format!("{who}: end"));
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Response::builder()
        .header("content-type", content_type)
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// A chunk carrying `text` in the chat-completions stream shape.
pub fn text_chunk(text: &str) -> String {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "fake",
           "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
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
