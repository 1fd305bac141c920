//! A WebRTC client peer calls a parrot session over loopback: speech goes
//! in as Opus over RTP, the same speech comes back, and the data channel
//! carries the session's events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod webrtc_support;

use std::time::Duration;

use voxpipe::transport::webrtc::{
    ClientOptions, ClientPeer, OfferRequest, ReceivedAudio, WebRtcSettings, WebRtcSignalling,
};
use webrtc_support::{
    Events, RATE, best_correlation, decode, drain, envelope, sample_speech, speak, start_call,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parrot_answers_a_client_peer_over_loopback() {
    let signalling = WebRtcSignalling::new(WebRtcSettings::loopback(), RATE);
    // Offered as Pipecat's clients offer: audio, then video, then the
    // `chat` channel; the server answers the audio and rejects the video.
    let (mut client, offer) = ClientPeer::offer_with(ClientOptions { video: true })
        .await
        .unwrap();
    assert!(offer.sdp.contains("m=video"));
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
    let events = Events::collect(client.take_messages().unwrap());

    // Silence, "Hello, can you hear me?", then silence while the parrot
    // repeats it.
    let speech = sample_speech();
    let clip = &speech[..RATE as usize * 9 / 2];
    let end = speak(&client, clip, Duration::ZERO).await;
    speak(&client, &vec![0; RATE as usize * 3 / 2], end).await;

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
    let names = events.names();
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
