//! A fake OpenAI-compatible server: `/v1/chat/completions` (streamed SSE or
//! a whole completion), `/v1/embeddings` (bag-of-words vectors),
//! `/v1/audio/speech` (streamed raw PCM), `/v1/audio/transcriptions`
//! (multipart in, JSON out), and tool endpoints at `/tools/{name}`; each
//! answers from a script of replies, and every request is recorded and
//! announced, so a test can wait for one. Told to, chat completions refuse
//! a `json_schema` response format with 400, as OpenAI-compatible servers
//! without structured outputs do, and a temperature other than 1 with
//! OpenAI's 400 for reasoning models (`"param": "temperature"`, `"code":
//! "unsupported_value"`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

#[allow(unused_imports)] // the script types, re-exported; each test uses a few
pub use super::openai_wire::{
    DIMS, Part, Reply, embed, finish_chunk, ollama_tool_chunk, role_chunk, text_answer, text_chunk,
    tool_chunk, verdict,
};
use super::openai_wire::{completion_body, embeddings_body, multipart, unsupported_temperature};
use crate::support::{net, signal, wait};

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
        multipart(self.content_type.as_deref().unwrap(), &self.body)
    }
}

/// Decides a transcription reply when its request arrives.
pub type Transcriber = Arc<dyn Fn() -> Reply + Send + Sync>;

/// The server's script and records.
#[derive(Default)]
struct OpenAiState {
    chat: Mutex<VecDeque<Reply>>,
    /// The chat reply once the script is used up (default: "OK." streamed).
    chat_fallback: Mutex<Option<Reply>>,
    /// Scripts per model, ahead of the shared one (for several roles on
    /// one server, asked in an order the test does not fix).
    model_chat: Mutex<HashMap<String, VecDeque<Reply>>>,
    /// The reply to a model once its script is used up.
    model_fallback: Mutex<HashMap<String, Reply>>,
    speech: Mutex<VecDeque<Reply>>,
    transcription: Mutex<VecDeque<Reply>>,
    /// The transcription reply once the script is used up, decided when
    /// the request arrives (default: "Hello.").
    transcriber: Mutex<Option<Transcriber>>,
    tool: Mutex<VecDeque<Reply>>,
    received: Mutex<Vec<Received>>,
    /// Answer 400 to chat requests asking for a `json_schema` format.
    refuse_json_schema: AtomicBool,
    /// Answer 400 to chat requests with a temperature other than 1 or
    /// `max_tokens`, as a reasoning model.
    refuse_temperature: AtomicBool,
    /// Answer 503 to embeddings requests (an embedder that is down).
    embeddings_down: AtomicBool,
    /// Answer 400 to embeddings requests (an embedder that refuses them
    /// for good, e.g. an unknown model).
    embeddings_refused: AtomicBool,
    /// Fired on each request received.
    arrived: Notify,
    log: Mutex<Vec<String>>,
    /// When each streamed reply's first bytes were handed to the server.
    first_bytes: Mutex<Vec<(String, std::time::Instant)>>,
}

impl OpenAiState {
    fn count(&self, path: &str) -> usize {
        let received = self.received.lock().unwrap();
        received.iter().filter(|r| r.path.contains(path)).count()
    }
}

/// A running fake server.
#[derive(Clone)]
pub struct FakeOpenAi {
    /// `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
    state: Arc<OpenAiState>,
}

impl FakeOpenAi {
    /// Starts a server on a free loopback port; unscripted chat requests
    /// get a streamed "OK.".
    pub async fn start() -> FakeOpenAi {
        let (router, state) = Self::router();
        let addr = net::serve(router).await;
        FakeOpenAi {
            base_url: format!("http://{addr}/v1"),
            state,
        }
    }

    /// A server whose port refuses connections (nothing listens on it) for
    /// `outage`, then serves as [`FakeOpenAi::start`] does: a provider
    /// outage.
    pub async fn start_after_outage(outage: Duration) -> FakeOpenAi {
        let (router, state) = Self::router();
        let port = net::free_port();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        tokio::spawn(async move {
            tokio::time::sleep(outage).await;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .expect("the port is still free");
            let _ = axum::serve(listener, router).await;
        });
        FakeOpenAi {
            base_url: format!("http://{addr}/v1"),
            state,
        }
    }

    fn router() -> (Router, Arc<OpenAiState>) {
        let state = Arc::new(OpenAiState::default());
        let router = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/audio/speech", post(speech))
            .route("/v1/audio/transcriptions", post(transcription))
            .route("/tools/{name}", post(tool))
            .with_state(Arc::clone(&state));
        (router, state)
    }

    /// A server standing for an evaluation judge: chat requests past its
    /// script fail with HTTP 500, so an unexpected call shows.
    pub async fn judge() -> FakeOpenAi {
        let server = FakeOpenAi::start().await;
        server.chat_fallback(Reply::error(500, "scripted failure", "server_error"));
        server
    }

    /// The URL of the tool endpoint `name`.
    pub fn tool_url(&self, name: &str) -> String {
        format!("{}/tools/{name}", self.base_url.trim_end_matches("/v1"))
    }

