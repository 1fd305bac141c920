//! A fake Deepgram live-transcription server (`/v1/listen`): binary audio
//! in, `Results` out (interim while audio comes, final on `Finalize` and
//! `CloseStream`), `Metadata` then a close on `CloseStream`.

use std::sync::Arc;

use axum::extract::RawQuery;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::socket::header;

/// How one connection behaves.
#[derive(Debug, Clone)]
pub struct Script {
    /// Refuse the handshake with this status and `err_msg`.
    pub reject: Option<(u16, String)>,
    /// Drop the connection, without a result, once this much audio came.
    pub drop_after_bytes: Option<usize>,
    /// Take everything and answer nothing, never closing (a hung server).
    pub hang: bool,
    /// The final transcript of the audio.
    pub transcript: String,
    /// Audio bytes between interim results.
    pub interim_every: usize,
    /// A text message sent as soon as the socket opens...
    pub send_first: Option<String>,
    /// ...this many times (a flood).
    pub send_first_times: usize,
    /// Finals sent, in order, once this much audio (bytes) has come, as
    /// Deepgram's endpointing does after speech ends; when set, `Finalize`
    /// adds no final of its own.
    pub finals_at: Vec<(usize, String)>,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            reject: None,
            drop_after_bytes: None,
            hang: false,
            transcript: "Hello there.".into(),
            interim_every: 16_000,
            send_first: None,
            send_first_times: 1,
            finals_at: Vec::new(),
        }
    }
}

/// What one connection received.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    pub query: String,
    pub authorization: Option<String>,
    pub audio: Vec<u8>,
    pub texts: Vec<String>,
    /// The client closed the socket or it dropped.
    pub ended: bool,
}

type State = Arc<super::socket::Scripted<Script, Connection>>;

/// A running fake Deepgram; `url` is the socket root (`ws://127.0.0.1:PORT`).
pub type FakeDeepgram = super::socket::Fake<Script, Connection>;

impl FakeDeepgram {
    pub async fn start() -> FakeDeepgram {
        super::socket::Fake::serve("/v1/listen", listen, "").await
    }
}

async fn listen(
    axum::extract::State(state): axum::extract::State<State>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let script = state.next_script();
    let authorization = header(&headers, "authorization");
    if let Some((status, message)) = script.reject.clone() {
        let body = json!({"err_code": "INVALID_AUTH", "err_msg": message, "request_id": "fake"})
            .to_string();
        return (
            StatusCode::from_u16(status).unwrap(),
            [("dg-error", message)],
            body,
        )
            .into_response();
    }
    // linear16 at the rate the client declared, as Deepgram reads it.
    let rate: u32 = query
        .as_deref()
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("sample_rate=")))
        .and_then(|r| r.parse().ok())
        .unwrap_or(16_000);
    let index = state.record(Connection {
        query: query.unwrap_or_default(),
        authorization,
        ..Connection::default()
    });
    upgrade.on_upgrade(move |socket| session(socket, state, index, script, rate))
}

fn results(transcript: &str, start: f64, duration: f64, is_final: bool) -> String {
    json!({
        "type": "Results", "channel_index": [0, 1], "duration": duration, "start": start,
        "is_final": is_final, "speech_final": is_final,
        "channel": {"alternatives": [{"transcript": transcript, "confidence": 0.99, "words": []}]},
        "metadata": {"request_id": "fake", "model_info": {"name": "fake", "version": "1", "arch": "fake"}, "model_uuid": "fake"},
        "from_finalize": is_final
    })
    .to_string()
}

async fn session(mut socket: WebSocket, state: State, index: usize, script: Script, rate: u32) {
    let rate = f64::from(rate) * 2.0; // bytes per second of linear16
    let mut received = 0usize;
    let mut confirmed = 0usize;
    let mut next_interim = script.interim_every;
    let mut finals_at = script.finals_at.iter().peekable();
    if let Some(first) = &script.send_first {
        for _ in 0..script.send_first_times {
            if socket
                .send(Message::Text(first.clone().into()))
                .await
                .is_err()
            {
                break;
            }
        }
    }
    while let Some(Ok(message)) = socket.recv().await {
        if script.hang {
            if let Message::Binary(audio) = &message {
                state.update(index, |c| c.audio.extend_from_slice(audio));
            }
            continue;
        }
        match message {
            Message::Binary(audio) => {
                received += audio.len();
                state.update(index, |c| c.audio.extend_from_slice(&audio));
                if script
                    .drop_after_bytes
                    .is_some_and(|limit| received >= limit)
                {
                    state.update(index, |c| c.ended = true);
                    return; // dropped without a close frame
                }
                while let Some((_, transcript)) = finals_at.next_if(|(at, _)| received >= *at) {
                    let start = confirmed as f64 / rate;
                    let text = results(
                        transcript,
                        start,
                        (received - confirmed) as f64 / rate,
                        true,
                    );
                    confirmed = received;
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                if received >= next_interim {
                    next_interim += script.interim_every;
                    let words: Vec<&str> = script.transcript.split(' ').collect();
                    let partial = words[..words.len().div_ceil(2)].join(" ");
                    let start = confirmed as f64 / rate;
                    let text =
                        results(&partial, start, (received - confirmed) as f64 / rate, false);
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
            }
            Message::Text(text) => {
                state.update(index, |c| c.texts.push(text.to_string()));
                let kind = serde_json::from_str::<serde_json::Value>(&text).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                if (kind == "Finalize" || kind == "CloseStream")
                    && received > confirmed
                    && script.finals_at.is_empty()
                {
                    let start = confirmed as f64 / rate;
                    let final_result = results(
                        &script.transcript,
                        start,
                        (received - confirmed) as f64 / rate,
                        true,
                    );
                    confirmed = received;
                    if socket
                        .send(Message::Text(final_result.into()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                if kind == "CloseStream" {
                    let metadata = json!({"type": "Metadata", "transaction_key": "deprecated", "request_id": "fake",
                        "sha256": "fake", "created": "2024-08-29T22:37:55.202Z", "duration": received as f64 / rate, "channels": 1});
                    let _ = socket
                        .send(Message::Text(metadata.to_string().into()))
                        .await;
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    state.update(index, |c| c.ended = true);
}
