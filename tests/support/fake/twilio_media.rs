//! A fake Twilio for tests: a media streams client that behaves as
//! Twilio's "Media Streams - WebSocket Messages" page describes.
//!
//! It sends `connected`, then `start` (with `customParameters`), then a
//! `media` message every 20 ms for as long as the call lasts: the caller's
//! queued audio, or silence (160 bytes of mu-law either way, counters as
//! strings). It plays what the server sends in real time, one 20 ms frame
//! per tick, and echoes a `mark` once the audio queued before it has
//! played; a `clear` drops the queued audio and echoes the pending marks at
//! once; when the server closes the stream, the audio it delivered but had
//! not played is recorded apart. Everything is recorded for the test to
//! check.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Message;

use crate::support::fake::twilio_rest::{read_stream_twiml, sign};
use crate::support::mulaw::FRAME;
use crate::support::wait::until_notified;

/// Who is calling.
#[derive(Debug, Clone)]
pub struct CallConfig {
    pub account_sid: String,
    pub call_sid: String,
    pub stream_sid: String,
    pub custom_parameters: Vec<(String, String)>,
    /// Send `connected` and `start` on connecting (false: the test sends
    /// its own messages first).
    pub start: bool,
    /// The account's auth token, for a server that checks streams: the
    /// fake then asks `POST /twilio/voice` (signed) for the call's TwiML,
    /// as Twilio does, sends its stream token back in `start`, and signs
    /// the WebSocket upgrade.
    pub auth_token: Option<String>,
    /// The `<Stream url>` Twilio signs the upgrade for (default:
    /// `wss://ADDR/twilio/ws`, the URL the server's TwiML names when no
    /// `public_host` is set).
    pub stream_url: Option<String>,
}

impl CallConfig {
    /// Call number `n`, with SIDs unique to it.
    pub fn new(n: u32) -> Self {
        CallConfig {
            account_sid: format!("AC{:032x}", 0xacc0_u32),
            call_sid: format!("CA{n:032x}"),
            stream_sid: format!("MZ{n:032x}"),
            custom_parameters: vec![("From".into(), format!("+1555{n:07}"))],
            start: true,
            auth_token: None,
            stream_url: None,
        }
    }

    /// This call, for a server whose account has the auth token `token`.
    pub fn signed(mut self, token: &str) -> Self {
        self.auth_token = Some(token.to_owned());
        self
    }
}

/// The `<Parameter>` the server's TwiML hands the stream as its token.
pub const STREAM_TOKEN: &str = "voxpipe_stream_token";

/// The stream token the server's voice webhook gives call `config`, as
/// Twilio would see it in the TwiML (`None` when the TwiML has none).
pub async fn voice_webhook_token(
    addr: SocketAddr,
    config: &CallConfig,
    token: &str,
) -> Option<String> {
    let form: Vec<(String, String)> = vec![
        ("AccountSid".into(), config.account_sid.clone()),
        ("CallSid".into(), config.call_sid.clone()),
    ];
    // reqwest is built without a TLS provider of its own.
    let _already = rustls::crypto::ring::default_provider().install_default();
    // The server sees `Host: ADDR` and no proxy: it checks the https URL.
    let signature = sign(token, &format!("https://{addr}/twilio/voice"), &form);
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/twilio/voice"))
        .header("X-Twilio-Signature", signature)
        .form(&form)
        .send()
        .await
        .expect("the voice webhook answers");
    let twiml = response.text().await.expect("TwiML");
    let (_url, parameters) = read_stream_twiml(&twiml)?;
    parameters
        .into_iter()
        .find(|(name, _)| name == STREAM_TOKEN)
        .map(|(_, value)| value)
}

/// Everything the fake saw and did.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// mu-law the caller heard, in the order it played.
    pub heard: Vec<u8>,
    /// mu-law the server delivered that had not played when it closed the
    /// stream (a real Twilio drops it).
    pub unplayed_at_close: Vec<u8>,
    /// `media` messages received.
    pub media_received: usize,
    /// Marks received, and echoed back.
    pub marks_received: Vec<String>,
    pub marks_echoed: Vec<String>,
    /// `clear` messages received, and the 20 ms frames they dropped.
    pub clears: usize,
    pub frames_cleared: usize,
    /// Server messages that were not media, mark or clear.
    pub unexpected: Vec<String>,
    /// The server's close frame.
    pub close: Option<(u16, String)>,
    /// The socket is over, and when.
    pub ended: bool,
    pub ended_at: Option<std::time::Instant>,
    /// Caller audio sent, in 20 ms frames.
    pub caller_sent: usize,
    /// The worst lateness of a `media` message from the server: within one
    /// utterance (up to a `mark` or `clear`), frame k is due 20 ms x k
    /// after the first arrived.
    pub media_late_max: Duration,
    /// The most a `media` message arrived before it was due (the server
    /// sends ahead while the caller is hearing audio).
    pub media_early_max: Duration,
}

