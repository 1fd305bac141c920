//! A fake Cartesia TTS socket (`/tts/websocket`): a generation request per
//! transcript piece on a context, `chunk` and `timestamps` replies, `done`
//! after `continue: false`, nothing more after `cancel`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::RawQuery;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::socket::header;

/// Audio per character of text, in milliseconds.
pub const MS_PER_CHAR: u32 = 10;

#[derive(Debug, Clone, Default)]
pub struct Script {
    /// Refuse the handshake with this status and message.
    pub reject: Option<(u16, String)>,
    /// Answer each transcript with an error message instead of audio.
    pub error: Option<String>,
    /// Answer each transcript with a chunk of this many bytes of junk
    /// audio in one message instead (a hostile provider).
    pub oversized_chunk: Option<usize>,
    /// A context whose audio has gone out refuses more text (an error,
    /// `done`), as Cartesia's contexts do once they expire a second after
    /// their last audio: text sent after a tool call that took longer.
    /// Closing it (`continue: false`, no text) is still answered `done`.
    pub expire_spoken_contexts: bool,
    /// Record the connection, then hold its handshake unanswered until
    /// notified (`notify_one`): a provider slow to accept a socket.
    pub hold_handshake: Option<Arc<Notify>>,
}

/// One connection: its handshake and every message received.
#[derive(Debug, Clone)]
pub struct Connection {
    pub query: String,
    pub key: Option<String>,
    pub messages: Vec<Value>,
}

type State = Arc<super::socket::Scripted<Script, Connection>>;

/// A running fake Cartesia; `url` is the socket (`ws://127.0.0.1:PORT/tts/websocket`).
pub type FakeCartesia = super::socket::Fake<Script, Connection>;

impl FakeCartesia {
    pub async fn start() -> FakeCartesia {
        super::socket::Fake::serve("/tts/websocket", handshake, "/tts/websocket").await
    }
}

async fn handshake(
    axum::extract::State(state): axum::extract::State<State>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let script = state.next_script();
    if let Some((status, message)) = script.reject.clone() {
        return (
            StatusCode::from_u16(status).unwrap(),
            json!({"error": message}).to_string(),
        )
            .into_response();
    }
    let key = header(&headers, "x-api-key");
    let index = state.record(Connection {
        query: query.unwrap_or_default(),
        key,
        messages: Vec::new(),
    });
    if let Some(hold) = &script.hold_handshake {
        hold.notified().await;
    }
    upgrade.on_upgrade(move |socket| session(socket, state, index, script))
}

async fn session(mut socket: WebSocket, state: State, index: usize, script: Script) {
    let mut cancelled: HashSet<String> = HashSet::new();
    let mut audio_ms: HashMap<String, u32> = HashMap::new();
    while let Some(Ok(message)) = socket.recv().await {
        let Message::Text(text) = message else {
            if matches!(message, Message::Close(_)) {
                break;
            }
            continue;
        };
        let value: Value = serde_json::from_str(&text).unwrap();
        state.update(index, |c| c.messages.push(value.clone()));
        let context = value["context_id"].as_str().unwrap_or_default().to_owned();
        if value.get("cancel").and_then(Value::as_bool) == Some(true) {
            cancelled.insert(context);
            continue;
        }
        if cancelled.contains(&context) {
            continue;
        }
        if let Some(error) = &script.error {
            let reply = json!({"type": "error", "done": true, "title": "Invalid request", "message": error,
                               "error_code": "invalid_request", "status_code": 400, "context_id": context});
            let _ = socket.send(Message::Text(reply.to_string().into())).await;
            continue;
        }
        if let Some(bytes) = script.oversized_chunk {
            let junk = base64::engine::general_purpose::STANDARD.encode(vec![0u8; bytes]);
            let chunk = json!({"type": "chunk", "data": junk, "done": false, "status_code": 206,
                               "step_time": 5, "context_id": context});
            let _ = socket.send(Message::Text(chunk.to_string().into())).await;
            continue;
        }
        let transcript = value["transcript"].as_str().unwrap_or_default();
        if script.expire_spoken_contexts
            && !transcript.trim().is_empty()
            && audio_ms.contains_key(&context)
        {
            let reply = json!({"type": "error", "done": true, "title": "Invalid request",
                               "message": "context has expired", "error_code": "invalid_request",
                               "status_code": 400, "context_id": context});
            let _ = socket.send(Message::Text(reply.to_string().into())).await;
            continue;
        }
        let rate = value["output_format"]["sample_rate"]
            .as_u64()
            .unwrap_or(16_000) as u32;
        if !transcript.trim().is_empty() {
            let start = *audio_ms.get(&context).unwrap_or(&0);
            let words: Vec<&str> = transcript.split_whitespace().collect();
            let mut starts = Vec::new();
            let mut at = start;
            for word in &words {
                starts.push(f64::from(at) / 1000.0);
                at += MS_PER_CHAR * (word.chars().count() as u32 + 1);
            }
            let ms = MS_PER_CHAR * transcript.chars().count() as u32;
            audio_ms.insert(context.clone(), start + ms);
            let pcm = crate::support::signal::tone_pcm(rate, f64::from(ms) / 1000.0);
            let chunk = json!({"type": "chunk", "data": base64::engine::general_purpose::STANDARD.encode(pcm),
                               "done": false, "status_code": 206, "step_time": 5, "context_id": context});
            let stamps = json!({"type": "timestamps", "done": false, "status_code": 206, "context_id": context,
                                "word_timestamps": {"words": words, "start": starts, "end": starts}});
            if socket
                .send(Message::Text(chunk.to_string().into()))
                .await
                .is_err()
                || socket
                    .send(Message::Text(stamps.to_string().into()))
                    .await
                    .is_err()
            {
                return;
            }
        }
        if value.get("continue").and_then(Value::as_bool) == Some(false) {
            let done =
                json!({"type": "done", "done": true, "status_code": 206, "context_id": context});
            let _ = socket.send(Message::Text(done.to_string().into())).await;
        }
    }
}
