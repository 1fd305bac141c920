//! WebRTC calls to `voxpipe serve` beyond the happy path: typed text and
//! interruptions, a burst of page messages, audio flooded faster than real
//! time, mute, a peer that stops sending, a connection restarted by
//! the browser, trickled candidates, the idle timeout, capacity, and bad
//! signalling. Offers whose client went away before the answer are in
//! `webrtc_abandoned_offers`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::server::TestServer;
use support::signal::sample_speech;
use support::webrtc::{
    PEER_CONNECTIONS, RATE, answer, connected_client, drain, patch_offer, post_offer, speak,
};
use voxpipe::frame::AudioFrame;
use voxpipe::transport::webrtc::{ClientPeer, OfferRequest};

const WAIT: Duration = Duration::from_secs(20);

/// "Hello, can you hear me?" and a little silence around it.
fn utterance() -> Vec<i16> {
    let speech = sample_speech();
    speech[RATE as usize * 14 / 10..RATE as usize * 32 / 10].to_vec()
}

fn silence(secs: f64) -> Vec<i16> {
    vec![0; (f64::from(RATE) * secs) as usize]
}

async fn call(server: &TestServer) -> (ClientPeer, String, support::webrtc::Events) {
    let (client, offer) = ClientPeer::offer().await.unwrap();
    let (client, answer, events) = connected_client(&server.url(""), offer, client).await;
    (client, answer.pc_id, events)
}

