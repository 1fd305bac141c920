//! Shared by the WebRTC tests and the sessions benchmark: the parrot
//! pipeline, the sample speech, a call run in the background, the data
//! channel's events, and audio comparison.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use voxpipe::audio::{OpusDecoder, read_wav};
use voxpipe::config::PipelineConfig;
use voxpipe::frame::AudioFrame;
use voxpipe::pipeline::SessionClock;
use voxpipe::processors::ProcessorRegistry;
use voxpipe::session::{SessionOptions, SessionReport, SessionSetup, new_session_id, run_session};
use voxpipe::transport::webrtc::{
    Answer, ClientPeer, OfferRequest, ReceivedAudio, WebRtcSignalling,
};

pub(crate) const RATE: u32 = 16_000;
const FRAME: usize = 320;

/// `pipelines/parrot.toml`: the Silero VAD and the parrot, at 16 kHz.
pub(crate) fn parrot_config() -> PipelineConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/parrot.toml");
    voxpipe::config::load_pipeline(&path, &[], &ProcessorRegistry::builtin())
        .expect("the parrot pipeline is valid")
}

/// The sample speech at 16 kHz: 1.5 s of silence, "Hello, can you hear
/// me?", 1.5 s of silence, and two more utterances.
pub(crate) fn sample_speech() -> Vec<i16> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples/hello.wav");
    let wav = read_wav(&path).expect("the sample speech is there");
    assert_eq!(wav.sample_rate, 16_000);
    wav.to_mono()
}

/// Decodes received packets, in sequence order, to 48 kHz PCM.
pub(crate) fn decode(packets: &[ReceivedAudio]) -> Vec<i16> {
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
pub(crate) fn envelope(samples: &[i16], window: usize) -> Vec<f64> {
    samples
        .chunks(window)
        .map(|w| f64::from(voxpipe::audio::pcm::rms(w)))
        .collect()
}

/// The best Pearson correlation of `b` against `a` over lags `0..max_lag`
/// (in windows), and that lag.
pub(crate) fn best_correlation(a: &[f64], b: &[f64], max_lag: usize) -> (f64, usize) {
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

/// Starts a call for `offer` and runs its session in the background.
pub(crate) async fn start_call(
    signalling: &WebRtcSignalling,
    offer: OfferRequest,
) -> (
    Answer,
    BTreeMap<String, String>,
    tokio::task::JoinHandle<SessionReport>,
) {
    let session_id: Arc<str> = new_session_id().into();
    let (answer, mut call) = signalling.accept(offer, session_id.clone()).await.unwrap();
    assert_eq!(answer.pc_id, *session_id, "the pc_id is the session id");
    assert_eq!(answer.kind, "answer");
    assert!(
        answer.sdp.contains("a=candidate") && answer.sdp.contains("127.0.0.1"),
        "the answer carries a loopback host candidate:\n{}",
        answer.sdp
    );
    let parameters = call.custom_parameters().clone();
    let config = parrot_config();
    let session = tokio::spawn(async move {
        let mut setup = SessionSetup::for_pipeline(&config, session_id);
        setup.custom_parameters = call.custom_parameters().clone();
        let ends = call.take_ends().unwrap();
        let report = run_session(
            &config,
            ends,
            SessionOptions {
                setup,
                clock: SessionClock::wall(),
                observers: vec![call.observer()],
            },
        )
        .await
        .unwrap();
        call.close().await;
        report
    });
    (answer, parameters, session)
}

/// Sends `samples` at 16 kHz in real time, 20 ms per frame.
pub(crate) async fn speak(client: &ClientPeer, samples: &[i16], start: Duration) -> Duration {
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

pub(crate) fn drain<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> Vec<T> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

/// The data channel's messages as they arrive, with when.
#[derive(Clone)]
pub(crate) struct Events {
    log: Arc<Mutex<Vec<(Instant, Value)>>>,
    changed: Arc<Notify>,
}

impl Events {
    /// Collects `messages` in the background.
    pub(crate) fn collect(mut messages: mpsc::UnboundedReceiver<String>) -> Self {
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
    pub(crate) fn names(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, v)| v["event"].as_str().map(str::to_owned))
            .collect()
    }

    /// The first message matching `want`, waiting up to `timeout` for it.
    pub(crate) async fn wait_for(
        &self,
        want: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Option<(Instant, Value)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let found = self
                .log
                .lock()
                .unwrap()
                .iter()
                .find(|(_, v)| want(v))
                .cloned();
            if found.is_some() {
                return found;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }

    /// The first event named `name`, waiting up to `timeout`.
    pub(crate) async fn event(&self, name: &str, timeout: Duration) -> Option<(Instant, Value)> {
        self.wait_for(|v| v["event"] == name, timeout).await
    }
}
