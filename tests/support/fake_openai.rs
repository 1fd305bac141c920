//! A fake OpenAI-compatible server for tests: `POST /v1/chat/completions`
//! (non-streaming) answers from a script, `POST /v1/embeddings` answers
//! with deterministic bag-of-words vectors (texts sharing words are close).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

/// What the judge does for one request.
#[derive(Debug, Clone)]
pub enum JudgeReply {
    /// Answer with this message content.
    Answer(String),
    /// Answer with this HTTP status.
    Status(u16),
    /// Never answer (the request hangs until the client gives up).
    Hang,
}

#[derive(Default)]
struct Inner {
    script: VecDeque<JudgeReply>,
    fallback: Option<JudgeReply>,
    chat_requests: Vec<Value>,
    embedding_requests: Vec<Value>,
}

/// The running server.
#[derive(Clone)]
pub struct FakeOpenAi {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

/// Dimensions of the fake embeddings.
pub const DIMS: usize = 64;

impl FakeOpenAi {
    /// Starts the server on a free loopback port.
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/embeddings", post(embeddings))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeOpenAi { addr, inner }
    }

    /// `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues replies for the next chat requests.
    pub fn script(&self, replies: impl IntoIterator<Item = JudgeReply>) {
        self.inner.lock().unwrap().script.extend(replies);
    }

    /// The reply once the script is used up (default: HTTP 500).
    pub fn fallback(&self, reply: JudgeReply) {
        self.inner.lock().unwrap().fallback = Some(reply);
    }

    /// Chat requests received so far.
    pub fn chat_requests(&self) -> Vec<Value> {
        self.inner.lock().unwrap().chat_requests.clone()
    }

    /// Embeddings requests received so far.
    pub fn embedding_requests(&self) -> Vec<Value> {
        self.inner.lock().unwrap().embedding_requests.clone()
    }
}

/// A verdict as the judge would answer it.
pub fn verdict(outcome: &str, score: f64, tactics: &[&str]) -> JudgeReply {
    JudgeReply::Answer(
        json!({"outcome": outcome, "score": score, "tactics": tactics, "reason": "as scripted"})
            .to_string(),
    )
}

async fn chat(State(inner): State<Arc<Mutex<Inner>>>, Json(body): Json<Value>) -> Response {
    let reply = {
        let mut inner = inner.lock().unwrap();
        inner.chat_requests.push(body.clone());
        inner
            .script
            .pop_front()
            .or_else(|| inner.fallback.clone())
            .unwrap_or(JudgeReply::Status(500))
    };
    match reply {
        JudgeReply::Answer(content) => Json(json!({
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": body["model"],
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop"
            }],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}
        }))
        .into_response(),
        JudgeReply::Status(code) => (
            StatusCode::from_u16(code).unwrap(),
            Json(json!({"error": {"message": "scripted failure", "type": "server_error"}})),
        )
            .into_response(),
        JudgeReply::Hang => std::future::pending().await,
    }
}

/// Bag of words: each lower-cased word adds 1 to a hashed component.
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

async fn embeddings(State(inner): State<Arc<Mutex<Inner>>>, Json(body): Json<Value>) -> Response {
    inner.lock().unwrap().embedding_requests.push(body.clone());
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().unwrap_or_default().to_owned())
            .collect(),
        _ => return (StatusCode::BAD_REQUEST, "input must be a string or strings").into_response(),
    };
    // Answer in reverse order: clients must place vectors by `index`.
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .rev()
        .map(|(index, text)| json!({"object": "embedding", "index": index, "embedding": embed(text)}))
        .collect();
    Json(json!({
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": 5, "total_tokens": 5}
    }))
    .into_response()
}
