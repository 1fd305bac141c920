//! WebRTC calls over loopback beyond the happy path: typed text and
//! interruptions, mute, a connection restarted by the browser, trickled
//! candidates, the idle timeout, and bad signalling.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod webrtc_support;

use std::time::Duration;

use voxpipe::frame::AudioFrame;
use voxpipe::transport::webrtc::{
    CandidatePatch, ClientPeer, OfferRequest, PatchRequest, SignallingError, WebRtcSettings,
    WebRtcSignalling,
};
use webrtc_support::{Events, RATE, drain, sample_speech, speak, start_call};

/// "Hello, can you hear me?" and a little silence around it.
fn utterance() -> Vec<i16> {
    let speech = sample_speech();
    speech[RATE as usize * 14 / 10..RATE as usize * 32 / 10].to_vec()
}

fn silence(secs: f64) -> Vec<i16> {
    vec![0; (f64::from(RATE) * secs) as usize]
}

async fn connected_client(
    signalling: &WebRtcSignalling,
) -> (
    ClientPeer,
    Events,
    tokio::task::JoinHandle<voxpipe::session::SessionReport>,
) {
    let (mut client, offer) = ClientPeer::offer().await.unwrap();
    let (answer, _, session) = start_call(signalling, offer).await;
    client.accept(&answer).await.unwrap();
    client
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap();
    let events = Events::collect(client.take_messages().unwrap());
    (client, events, session)
}

