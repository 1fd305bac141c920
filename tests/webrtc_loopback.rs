//! A WebRTC client peer calls `voxpipe serve` (the parrot) over loopback:
//! speech goes in as Opus over RTP, the same speech comes back, and the
//! data channel carries the session's events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::server::TestServer;
use support::webrtc::{connected_client, decode, parrot_correlation, speak_to_the_parrot};
use voxpipe::transport::webrtc::{ClientOptions, ClientPeer, OfferRequest, ReceivedAudio};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parrot_answers_a_client_peer_over_loopback() {
    let server = TestServer::parrot(&[]).await;
    // Offered as Pipecat's clients offer: audio, then video, then the
    // `chat` channel, with `requestData`.
    let (client, offer) = ClientPeer::offer_with(ClientOptions { video: true })
        .await
        .unwrap();
    assert!(offer.sdp.contains("m=video"));
    let offer = OfferRequest {
        request_data: Some(serde_json::json!({"user": "ada"})),
        ..offer
    };
    let (mut client, answer, events) = connected_client(&server.url(""), offer, client).await;
    assert_eq!(answer.kind, "answer");
    assert!(
        answer.sdp.contains("a=candidate") && answer.sdp.contains("127.0.0.1"),
        "the answer carries a loopback host candidate:\n{}",
        answer.sdp
    );
    assert!(
        answer.sdp.contains("m=video 0 "),
        "video is rejected:\n{}",
        answer.sdp
    );
    let mut audio = client.take_audio().unwrap();

    // Silence, "Hello, can you hear me?", then silence while the parrot
    // repeats it.
    let received = speak_to_the_parrot(&client, &mut audio).await;
    client.close().await;
    let sessions = server.sessions.ended(1, WAIT).await;
    assert_eq!(sessions[0].end_reason.as_deref(), Some("hangup"));
    assert_ne!(
        sessions[0].session_id, answer.pc_id,
        "the pc_id is a capability, not the call id"
    );
    assert_eq!(
        sessions[0].custom_parameters["user"], "ada",
        "requestData reaches the session"
    );

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
    let (correlation, lag) = parrot_correlation(&received);
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

    // The server counted the call.
    let frames_in = r#"voxpipe_audio_frames_total{direction="in",transport="webrtc"}"#;
    let frames_out = r#"voxpipe_audio_frames_total{direction="out",transport="webrtc"}"#;
    assert!(server.metric(frames_in).await > 250.0);
    assert!(server.metric(frames_out).await > 50.0);
    assert_eq!(
        server
            .metric(r#"voxpipe_sessions_total{reason="hangup",transport="webrtc"}"#)
            .await,
        1.0
    );
}
