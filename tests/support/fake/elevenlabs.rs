//! A fake ElevenLabs multi-context TTS socket
//! (`/v1/text-to-speech/{voice_id}/multi-stream-input`): contexts opened by
//! `"text": " "`, audio with a character alignment per flushed text,
//! `isFinal` after `close_context`. Told to, each flushed text's synthesis
//! starts a while after it came (and after the previous text's started:
//! one at a time), and a `close_context` before the last one started is
//! honoured at once: what had not started is dropped and nothing more comes
//! (no audio, no `isFinal`), as ElevenLabs' server-side race does (Pipecat
//! issues #4681, #5271).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use super::socket::header;

/// How one connection behaves.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// Refuse the handshake with this status and message.
    pub reject: Option<(u16, String)>,
    /// Drop the connection after sending this many audio messages.
    pub drop_after_audio: Option<usize>,
    /// Each flushed text's synthesis starts this long after it came, and
    /// this long after the previous text's of its context started (its
    /// audio waits until then); a context closed before its last text's
    /// started gets nothing more back.
    pub synthesis_delay: Option<Duration>,
}

/// Audio per character of text, in milliseconds.
pub const MS_PER_CHAR: u32 = 10;

/// One connection: its handshake and every message received.
#[derive(Debug, Clone)]
pub struct Connection {
    pub voice: String,
    pub query: String,
    pub key: Option<String>,
    pub messages: Vec<Value>,
}

type State = Arc<super::socket::Scripted<Script, Connection>>;

/// A running fake ElevenLabs; `url` is the socket root (`ws://127.0.0.1:PORT`).
pub type FakeElevenLabs = super::socket::Fake<Script, Connection>;

impl FakeElevenLabs {
    pub async fn start() -> FakeElevenLabs {
        super::socket::Fake::serve(
            "/v1/text-to-speech/{voice}/multi-stream-input",
            handshake,
            "",
        )
        .await
    }
}

async fn handshake(
    axum::extract::State(state): axum::extract::State<State>,
    Path(voice): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let script = state.next_script();
    if let Some((status, message)) = script.reject.clone() {
        let body = json!({"detail": {"status": "invalid_api_key", "message": message}}).to_string();
        return (StatusCode::from_u16(status).unwrap(), body).into_response();
    }
    let key = header(&headers, "xi-api-key");
    let rate: u32 = query
        .as_deref()
        .and_then(|q| {
            q.split('&')
                .find_map(|p| p.strip_prefix("output_format=pcm_"))
        })
        .and_then(|r| r.parse().ok())
        .unwrap_or(16_000);
    let index = state.record(Connection {
        voice,
        query: query.unwrap_or_default(),
        key,
        messages: Vec::new(),
    });
    upgrade.on_upgrade(move |socket| session(socket, state, index, script, rate))
}

/// A context whose synthesis has not started: when it starts, and the
/// replies waiting for it.
/// A text's audio, and when its synthesis starts.
struct Pending {
    starts: tokio::time::Instant,
    reply: Value,
}

async fn session(mut socket: WebSocket, state: State, index: usize, script: Script, rate: u32) {
    let mut open: HashSet<String> = HashSet::new();
    // Each context's texts whose synthesis has not started, in order.
    let mut pending: HashMap<String, VecDeque<Pending>> = HashMap::new();
    // When each context's latest text's synthesis starts (or started).
    let mut last_start: HashMap<String, tokio::time::Instant> = HashMap::new();
    let mut sent_audio = 0usize;
    loop {
        let next_start = pending
            .values()
            .filter_map(|queue| queue.front().map(|p| p.starts))
            .min();
        let message = tokio::select! {
            message = socket.recv() => message,
            () = sleep_until(next_start) => {
                let now = tokio::time::Instant::now();
                let mut due = Vec::new();
                for queue in pending.values_mut() {
                    while queue.front().is_some_and(|p| p.starts <= now) {
                        due.extend(queue.pop_front().map(|p| p.reply));
                    }
                }
                pending.retain(|_, queue| !queue.is_empty());
                for reply in due {
                    if !send_audio(&mut socket, reply, &mut sent_audio, &script).await {
                        return;
                    }
                }
                continue;
            }
        };
        let Some(Ok(message)) = message else {
            break;
        };
        let Message::Text(text) = message else {
            if matches!(message, Message::Close(_)) {
                break;
            }
            continue;
        };
        let value: Value = serde_json::from_str(&text).unwrap();
        state.update(index, |c| c.messages.push(value.clone()));
        if value.get("close_socket").and_then(Value::as_bool) == Some(true) {
            let _ = socket.send(Message::Close(None)).await;
            break;
        }
        let context = value["context_id"].as_str().unwrap_or("default").to_owned();
        if value.get("close_context").and_then(Value::as_bool) == Some(true) {
            // Closed before its last text's synthesis started: what had
            // not started is dropped, and nothing more is said.
            let raced = pending.remove(&context).is_some();
            last_start.remove(&context);
            if open.remove(&context) && !raced {
                let fin = json!({"isFinal": true, "contextId": context});
                let _ = socket.send(Message::Text(fin.to_string().into())).await;
            }
            continue;
        }
        let Some(words) = value.get("text").and_then(Value::as_str) else {
            continue;
        };
        open.insert(context.clone());
        if words.trim().is_empty() {
            continue;
        }
        let reply = audio_reply(&context, words, rate);
        match script.synthesis_delay {
            Some(delay) => {
                let now = tokio::time::Instant::now();
                let starts = last_start
                    .get(&context)
                    .map_or(now + delay, |&last| (last + delay).max(now + delay));
                last_start.insert(context.clone(), starts);
                pending
                    .entry(context)
                    .or_default()
                    .push_back(Pending { starts, reply });
            }
            None => {
                if !send_audio(&mut socket, reply, &mut sent_audio, &script).await {
                    return;
                }
            }
        }
    }
}

/// The audio message for `words`, 10 ms a character, with its alignment.
fn audio_reply(context: &str, words: &str, rate: u32) -> Value {
    let chars: Vec<String> = words.chars().map(|c| c.to_string()).collect();
    let ms = MS_PER_CHAR * chars.len() as u32;
    let pcm = crate::support::signal::tone_pcm(rate, f64::from(ms) / 1000.0);
    json!({
        "audio": base64::engine::general_purpose::STANDARD.encode(pcm),
        "alignment": {
            "chars": chars,
            "charStartTimesMs": (0..words.chars().count() as u32).map(|i| i * MS_PER_CHAR).collect::<Vec<_>>(),
            "charDurationsMs": vec![MS_PER_CHAR; words.chars().count()],
        },
        "normalizedAlignment": null,
        "contextId": context,
    })
}

/// Sends an audio message; false when the connection is done (it failed,
/// or the script drops it now).
async fn send_audio(
    socket: &mut WebSocket,
    reply: Value,
    sent_audio: &mut usize,
    script: &Script,
) -> bool {
    if socket
        .send(Message::Text(reply.to_string().into()))
        .await
        .is_err()
    {
        return false;
    }
    *sent_audio += 1;
    script.drop_after_audio.is_none_or(|n| *sent_audio < n)
}

/// Until `at`, or for ever.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
