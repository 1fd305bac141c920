//! WebRTC calls from the tests and the sessions benchmark: signalling over
//! HTTP as a page does it, speaking in real time, the data channel's events,
//! and comparing the audio that came back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use voxpipe::audio::OpusDecoder;
use voxpipe::frame::AudioFrame;
use voxpipe::transport::webrtc::{Answer, ClientPeer, OfferRequest, ReceivedAudio};

use super::server::TestServer;
use super::wait::{eventually, until_notified};

pub const RATE: u32 = 16_000;
const FRAME: usize = 320;

/// Decodes received packets, in sequence order, to 48 kHz PCM.
pub fn decode(packets: &[ReceivedAudio]) -> Vec<i16> {
    let mut sorted: Vec<&ReceivedAudio> = packets.iter().collect();
    sorted.sort_by_key(|p| p.packet.header.sequence_number);
    let mut decoder = OpusDecoder::new().expect("decoder");
    let mut pcm = Vec::new();
    for p in sorted {
        decoder
            .decode(&p.packet.payload, &mut pcm)
            .expect("valid Opus");
    }
    pcm
}

/// RMS per `window` samples.
pub fn envelope(samples: &[i16], window: usize) -> Vec<f64> {
    samples
        .chunks(window)
        .map(|w| f64::from(voxpipe::audio::pcm::rms(w)))
        .collect()
}

/// The best Pearson correlation of `b` against `a` over lags `0..max_lag`
/// (in windows), and that lag.
pub fn best_correlation(a: &[f64], b: &[f64], max_lag: usize) -> (f64, usize) {
    (0..max_lag.min(b.len()))
        .map(|lag| (pearson(a, &b[lag..]), lag))
        .max_by(|x, y| x.0.total_cmp(&y.0))
        .unwrap_or((0.0, 0))
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    if n < 2 {
        return 0.0;
    }
    let (a, b) = (&a[..n], &b[..n]);
    let mean = |x: &[f64]| x.iter().sum::<f64>() / n as f64;
    let (ma, mb) = (mean(a), mean(b));
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        ab += (a[i] - ma) * (b[i] - mb);
        aa += (a[i] - ma).powi(2);
        bb += (b[i] - mb).powi(2);
    }
    ab / (aa * bb).sqrt().max(1e-12)
}

/// Sends `samples` at 16 kHz in real time, 20 ms per frame.
pub async fn speak(client: &ClientPeer, samples: &[i16], start: Duration) -> Duration {
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    let mut pts = start;
    for chunk in samples.chunks(FRAME) {
        ticker.tick().await;
        let mut frame = chunk.to_vec();
        frame.resize(FRAME, 0);
        client
            .send_audio(&AudioFrame::from_samples(&frame, RATE, 1, pts))
            .await
            .unwrap();
        pts += Duration::from_millis(20);
    }
    pts
}

pub fn drain<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> Vec<T> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

/// The data channel's messages as they arrive, with when.
#[derive(Clone)]
pub struct Events {
    log: Arc<Mutex<Vec<(Instant, Value)>>>,
    changed: Arc<Notify>,
}

impl Events {
    /// Collects `messages` in the background.
    pub fn collect(mut messages: mpsc::UnboundedReceiver<String>) -> Self {
        let events = Events {
            log: Arc::default(),
            changed: Arc::default(),
        };
        let collector = events.clone();
        tokio::spawn(async move {
            while let Some(text) = messages.recv().await {
                let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
                collector.log.lock().unwrap().push((Instant::now(), value));
                collector.changed.notify_waiters();
            }
        });
        events
    }

    /// The `event` names so far, in order.
    pub fn names(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, v)| v["event"].as_str().map(str::to_owned))
            .collect()
    }

    /// The first message matching `want`, waiting up to `timeout` for it.
    pub async fn wait_for(
        &self,
        want: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Option<(Instant, Value)> {
        until_notified(&self.changed, timeout, || {
            self.log
                .lock()
                .unwrap()
                .iter()
                .find(|(_, v)| want(v))
                .cloned()
        })
        .await
    }

    /// Every message so far matching `want`.
    pub fn matching(&self, want: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, v)| want(v))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The first event named `name`, waiting up to `timeout`.
    pub async fn event(&self, name: &str, timeout: Duration) -> Option<(Instant, Value)> {
        self.wait_for(|v| v["event"] == name, timeout).await
    }
}