fn offer_json(sdp: &str, kind: &str) -> OfferRequest {
    OfferRequest {
        sdp: sdp.to_owned(),
        kind: kind.to_owned(),
        pc_id: None,
        restart_pc: None,
        request_data: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_text_interrupts_the_bot_and_the_audio_stops_at_once() {
    let server = TestServer::parrot(&[]).await;
    let (mut client, _, events) = call(&server).await;
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
    let sessions = server.sessions.ended(1, WAIT).await;
    assert_eq!(sessions[0].end_reason.as_deref(), Some("hangup"));
    assert!(sessions[0].interruptions >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_page_messages_is_held_back_not_dropped() {
    let server = TestServer::parrot(&[]).await;
    let (client, _, events) = call(&server).await;
    // Several times what the server queues: the page is held back by
    // SCTP, and every message still arrives, in order.
    for k in 0..300 {
        client
            .send_message(&format!(r#"{{"type":"text","text":"message {k}"}}"#))
            .await
            .unwrap();
    }
    events
        .wait_for(
            |v| v["event"] == "transcription" && v["text"] == "message 299",
            Duration::from_secs(10),
        )
        .await
        .expect("the last message arrives");
    let transcriptions = events
        .names()
        .iter()
        .filter(|n| *n == "transcription")
        .count();
    assert_eq!(transcriptions, 300);
    client.close().await;
    server.sessions.ended(1, WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_flooded_faster_than_real_time_is_dropped_and_the_call_goes_on() {
    let server = TestServer::parrot(&[]).await;
    let (client, _, events) = call(&server).await;
    // 20 s of audio as fast as the client sends it: beyond real time plus
    // the 2 s allowance, it is dropped and counted, not decoded and queued.
    let frame = vec![0_i16; RATE as usize / 50];
    for n in 0..1_000u32 {
        let pts = Duration::from_millis(20) * n;
        client
            .send_audio(&AudioFrame::from_samples(&frame, RATE, 1, pts))
            .await
            .unwrap();
        tokio::task::yield_now().await;
    }
    let dropped = r#"voxpipe_errors_total{kind="media_ahead_of_real_time",source="webrtc"}"#;
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut count = 0.0;
    while count < 100.0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        count = server.metric(dropped).await;
    }
    assert!(
        count >= 100.0,
        "flooded packets dropped and counted: {count}"
    );
    // The call goes on.
    client
        .send_message(r#"{"type":"text","text":"still here"}"#)
        .await
        .unwrap();
    events
        .wait_for(
            |v| v["event"] == "transcription" && v["text"] == "still here",
            WAIT,
        )
        .await
        .expect("the call still answers");
    client.close().await;
    server.sessions.ended(1, WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_muted_microphone_is_not_heard() {
    let server = TestServer::parrot(&[]).await;
    let (client, _, events) = call(&server).await;

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
    server.sessions.ended(1, WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_sending_after_speaking_still_gets_its_reply() {
    // As a peer playing a file does at the file's end: no more packets,
    // not even silent ones, and the connection stays up.
    let server = TestServer::parrot(&[]).await;
    let (client, _, events) = call(&server).await;
    speak(&client, &utterance(), Duration::ZERO).await;
    let (stopped, _) = events
        .event("user_stopped_speaking", Duration::from_secs(5))
        .await
        .expect("the turn ends without any more audio");
    let (replied, _) = events
        .event("bot_started_speaking", Duration::from_secs(5))
        .await
        .expect("the parrot replies");
    assert!(replied >= stopped);
    let sessions = server.sessions.all();
    assert_eq!(sessions[0].end_reason, None, "the call goes on");
    client.close().await;
    server.sessions.ended(1, WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_connection_carries_the_same_session_on() {
    let server = TestServer::parrot(&[]).await;
    let (first, pc_id, _) = call(&server).await;

    // The browser gave up on its connection and made a new one.
    let (second, offer) = ClientPeer::offer().await.unwrap();
    let offer = OfferRequest {
        pc_id: Some(pc_id.clone()),
        restart_pc: Some(true),
        ..offer
    };
    let (mut second, answer, events) = connected_client(&server.url(""), offer, second).await;
    assert_eq!(answer.pc_id, pc_id);
    let mut audio = second.take_audio().unwrap();
    first.close().await; // the old connection's goodbye must not end the call

    let end = speak(&second, &utterance(), Duration::ZERO).await;
    speak(&second, &silence(2.0), end).await;
    // On a loaded machine the reply may still be on its way: wait for it.
    let mut received = drain(&mut audio).len();
    let deadline = tokio::time::Instant::now() + WAIT;
    while received <= 40 {
        match tokio::time::timeout_at(deadline, audio.recv()).await {
            Ok(Some(_)) => received += 1,
            _ => break,
        }
    }
    assert!(received > 40, "the parrot answers on the new connection");
    assert!(
        events.event("user_stopped_speaking", WAIT).await.is_some(),
        "{:?}",
        events.names()
    );
    let sessions = server.sessions.all();
    assert_eq!(sessions.len(), 1, "one session throughout");
    assert_eq!(
        sessions[0].end_reason, None,
        "it outlived the first connection"
    );

    // An offer naming the live call by its id (which logs, the store and
    // webhooks carry), not by its pc_id, cannot take it over: it starts a
    // new call, as any name no live call has does.
    let call_id = sessions[0].session_id.to_string();
    assert_ne!(call_id, pc_id);
    let (stranger, offer) = ClientPeer::offer().await.unwrap();
    let offer = OfferRequest {
        pc_id: Some(call_id.clone()),
        restart_pc: Some(true),
        ..offer
    };
    let (stranger, answer, _) = connected_client(&server.url(""), offer, stranger).await;
    assert_ne!(answer.pc_id, call_id);
    assert_ne!(answer.pc_id, pc_id);
    assert_eq!(server.sessions.all().len(), 2);
    assert_eq!(
        server.sessions.all()[0].end_reason,
        None,
        "the call goes on"
    );

    second.close().await;
    stranger.close().await;
    let ended = server.sessions.ended(2, WAIT).await;
    assert!(
        ended
            .iter()
            .all(|s| s.end_reason.as_deref() == Some("hangup"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_candidates_reach_the_call_and_bad_ones_are_refused() {
    let server = TestServer::parrot(&[]).await;
    let base = server.url("");
    let (client, offer) = ClientPeer::offer().await.unwrap();
    let candidates: Vec<serde_json::Value> = offer
        .sdp
        .lines()
        .filter_map(|l| l.strip_prefix("a="))
        .filter(|l| l.starts_with("candidate:"))
        .map(|c| json!({"candidate": c, "sdp_mid": "0", "sdp_mline_index": 0}))
        .collect();
    assert!(!candidates.is_empty());
    let (client, answer, _) = connected_client(&base, offer, client).await;
    let pc_id = answer.pc_id;

    let patch = |candidates: serde_json::Value| json!({"pc_id": pc_id, "candidates": candidates});
    assert_eq!(patch_offer(&base, &patch(json!(candidates))).await, 200);
    let end_of_candidates = json!([{"candidate": "", "sdp_mid": "0", "sdp_mline_index": 0}]);
    assert_eq!(patch_offer(&base, &patch(end_of_candidates)).await, 200);
    let garbage = json!([{"candidate": "candidate:not a candidate", "sdp_mid": "0"}]);
    assert_eq!(patch_offer(&base, &patch(garbage)).await, 400);
    let unknown = json!({"pc_id": "nobody", "candidates": []});
    assert_eq!(patch_offer(&base, &unknown).await, 404);
    assert_eq!(patch_offer(&base, &json!({"candidates": []})).await, 400);

    // A passive TCP candidate would have the server dial its address: it
    // is ignored (this server's candidates are UDP).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tcp = json!([{
        "candidate": format!("candidate:9 1 tcp 1518280447 127.0.0.1 {port} typ host tcptype passive"),
        "sdp_mid": "0",
        "sdp_mline_index": 0
    }]);
    assert_eq!(patch_offer(&base, &patch(tcp)).await, 200);
    let dialled = tokio::time::timeout(Duration::from_millis(500), listener.accept()).await;
    assert!(
        dialled.is_err(),
        "the server dialled a page's TCP candidate"
    );

    // A connection takes a bounded number of candidates.
    let many = |first: usize| -> serde_json::Value {
        (first..first + 64)
            .map(|i| {
                json!({
                    "candidate": format!("candidate:{i} 1 udp 2130706431 127.0.0.1 {} typ host", 20_000 + i),
                    "sdp_mid": "0",
                    "sdp_mline_index": 0
                })
            })
            .collect()
    };
    assert_eq!(patch_offer(&base, &patch(many(0))).await, 200);
    assert_eq!(patch_offer(&base, &patch(many(64))).await, 400, "over 128");
    client.close().await;
    server.sessions.ended(1, WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_ends_its_session_after_the_idle_timeout() {
    let server = TestServer::parrot(&["transport.webrtc.idle_timeout_secs=2"]).await;
    let (client, _, _) = call(&server).await;
    let sessions = server.sessions.ended(1, WAIT).await;
    assert_eq!(sessions[0].end_reason.as_deref(), Some("idle_timeout"));
    assert!(!sessions[0].cancelled, "ended gracefully: turns are kept");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_keeps_sending_outlives_the_idle_timeout() {
    let server = TestServer::parrot(&["transport.webrtc.idle_timeout_secs=1"]).await;
    let (client, _, _) = call(&server).await;
    speak(&client, &silence(2.5), Duration::ZERO).await;
    let sessions = server.sessions.all();
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        sessions[0].end_reason, None,
        "audio keeps the call alive past the timeout"
    );
    let sessions = server.sessions.ended(1, WAIT).await;
    assert_eq!(sessions[0].end_reason.as_deref(), Some("idle_timeout"));
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_refuses_new_calls_but_renegotiates_live_ones() {
    let server = TestServer::parrot(&["server.max_sessions=1"]).await;
    let base = server.url("");
    let (first, offer) = ClientPeer::offer().await.unwrap();
    let renegotiation = offer.clone();
    let (first, answer, _) = connected_client(&base, offer, first).await;

    let (_second, offer) = ClientPeer::offer().await.unwrap();
    let refused = post_offer(&base, &offer).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "5");

    // The same offer again, on the live call: no new slot needed.
    let again = OfferRequest {
        pc_id: Some(answer.pc_id.clone()),
        ..renegotiation
    };
    assert_eq!(self::answer(&base, &again).await.pc_id, answer.pc_id);
    first.close().await;
    server.sessions.ended(1, WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_offers_are_refused_with_a_reason() {
    let server = TestServer::parrot(&[]).await;
    let base = server.url("");
    let status = |offer: OfferRequest| {
        let base = base.clone();
        async move { post_offer(&base, &offer).await.status().as_u16() }
    };
    assert_eq!(status(offer_json("v=0", "answer")).await, 400);
    assert_eq!(status(offer_json("this is not sdp", "offer")).await, 400);
    // Video only: nothing to answer with audio.
    let video_only = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendrecv\r\n\
        a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
        a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
        a=setup:actpass\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\n";
    assert_eq!(status(offer_json(video_only, "offer")).await, 400);
    // Audio without Opus: the page's fault, not a server failure.
    let pcmu_only = video_only
        .replace(
            "m=video 9 UDP/TLS/RTP/SAVPF 96",
            "m=audio 9 UDP/TLS/RTP/SAVPF 0",
        )
        .replace("a=rtpmap:96 VP8/90000", "a=rtpmap:0 PCMU/8000");
    assert_eq!(status(offer_json(&pcmu_only, "offer")).await, 400);
    let no_rtpmap = video_only
        .replace(
            "m=video 9 UDP/TLS/RTP/SAVPF 96",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        )
        .replace("a=rtpmap:96 VP8/90000\r\n", "");
    assert_eq!(status(offer_json(&no_rtpmap, "offer")).await, 400);
    let not_json = reqwest::Client::new()
        .post(format!("{base}/api/offer"))
        .header("content-type", "application/json")
        .body("{\"sdp\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    assert!(server.sessions.all().is_empty(), "no session was started");
    assert_eq!(server.metric("voxpipe_sessions_active").await, 0.0);
    assert_eq!(
        server.metric(PEER_CONNECTIONS).await,
        0.0,
        "the connections of refused offers are closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_an_ended_call_is_a_new_session_that_a_pipecat_client_hears_in_rtvi() {
    let server = TestServer::parrot(&[]).await;
    let base = server.url("");
    let (first, pc_id, _) = call(&server).await;
    first.close().await;
    server.sessions.ended(1, WAIT).await;
    // The page was reconnecting meanwhile: its restart names the ended call.
    let restart = |offer: OfferRequest| OfferRequest {
        pc_id: Some(pc_id.clone()),
        restart_pc: Some(true),
        ..offer
    };
    let typed = |text: &str| json!({"type": "text", "text": text}).to_string();

    // voxpipe's own page sends no keep-alive: JSON lines, as before.
    let (page, offer) = ClientPeer::offer().await.unwrap();
    let (page, answer, events) = connected_client(&base, restart(offer), page).await;
    assert_ne!(answer.pc_id, pc_id, "a new call");
    page.send_message(&typed("hello")).await.unwrap();
    events
        .wait_for(
            |v| v["event"] == "transcription" && v["text"] == "hello",
            WAIT,
        )
        .await
        .expect("the typed text, as a JSON line");
    assert!(events.matching(|v| v["label"] == "rtvi-ai").is_empty());
    page.close().await;
    server.sessions.ended(2, WAIT).await;

    // A Pipecat client said client-ready on its first call only; its
    // keep-alive shows it: the new session speaks RTVI, without bot-ready.
    let (client, offer) = ClientPeer::offer().await.unwrap();
    let (client, _, events) = connected_client(&base, restart(offer), client).await;
    client.send_message("ping: 1712345678").await.unwrap();
    client.send_message(&typed("again")).await.unwrap();
    events
        .wait_for(
            |v| {
                v["label"] == "rtvi-ai"
                    && v["type"] == "user-transcription"
                    && v["data"]["text"] == "again"
            },
            WAIT,
        )
        .await
        .expect("the typed text, as RTVI");
    assert!(events.matching(|v| v["type"] == "bot-ready").is_empty());
    client.close().await;
    let ended = server.sessions.ended(3, WAIT).await;
    assert!(
        ended
            .iter()
            .all(|s| s.end_reason.as_deref() == Some("hangup"))
    );
}