    pub fn push_chat(&self, reply: Reply) {
        self.state.chat.lock().unwrap().push_back(reply);
    }

    /// Queues replies for the next chat requests.
    pub fn push_chats(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.chat.lock().unwrap().extend(replies);
    }

    /// From now on, chat requests whose `response_format` is `json_schema`
    /// get a 400 (without using up a scripted reply).
    pub fn refuse_json_schema(&self) {
        self.state.refuse_json_schema.store(true, Ordering::SeqCst);
    }

    /// From now on, chat requests with a `temperature` other than 1, then
    /// those with `max_tokens`, get OpenAI's 400 for a reasoning model
    /// (without using up a scripted reply).
    pub fn refuse_temperature(&self) {
        self.state.refuse_temperature.store(true, Ordering::SeqCst);
    }

    /// From now on, embeddings requests get a 400 with OpenAI's error body.
    pub fn refuse_embeddings(&self) {
        self.state.embeddings_refused.store(true, Ordering::SeqCst);
    }

    /// While `down`, embeddings requests get a 503 with OpenAI's error body.
    pub fn embeddings_down(&self, down: bool) {
        self.state.embeddings_down.store(down, Ordering::SeqCst);
    }

    /// The `response_format` of each chat request so far (`null` if none).
    pub fn response_formats(&self) -> Vec<Value> {
        self.chat_requests()
            .into_iter()
            .map(|body| body["response_format"].clone())
            .collect()
    }

    /// Queues replies for the next chat requests naming `model` (these go
    /// before the shared script).
    pub fn push_chats_for(&self, model: &str, replies: impl IntoIterator<Item = Reply>) {
        let mut scripts = self.state.model_chat.lock().unwrap();
        scripts.entry(model.to_owned()).or_default().extend(replies);
    }

    /// The reply to chat requests naming `model` once its script is used up.
    pub fn chat_fallback_for(&self, model: &str, reply: Reply) {
        let mut fallbacks = self.state.model_fallback.lock().unwrap();
        fallbacks.insert(model.to_owned(), reply);
    }

    /// The chat reply once the script is used up.
    pub fn chat_fallback(&self, reply: Reply) {
        *self.state.chat_fallback.lock().unwrap() = Some(reply);
    }

    pub fn push_speech(&self, reply: Reply) {
        self.state.speech.lock().unwrap().push_back(reply);
    }

    pub fn push_transcription(&self, reply: Reply) {
        self.state.transcription.lock().unwrap().push_back(reply);
    }