enum Command {
    Audio(Vec<u8>),
    Payloads(Vec<Vec<u8>>),
    Text(String),
    Binary(Vec<u8>),
    Dtmf(char),
    Freeze,
    Stop,
    Drop,
}

enum Playback {
    Frame(Vec<u8>),
    Mark(String),
}

/// One fake call in progress.
pub struct FakeCall {
    pub config: CallConfig,
    commands: mpsc::UnboundedSender<Command>,
    record: Arc<Mutex<Record>>,
    changed: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
    /// Caller audio queued so far, in 20 ms frames.
    said: std::sync::atomic::AtomicUsize,
}

impl FakeCall {
    /// Opens the stream at `ws://addr/twilio/ws`.
    pub async fn connect(addr: SocketAddr, config: CallConfig) -> Self {
        // tungstenite zero-fills its whole read buffer on each read: keep it
        // small, as the server does, so 50 fake calls stay cheap.
        Self::try_connect(addr, config)
            .await
            .expect("the server accepts the stream")
    }

    /// Opens the stream at `ws://addr/twilio/ws`; the upgrade's error when
    /// the server refuses it.
    pub async fn try_connect(
        addr: SocketAddr,
        mut config: CallConfig,
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        // tungstenite zero-fills its whole read buffer on each read: keep it
        // small, as the server does, so 50 fake calls stay cheap.
        let socket = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(8 * 1024);
        let mut request = format!("ws://{addr}/twilio/ws")
            .into_client_request()
            .expect("a WebSocket URL");
        if let Some(token) = config.auth_token.clone() {
            let has_token = config
                .custom_parameters
                .iter()
                .any(|(name, _)| name == STREAM_TOKEN);
            if !has_token
                && let Some(stream_token) = voice_webhook_token(addr, &config, &token).await
            {
                config
                    .custom_parameters
                    .push((STREAM_TOKEN.into(), stream_token));
            }
            let url = config
                .stream_url
                .clone()
                .unwrap_or_else(|| format!("wss://{addr}/twilio/ws"));
            let signature = sign(&token, &url, &[]);
            request.headers_mut().insert(
                "x-twilio-signature",
                signature.parse().expect("a header value"),
            );
        }
        let (ws, _response) = tokio_tungstenite::connect_async_with_config(
            request,
            Some(socket),
            true, // TCP_NODELAY: small messages every 20 ms
        )
        .await?;
        let (commands, rx) = mpsc::unbounded_channel();
        let record = Arc::new(Mutex::new(Record::default()));
        let changed = Arc::new(Notify::new());
        let task = tokio::spawn(drive(
            ws,
            config.clone(),
            rx,
            Arc::clone(&record),
            Arc::clone(&changed),
        ));
        Ok(FakeCall {
            config,
            commands,
            record,
            changed,
            task,
            said: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    fn send(&self, command: Command) {
        // The driver is gone when the socket is: nothing to send to.
        let _gone = self.commands.send(command);
    }

    /// The caller says `mulaw` (8 kHz), 20 ms per tick after what is queued.
    pub fn say(&self, mulaw: Vec<u8>) {
        self.said.fetch_add(
            mulaw.len().div_ceil(FRAME),
            std::sync::atomic::Ordering::Relaxed,
        );
        self.send(Command::Audio(mulaw));
    }

    /// Queues mu-law payloads of any sizes, sent as they are, one per
    /// 20 ms tick and in order (no silence comes between them).
    pub fn say_payloads(&self, payloads: Vec<Vec<u8>>) {
        self.said
            .fetch_add(payloads.len(), std::sync::atomic::Ordering::Relaxed);
        self.send(Command::Payloads(payloads));
    }

    /// Sends a raw text message, as is.
    pub fn send_raw(&self, text: impl Into<String>) {
        self.send(Command::Text(text.into()));
    }

    /// Sends a binary message.
    pub fn send_binary(&self, bytes: Vec<u8>) {
        self.send(Command::Binary(bytes));
    }

    /// Stops sending anything, without `stop` (a stream gone quiet).
    pub fn freeze(&self) {
        self.send(Command::Freeze);
    }

    /// The caller presses `key`.
    pub fn press(&self, key: char) {
        self.send(Command::Dtmf(key));
    }

    /// The call ends on Twilio's side: `stop`, then no more media. The
    /// socket stays open, for what the server still sends.
    pub fn stop(&self) {
        self.send(Command::Stop);
    }

    /// The connection drops: no `stop`, no close frame.
    pub fn drop_socket(&self) {
        self.send(Command::Drop);
    }

    pub fn record(&self) -> Record {
        self.record.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the record, or panics after `timeout`.
    pub async fn wait_until(&self, timeout: Duration, done: impl Fn(&Record) -> bool) -> Record {
        let found = until_notified(&self.changed, timeout, || {
            let record = self.record();
            done(&record).then_some(record)
        })
        .await;
        found.unwrap_or_else(|| {
            let record = self.record();
            panic!(
                "call {}: condition not met within {timeout:?}; heard {} ms, {} media, marks {:?}/{:?}, clears {}, close {:?}, ended {}, unexpected {:?}",
                self.config.call_sid,
                record.heard.len() / 8,
                record.media_received,
                record.marks_received,
                record.marks_echoed,
                record.clears,
                record.close,
                record.ended,
                record.unexpected
            )
        })
    }

    /// Waits until everything the caller said so far has been sent.
    pub async fn said(&self, timeout: Duration) -> Record {
        let said = self.said.load(std::sync::atomic::Ordering::Relaxed);
        self.wait_until(timeout, |r| r.caller_sent >= said).await
    }

    /// Waits until the server has closed the stream.
    pub async fn closed(&self, timeout: Duration) -> Record {
        self.wait_until(timeout, |r| r.ended).await
    }
}

impl Drop for FakeCall {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn drive(
    ws: Ws,
    config: CallConfig,
    mut commands: mpsc::UnboundedReceiver<Command>,
    record: Arc<Mutex<Record>>,
    changed: Arc<Notify>,
) {
    let (mut tx, mut rx) = ws.split();
    let mut sequence = 0u64;
    let mut next_sequence = || {
        sequence += 1;
        sequence.to_string()
    };
    let sid = config.stream_sid.clone();
    if config.start {
        let connected = json!({"event": "connected", "protocol": "Call", "version": "1.0.0"});
        let parameters: serde_json::Map<String, Value> = config
            .custom_parameters
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let start = json!({
            "event": "start",
            "sequenceNumber": next_sequence(),
            "start": {
                "accountSid": config.account_sid,
                "streamSid": sid,
                "callSid": config.call_sid,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": parameters,
            },
            "streamSid": sid,
        });
        for message in [connected, start] {
            if tx.send(Message::text(message.to_string())).await.is_err() {
                return;
            }
        }
    }
    let mut caller: VecDeque<Vec<u8>> = VecDeque::new();
    let mut playback: VecDeque<Playback> = VecDeque::new();
    let mut streaming = true;
    let mut chunk = 0u64;
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut outgoing: Vec<Message> = Vec::new();
    // The reply being received: when its first frame arrived, frames since.
    let mut utterance: Option<(tokio::time::Instant, u32)> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if streaming {
                    let payload = match caller.pop_front() {
                        Some(audio) => {
                            record.lock().unwrap().caller_sent += 1;
                            audio
                        }
                        None => vec![0xFF; FRAME],
                    };
                    chunk += 1;
                    outgoing.push(Message::text(json!({
                        "event": "media",
                        "sequenceNumber": next_sequence(),
                        "media": {
                            "track": "inbound",
                            "chunk": chunk.to_string(),
                            "timestamp": ((chunk - 1) * 20).to_string(),
                            "payload": BASE64.encode(&payload),
                        },
                        "streamSid": sid,
                    }).to_string()));
                }
                // Marks behind the frame that just finished playing come
                // back now; then the next frame starts playing.
                let mut record = record.lock().unwrap();
                while let Some(Playback::Mark(_)) = playback.front() {
                    if let Some(Playback::Mark(name)) = playback.pop_front() {
                        outgoing.push(Message::text(mark_echo(&sid, &name, next_sequence())));
                        record.marks_echoed.push(name);
                    }
                }
                if let Some(Playback::Frame(frame)) = playback.front() {
                    record.heard.extend_from_slice(frame);
                    playback.pop_front();
                }
            }
            command = commands.recv() => match command {
                Some(Command::Audio(audio)) => {
                    for piece in audio.chunks(FRAME) {
                        let mut piece = piece.to_vec();
                        piece.resize(FRAME, 0xFF);
                        caller.push_back(piece);
                    }
                }
                Some(Command::Payloads(payloads)) => caller.extend(payloads),
                Some(Command::Text(text)) => outgoing.push(Message::text(text)),
                Some(Command::Binary(bytes)) => outgoing.push(Message::binary(bytes)),
                Some(Command::Dtmf(key)) => outgoing.push(Message::text(json!({
                    "event": "dtmf",
                    "streamSid": sid,
                    "sequenceNumber": next_sequence(),
                    "dtmf": {"track": "inbound_track", "digit": key.to_string()},
                }).to_string())),
                Some(Command::Freeze) => streaming = false,
                Some(Command::Stop) => {
                    streaming = false;
                    outgoing.push(Message::text(json!({
                        "event": "stop",
                        "sequenceNumber": next_sequence(),
                        "stop": {"accountSid": config.account_sid, "callSid": config.call_sid},
                        "streamSid": sid,
                    }).to_string()));
                }
                Some(Command::Drop) | None => {
                    let mut record = record.lock().unwrap();
                    record.ended = true;
                    record.ended_at = Some(std::time::Instant::now());
                    drop(record);
                    changed.notify_waiters();
                    return;
                }
            },
            message = rx.next() => {
                let mut record = record.lock().unwrap();
                match message {
                    Some(Ok(Message::Text(text))) => {
                        let value: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                        match value["event"].as_str() {
                            Some("media") => {
                                let payload = value["media"]["payload"].as_str().unwrap_or_default();
                                let audio = BASE64.decode(payload).expect("the server sends base64");
                                record.media_received += 1;
                                let arrived = tokio::time::Instant::now();
                                let (first, count) = utterance.get_or_insert((arrived, 0));
                                let due = *first + Duration::from_millis(20) * *count;
                                record.media_late_max = record.media_late_max.max(arrived.saturating_duration_since(due));
                                record.media_early_max = record.media_early_max.max(due.saturating_duration_since(arrived));
                                *count += 1;
                                playback.push_back(Playback::Frame(audio));
                            }
                            Some("mark") => {
                                let name = value["mark"]["name"].as_str().unwrap_or_default().to_owned();
                                record.marks_received.push(name.clone());
                                utterance = None;
                                playback.push_back(Playback::Mark(name));
                            }
                            Some("clear") => {
                                record.clears += 1;
                                utterance = None;
                                for item in playback.drain(..) {
                                    match item {
                                        Playback::Frame(_) => record.frames_cleared += 1,
                                        Playback::Mark(name) => {
                                            outgoing.push(Message::text(mark_echo(&sid, &name, next_sequence())));
                                            record.marks_echoed.push(name);
                                        }
                                    }
                                }
                            }
                            _ => record.unexpected.push(text.as_str().to_owned()),
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        record.close = frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned()));
                    }
                    Some(Ok(_)) => {}
                    None | Some(Err(_)) => {
                        // The server closed the stream: what it delivered
                        // but had not played yet is kept apart, for tests
                        // that count what was sent whatever this fake's
                        // own 20 ms clock did on a loaded machine.
                        for item in playback.drain(..) {
                            if let Playback::Frame(frame) = item {
                                record.unplayed_at_close.extend_from_slice(&frame);
                            }
                        }
                        record.ended = true;
                        record.ended_at = Some(std::time::Instant::now());
                        drop(record);
                        changed.notify_waiters();
                        return;
                    }
                }
            }
        }
        for message in outgoing.drain(..) {
            if tx.send(message).await.is_err() {
                // The server closed; keep reading what it still says.
                streaming = false;
            }
        }
        changed.notify_waiters();
    }
}

fn mark_echo(sid: &str, name: &str, sequence: String) -> String {
    json!({
        "event": "mark",
        "sequenceNumber": sequence,
        "streamSid": sid,
        "mark": {"name": name},
    })
    .to_string()
}