/// The server's gauge of the WebRTC peer connections it holds open.
pub const PEER_CONNECTIONS: &str = r#"voxpipe_peer_connections{transport="webrtc"}"#;

/// Whether the server comes to hold peer connections as `holds` says
/// within `limit` (its gauge, read from `/metrics`).
pub async fn peer_connections(
    server: &TestServer,
    limit: Duration,
    holds: impl Fn(f64) -> bool,
) -> bool {
    eventually(limit, async || holds(server.metric(PEER_CONNECTIONS).await)).await
}

/// A STUN server that never answers: a connection's candidate gathering
/// waits on it for the whole gather timeout, so the server's every answer
/// takes that long. Keep it for as long as the server runs.
pub struct SilentStun {
    _socket: std::net::UdpSocket,
    addr: std::net::SocketAddr,
}

impl SilentStun {
    pub fn bind() -> Self {
        let socket = std::net::UdpSocket::bind(super::net::LOOPBACK).expect("a free loopback port");
        let addr = socket.local_addr().expect("a bound address");
        SilentStun {
            _socket: socket,
            addr,
        }
    }

    /// The override giving the server this STUN server.
    pub fn ice_servers(&self) -> String {
        format!(
            r#"transport.webrtc.ice_servers=[{{urls=["stun:{}"]}}]"#,
            self.addr
        )
    }
}

/// `POST /api/offer` at `base` (`http://host:port`) with the JSON a
/// Pipecat client sends: `requestData` in camel case.
pub async fn post_offer(base: &str, offer: &OfferRequest) -> reqwest::Response {
    post_offer_to(&format!("{base}/api/offer"), offer).await
}

/// `POST` of `offer` to the offer endpoint at `url` (`/api/offer`, or a
/// session's own `/sessions/{id}/api/offer`).
pub async fn post_offer_to(url: &str, offer: &OfferRequest) -> reqwest::Response {
    let body = serde_json::json!({
        "sdp": offer.sdp,
        "type": offer.kind,
        "pc_id": offer.pc_id,
        "restart_pc": offer.restart_pc.unwrap_or(false),
        "requestData": offer.request_data,
    });
    reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("the server answers")
}

/// Offers `offer` and reads the answer, which must be a 200.
pub async fn answer(base: &str, offer: &OfferRequest) -> Answer {
    let response = post_offer(base, offer).await;
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).expect("an answer")
}

/// `PATCH /api/offer` with `body`, giving the status.
pub async fn patch_offer(base: &str, body: &Value) -> u16 {
    reqwest::Client::new()
        .patch(format!("{base}/api/offer"))
        .json(body)
        .send()
        .await
        .expect("the server answers")
        .status()
        .as_u16()
}

/// A client peer connected to the server at `base`, its events collected.
pub async fn connected_client(
    base: &str,
    offer: OfferRequest,
    mut client: ClientPeer,
) -> (ClientPeer, Answer, Events) {
    let answer = answer(base, &offer).await;
    client.accept(&answer).await.unwrap();
    client
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap();
    let events = Events::collect(client.take_messages().unwrap());
    (client, answer, events)
}

/// Says the sample speech ("Hello, can you hear me?" between silences) in
/// real time, then listens while the parrot repeats it; the audio that
/// came back meanwhile.
pub async fn speak_to_the_parrot(
    client: &ClientPeer,
    audio: &mut mpsc::UnboundedReceiver<ReceivedAudio>,
) -> Vec<ReceivedAudio> {
    let speech = super::signal::sample_speech();
    let clip = &speech[..RATE as usize * 9 / 2];
    let end = speak(client, clip, Duration::ZERO).await;
    speak(client, &vec![0; RATE as usize * 3 / 2], end).await;
    drain(audio)
}

/// How well the reply's energy envelope follows the utterance in the
/// sample speech: the best correlation and its lag in 10 ms windows.
pub fn parrot_correlation(received: &[ReceivedAudio]) -> (f64, usize) {
    let speech = super::signal::sample_speech();
    let reply = envelope(&decode(received), 480); // 10 ms at 48 kHz
    let utterance = &speech[RATE as usize * 13 / 10..RATE as usize * 7 / 2];
    best_correlation(&reply, &envelope(utterance, 160), 50) // 10 ms at 16 kHz
}