    /// The transcription reply once the script is used up: `transcriber`
    /// decides it as each request arrives (a bench answering by the time
    /// the request comes, whatever requests came before).
    pub fn transcribe_with(&self, transcriber: impl Fn() -> Reply + Send + Sync + 'static) {
        *self.state.transcriber.lock().unwrap() = Some(Arc::new(transcriber));
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

    /// Waits until `n` requests have come on paths containing `path`;
    /// panics after `limit`.
    pub async fn wait_for_requests(&self, path: &str, n: usize, limit: Duration) -> Vec<Received> {
        wait::until_notified(&self.state.arrived, limit, || {
            let received = self.received(path);
            (received.len() >= n).then_some(received)
        })
        .await
        .unwrap_or_else(|| panic!("expected {n} `{path}` requests within {limit:?}"))
    }

    /// The bodies of the chat requests so far.
    pub fn chat_requests(&self) -> Vec<Value> {
        self.received("chat/completions")
            .iter()
            .map(Received::json)
            .collect()
    }

    /// The bodies of the embeddings requests so far.
    pub fn embedding_requests(&self) -> Vec<Value> {
        self.received("embeddings")
            .iter()
            .map(Received::json)
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

/// Records a request; returns how many have come on its path.
fn record(state: &OpenAiState, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> usize {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let count = {
        let mut received = state.received.lock().unwrap();
        received.push(Received {
            path: uri.path().to_owned(),
            authorization: header("authorization"),
            content_type: header("content-type"),
            body: body.to_vec(),
            at: Instant::now(),
        });
        received.iter().filter(|r| r.path == uri.path()).count()
    };
    state.arrived.notify_waiters();
    count
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
    let request = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    let temperature = &request["temperature"];
    if state.refuse_temperature.load(Ordering::SeqCst)
        && temperature.as_f64().is_some_and(|t| t != 1.0)
    {
        let refusal = unsupported_temperature(temperature);
        return respond(state, format!("chat {n}"), refusal).await;
    }
    if state.refuse_temperature.load(Ordering::SeqCst) && request.get("max_tokens").is_some() {
        let message = "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.";
        let refusal = Reply::error(400, message, "invalid_request_error");
        return respond(state, format!("chat {n}"), refusal).await;
    }
    let asks_schema = request["response_format"]["type"] == "json_schema";
    if asks_schema && state.refuse_json_schema.load(Ordering::SeqCst) {
        let refusal = Reply::error(
            400,
            "response_format type json_schema is not supported",
            "invalid_request_error",
        );
        return respond(state, format!("chat {n}"), refusal).await;
    }
    let model = request["model"].as_str().unwrap_or_default().to_owned();
    let for_model = {
        let mut scripts = state.model_chat.lock().unwrap();
        scripts.get_mut(&model).and_then(VecDeque::pop_front)
    };
    let reply = for_model
        .or_else(|| state.model_fallback.lock().unwrap().get(&model).cloned())
        .or_else(|| state.chat.lock().unwrap().pop_front());
    let reply = reply
        .or_else(|| state.chat_fallback.lock().unwrap().clone())
        .unwrap_or_else(|| Reply::Sse(text_answer("OK.")));
    if let Reply::Completion(content) = &reply {
        let model = serde_json::from_slice::<Value>(&body)
            .map(|request| request["model"].clone())
            .unwrap_or(Value::Null);
        return respond(
            state,
            format!("chat {n}"),
            Reply::Json(completion_body(&model, content)),
        )
        .await;
    }
    respond(state, format!("chat {n}"), reply).await
}

async fn embeddings(
    State(state): State<Arc<OpenAiState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&state, &uri, &headers, &body);
    if state.embeddings_down.load(Ordering::SeqCst) {
        let down = Reply::error(503, "the engine is currently overloaded", "server_error");
        return respond(state, "embeddings".into(), down).await;
    }
    if state.embeddings_refused.load(Ordering::SeqCst) {
        let refused = Reply::error(
            400,
            "The model `embed-1` does not exist",
            "invalid_request_error",
        );
        return respond(state, "embeddings".into(), refused).await;
    }
    let reply = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|request| embeddings_body(&request))
        .map_or_else(
            || {
                Reply::error(
                    400,
                    "input must be a string or strings",
                    "invalid_request_error",
                )
            },
            Reply::Json,
        );
    respond(state, "embeddings".into(), reply).await
}

async fn speech(
    State(state): State<Arc<OpenAiState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let input = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["input"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let default = Reply::Pcm(vec![Part::Raw(signal::tone_pcm(24_000, 0.5))]);
    let request = Request { uri, headers, body };
    scripted(
        state,
        request,
        "speech",
        format!("speech: {input}"),
        default,
    )
    .await
}

async fn transcription(
    State(state): State<Arc<OpenAiState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let transcriber = state.transcriber.lock().unwrap().clone();
    let default = transcriber.map_or_else(|| Reply::Json(json!({"text": "Hello."})), |f| f());
    let request = Request { uri, headers, body };
    let line = "transcription: request".to_owned();
    scripted(state, request, "transcription", line, default).await
}

async fn tool(
    State(state): State<Arc<OpenAiState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let line = format!("tool {}: {}", uri.path(), String::from_utf8_lossy(&body));
    let request = Request { uri, headers, body };
    let default = Reply::Json(json!({"ok": true}));
    scripted(state, request, "tool", line, default).await
}

/// What a handler took from the request.
struct Request {
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

/// Logs `line`, records the request, and answers with the next reply
/// scripted for `who` (`speech`, `transcription`, `tool`), else `default`.
async fn scripted(
    state: Arc<OpenAiState>,
    request: Request,
    who: &str,
    line: String,
    default: Reply,
) -> Response {
    // Logged before the request is announced: a reply waiting for it
    // logs what it saw after this line.
    log(&state, line);
    record(&state, &request.uri, &request.headers, &request.body);
    let queue = match who {
        "speech" => &state.speech,
        "transcription" => &state.transcription,
        _ => &state.tool,
    };
    let reply = queue.lock().unwrap().pop_front().unwrap_or(default);
    respond(state, who.to_owned(), reply).await
}

async fn respond(state: Arc<OpenAiState>, who: String, reply: Reply) -> Response {
    let json = |body: String| {
        Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    match reply {
        Reply::Status {
            status,
            body,
            headers,
        } => {
            let mut response = json(body);
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            for (name, value) in headers {
                response.headers_mut().append(name, value.parse().unwrap());
            }
            response
        }
        Reply::Json(value) => json(value.to_string()),
        Reply::Completion(content) => json(completion_body(&Value::Null, &content).to_string()),
        Reply::Text(text) => Response::builder()
            .header("content-type", "text/plain")
            .body(Body::from(text))
            .unwrap(),
        Reply::Sse(parts) => streamed("text/event-stream", parts, state, who),
        Reply::Pcm(parts) => streamed("application/octet-stream", parts, state, who),
        Reply::Hang => std::future::pending().await,
        Reply::Delayed(wait, reply) => {
            tokio::time::sleep(wait).await;
            Box::pin(respond(state, who, *reply)).await
        }
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
                    wait::notified_until(&state.arrived, || {
                        (state.count("audio/speech") >= n).then_some(())
                    })
                    .await;
                    log(&state, format!("{who}: saw {n} speech request(s)"));
                    continue;
                }
                Part::WaitFor(signal, what) => {
                    signal.notified().await;
                    log(&state, format!("{who}: saw {what}"));
                    continue;
                }
                Part::Pause(duration) => {
                    tokio::time::sleep(duration).await;
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
