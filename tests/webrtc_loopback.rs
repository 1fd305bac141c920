//! A WebRTC client peer calls a parrot session over loopback: speech goes
//! in as Opus over RTP, the same speech comes back, and the data channel
//! carries the session's events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod webrtc_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use voxpipe::frame::AudioFrame;
use voxpipe::pipeline::SessionClock;
use voxpipe::session::{SessionOptions, SessionReport, SessionSetup, new_session_id, run_session};
use voxpipe::transport::webrtc::{
    ClientPeer, OfferRequest, ReceivedAudio, WebRtcSettings, WebRtcSignalling,
};
use webrtc_support::{best_correlation, decode, envelope, parrot_config, sample_speech};

const RATE: u32 = 16_000;
const FRAME: usize = 320;

/// Starts a call for `offer` and runs its session in the background.
async fn start_call(
    signalling: &WebRtcSignalling,
    offer: OfferRequest,
) -> (
    voxpipe::transport::webrtc::Answer,
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
async fn speak(client: &mut ClientPeer, samples: &[i16], start: Duration) -> Duration {
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

fn drain<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> Vec<T> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

fn event_names(messages: &[String]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| serde_json::from_str::<Value>(m).ok())
        .filter_map(|v| v["event"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parrot_answers_a_client_peer_over_loopback() {
    let signalling = WebRtcSignalling::new(WebRtcSettings::loopback(), RATE);
    let (mut client, offer) = ClientPeer::offer().await.unwrap();
    let offer = OfferRequest {
        request_data: Some(serde_json::json!({"user": "ada"})),
        ..offer
    };
    let (answer, parameters, session) = start_call(&signalling, offer).await;
    assert_eq!(
        parameters["user"], "ada",
        "request_data reaches the session"
    );
    assert_eq!(signalling.calls(), 1);
    client.accept(&answer).await.unwrap();
    client
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap();
    let mut audio = client.take_audio().unwrap();
    let mut messages = client.take_messages().unwrap();

    // Silence, "Hello, can you hear me?", then silence while the parrot
    // repeats it.
    let speech = sample_speech();
    let clip = &speech[..RATE as usize * 9 / 2];
    let end = speak(&mut client, clip, Duration::ZERO).await;
    speak(&mut client, &vec![0; RATE as usize * 3 / 2], end).await;

    let received: Vec<ReceivedAudio> = drain(&mut audio);
    client.close().await;
    let report = tokio::time::timeout(Duration::from_secs(10), session)
        .await
        .expect("the session ends when the client hangs up")
        .unwrap();
    assert_eq!(report.end_reason, "hangup");
    assert!(report.fatal_error.is_none());
    assert_eq!(signalling.calls(), 0, "a closed call leaves the registry");

    // The reply is one spurt of contiguous packets.
    assert!(received.len() > 50, "{} packets", received.len());
    let mut sorted: Vec<&ReceivedAudio> = received.iter().collect();
    sorted.sort_by_key(|p| p.packet.header.sequence_number);
    assert!(
        sorted[0].packet.header.marker,
        "a spurt starts with a marker"
    );
    for pair in sorted.windows(2) {
        let (a, b) = (&pair[0].packet.header, &pair[1].packet.header);
        assert_eq!(b.sequence_number, a.sequence_number.wrapping_add(1));
        assert_eq!(b.timestamp.wrapping_sub(a.timestamp), 960, "20 ms apart");
    }

    // ... and it is the utterance: same energy envelope.
    let reply = decode(&received);
    let reply_env = envelope(&reply, 480); // 10 ms at 48 kHz
    let utterance = &speech[RATE as usize * 13 / 10..RATE as usize * 7 / 2];
    let input_env = envelope(utterance, 160); // 10 ms at 16 kHz
    let (correlation, lag) = best_correlation(&reply_env, &input_env, 50);
    assert!(
        correlation > 0.9,
        "the reply follows the utterance: correlation {correlation:.3} at {lag}0 ms"
    );
    let reply_secs = reply.len() as f64 / 48_000.0;
    assert!(
        (1.0..2.5).contains(&reply_secs),
        "the reply lasts as long as the utterance: {reply_secs:.2} s"
    );

    // The data channel carried the session's events.
    let messages = drain(&mut messages);
    let names = event_names(&messages);
    for expected in [
        "session_started",
        "user_started_speaking",
        "user_stopped_speaking",
        "bot_started_speaking",
        "turn_latency",
        "bot_stopped_speaking",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "no {expected} in {names:?}"
        );
    }
}