async fn ended(
    session: tokio::task::JoinHandle<voxpipe::session::SessionReport>,
) -> voxpipe::session::SessionReport {
    tokio::time::timeout(Duration::from_secs(10), session)
        .await
        .expect("the session ends")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_text_interrupts_the_bot_and_the_audio_stops_at_once() {
    let signalling = WebRtcSignalling::new(WebRtcSettings::loopback(), RATE);
    let (mut client, events, session) = connected_client(&signalling).await;
    let mut audio = client.take_audio().unwrap();

    let mut pts = speak(&client, &utterance(), Duration::ZERO).await;
    // Keep the microphone going (silence); 400 ms into the bot's reply,
    // type something.
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    let mut frames_since_reply: Option<u32> = None;
    for _ in 0..150 {
        ticker.tick().await;
        client
            .send_audio(&AudioFrame::from_samples(&[0; 320], RATE, 1, pts))
            .await
            .unwrap();
        pts += Duration::from_millis(20);
        if frames_since_reply.is_none()
            && events.names().iter().any(|n| n == "bot_started_speaking")
        {
            frames_since_reply = Some(0);
        }
        if let Some(n) = &mut frames_since_reply {
            *n += 1;
            if *n == 20 {
                client
                    .send_message(r#"{"type":"text","text":"stop please"}"#)
                    .await
                    .unwrap();
            }
        }
    }
    assert!(
        frames_since_reply.is_some_and(|n| n > 20),
        "the parrot spoke"
    );
    let (interrupted_at, interruption) = events
        .event("interruption", Duration::from_secs(1))
        .await
        .expect("the typed text interrupts the bot");
    assert!(
        interruption["cut_ms"].as_u64().unwrap() > 500,
        "{interruption}"
    );
    let (_, transcript) = events
        .event("transcription", Duration::from_secs(1))
        .await
        .expect("the text enters the pipeline");
    assert_eq!(transcript["text"], "stop please");

    // Nothing scheduled before the interruption leaves after it: at most
    // the frame in flight, and no packet well after the event.
    let late: Vec<_> = drain(&mut audio)
        .into_iter()
        .filter(|p| p.arrived > interrupted_at + Duration::from_millis(60))
        .collect();
    assert!(
        late.is_empty(),
        "{} packets after the interruption",
        late.len()
    );
    client.close().await;
    assert_eq!(ended(session).await.end_reason, "hangup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_muted_microphone_is_not_heard() {
    let signalling = WebRtcSignalling::new(WebRtcSettings::loopback(), RATE);
    let (client, events, session) = connected_client(&signalling).await;

    // Pipecat's way of muting.
    client
        .send_message(
            r#"{"type":"signalling","message":{"type":"trackStatus","receiver_index":0,"enabled":false}}"#,
        )
        .await
        .unwrap();
    let end = speak(&client, &utterance(), Duration::ZERO).await;
    assert!(
        !events.names().iter().any(|n| n == "user_started_speaking"),
        "muted speech was heard: {:?}",
        events.names()
    );
    client
        .send_message(r#"{"type":"mute","muted":false}"#)
        .await
        .unwrap();
    speak(&client, &utterance(), end).await;
    events
        .event("user_started_speaking", Duration::from_secs(1))
        .await
        .expect("unmuted speech is heard");
    client.close().await;
    assert_eq!(ended(session).await.end_reason, "hangup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_connection_carries_the_same_session_on() {
    let signalling = WebRtcSignalling::new(WebRtcSettings::loopback(), RATE);
    let (first, _events, session) = connected_client(&signalling).await;

    // The browser gave up on its connection and made a new one.
    let (mut second, offer) = ClientPeer::offer().await.unwrap();
    let pc_id = signalling.pc_ids()[0].to_string();
    let offer = OfferRequest {
        pc_id: Some(pc_id.clone()),
        restart_pc: Some(true),
        ..offer
    };
    let answer = signalling
        .reoffer(offer)
        .await
        .expect("the pc_id is known")
        .unwrap();
    assert_eq!(answer.pc_id, pc_id);
    second.accept(&answer).await.unwrap();
    second
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap();
    let events = Events::collect(second.take_messages().unwrap());
    let mut audio = second.take_audio().unwrap();
    first.close().await; // the old connection's goodbye must not end the call

    let end = speak(&second, &utterance(), Duration::ZERO).await;
    speak(&second, &silence(2.0), end).await;
    assert!(
        drain(&mut audio).len() > 40,
        "the parrot answers on the new connection"
    );
    assert!(events.names().iter().any(|n| n == "user_stopped_speaking"));
    assert!(
        !session.is_finished(),
        "the session outlived the first connection"
    );
    second.close().await;
    assert_eq!(ended(session).await.end_reason, "hangup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_candidates_reach_the_call_and_bad_ones_are_refused() {
    let signalling = WebRtcSignalling::new(WebRtcSettings::loopback(), RATE);
    let (client, offer) = ClientPeer::offer().await.unwrap();
    let candidates: Vec<CandidatePatch> = offer
        .sdp
        .lines()
        .filter_map(|l| l.strip_prefix("a="))
        .filter(|l| l.starts_with("candidate:"))
        .map(|c| CandidatePatch {
            candidate: c.to_owned(),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
        })
        .collect();
    assert!(!candidates.is_empty());
    let (_answer, _, session) = start_call(&signalling, offer).await;
    let pc_id = signalling.pc_ids()[0].to_string();

    let patch = |candidates| PatchRequest {
        pc_id: pc_id.clone(),
        candidates,
    };
    signalling.patch(patch(candidates)).await.unwrap();
    let end_of_candidates = CandidatePatch {
        candidate: String::new(),
        sdp_mid: Some("0".into()),
        sdp_mline_index: Some(0),
    };
    signalling
        .patch(patch(vec![end_of_candidates]))
        .await
        .unwrap();
    let garbage = CandidatePatch {
        candidate: "candidate:not a candidate".into(),
        sdp_mid: Some("0".into()),
        sdp_mline_index: Some(0),
    };
    assert!(matches!(
        signalling.patch(patch(vec![garbage])).await,
        Err(SignallingError::BadRequest(_))
    ));
    let unknown = PatchRequest {
        pc_id: "nobody".into(),
        candidates: vec![],
    };
    assert!(matches!(
        signalling.patch(unknown).await,
        Err(SignallingError::UnknownPeer(_))
    ));
    drop(client);
    session.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_ends_its_session_after_the_idle_timeout() {
    let settings = WebRtcSettings::loopback().with_idle_timeout(Duration::from_secs(2));
    let signalling = WebRtcSignalling::new(settings, RATE);
    let (client, _events, session) = connected_client(&signalling).await;
    let report = ended(session).await;
    assert_eq!(report.end_reason, "idle_timeout");
    assert!(report.fatal_error.is_none());
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_offers_are_refused_with_a_reason() {
    let signalling = WebRtcSignalling::new(WebRtcSettings::loopback(), RATE);
    let offer = |sdp: &str, kind: &str| OfferRequest {
        sdp: sdp.to_owned(),
        kind: kind.to_owned(),
        pc_id: None,
        restart_pc: None,
        request_data: None,
    };
    assert!(matches!(
        signalling.accept(offer("v=0", "answer"), "s1".into()).await,
        Err(SignallingError::BadRequest(_))
    ));
    assert!(matches!(
        signalling
            .accept(offer("this is not sdp", "offer"), "s2".into())
            .await,
        Err(SignallingError::Negotiation(_))
    ));
    // Video only: nothing to answer with audio.
    let video_only = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendrecv\r\n\
        a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
        a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
        a=setup:actpass\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\n";
    let refused = signalling
        .accept(offer(video_only, "offer"), "s3".into())
        .await;
    assert!(
        matches!(refused, Err(SignallingError::Negotiation(_))),
        "{:?}",
        refused.map(|(answer, _)| answer)
    );
    assert_eq!(signalling.calls(), 0);
    // An offer for an unknown pc_id is a new call, not a renegotiation.
    let stranger = OfferRequest {
        pc_id: Some("nobody".into()),
        ..offer("v=0", "offer")
    };
    assert!(signalling.reoffer(stranger).await.is_none());
}
