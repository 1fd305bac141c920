//! WebRTC offers whose client went away before the answer (an HTTP server
//! drops such a request's handler): the offer's task goes on to its end,
//! leaving no connection open, no session slot taken after it, and a
//! session started by `/start` still waiting for its first offer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::server::TestServer;
use support::webrtc::{
    PEER_CONNECTIONS, SilentStun, connected_client, peer_connections, post_offer_to,
};
use voxpipe::transport::webrtc::{ClientPeer, OfferRequest};

const WAIT: Duration = Duration::from_secs(20);

/// Posts `offer` to `url` and abandons the request once the server is
/// making its connection (its count of them is above `open`): the client
/// went away before the answer, which waits for the gather timeout (its
/// STUN server is silent).
async fn abandon_offer(server: &TestServer, url: String, offer: OfferRequest, open: f64) {
    let request = tokio::spawn(async move { post_offer_to(&url, &offer).await });
    assert!(
        peer_connections(server, WAIT, |n| n > open).await,
        "the server makes a connection"
    );
    request.abort();
    let abandoned = request.await;
    assert!(
        abandoned.is_err_and(|e| e.is_cancelled()),
        "abandoned before the answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_abandoned_before_its_answer_leaves_no_connection_open() {
    let stun = SilentStun::bind();
    let servers = stun.ice_servers();
    let server = TestServer::parrot(&[&servers, "transport.webrtc.idle_timeout_secs=600"]).await;
    let url = server.url("/api/offer");

    // A new call.
    let (_client, offer) = ClientPeer::offer().await.unwrap();
    abandon_offer(&server, url.clone(), offer, 0.0).await;
    assert!(
        peer_connections(&server, WAIT, |n| n == 0.0).await,
        "the abandoned call's connection is closed"
    );
    assert!(server.sessions.all().is_empty(), "no session was started");

    // A connection restart of a live call.
    let (first, offer) = ClientPeer::offer().await.unwrap();
    let (first, answer, _) = connected_client(&server.url(""), offer, first).await;
    assert_eq!(server.metric(PEER_CONNECTIONS).await, 1.0);
    let (_second, offer) = ClientPeer::offer().await.unwrap();
    let restart = OfferRequest {
        pc_id: Some(answer.pc_id),
        restart_pc: Some(true),
        ..offer
    };
    abandon_offer(&server, url, restart, 1.0).await;
    // The restart goes on to its end: the new connection replaces the
    // old, which is closed; neither is left running unclosed.
    assert!(
        peer_connections(&server, WAIT, |n| n <= 1.0).await,
        "one connection left at most: {}",
        server.metric(PEER_CONNECTIONS).await
    );
    first.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_first_offer_was_abandoned_still_waits_for_it() {
    let stun = SilentStun::bind();
    let servers = stun.ice_servers();
    let server = TestServer::parrot(&[&servers]).await;
    let started: serde_json::Value = reqwest::Client::new()
        .post(server.url("/start"))
        .json(&json!({"transport": "webrtc"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session = started["sessionId"].as_str().unwrap();
    let url = server.url(&format!("/sessions/{session}/api/offer"));

    let (_client, offer) = ClientPeer::offer().await.unwrap();
    abandon_offer(&server, url.clone(), offer, 0.0).await;
    // The abandoned call is dropped once answered (well after its handler
    // was, at the gather timeout).
    assert!(peer_connections(&server, WAIT, |n| n == 0.0).await);

    // The client's retry finds its session.
    let (mut client, offer) = ClientPeer::offer().await.unwrap();
    let response = post_offer_to(&url, &offer).await;
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    client
        .accept(&serde_json::from_str(&text).unwrap())
        .await
        .unwrap();
    client.wait_connected(WAIT).await.unwrap();
    client.close().await;
    server.sessions.ended(1, WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_offer_keeps_its_session_slot_until_its_connection_is_dropped() {
    let stun = SilentStun::bind();
    let servers = stun.ice_servers();
    let server = TestServer::parrot(&[
        &servers,
        "server.max_sessions=1",
        // The abandoned answer is made for this long: the window in which
        // the next offer must find the slot taken, far longer than the
        // steps the test takes in it.
        "transport.webrtc.gather_timeout_ms=12000",
    ])
    .await;
    let url = server.url("/api/offer");
    let (_abandoned, offer) = ClientPeer::offer().await.unwrap();
    abandon_offer(&server, url.clone(), offer, 0.0).await;

    // The offer's task still makes its connection, with the only slot.
    assert!(
        server.metric(PEER_CONNECTIONS).await >= 1.0,
        "the abandoned connection is still being made"
    );
    let (next, offer) = ClientPeer::offer().await.unwrap();
    let refused = post_offer_to(&url, &offer).await;
    assert_eq!(refused.status(), 503, "the abandoned offer holds the slot");

    // Its answer made and nobody to take it, the call is dropped: its
    // slot is free for the next offer.
    assert!(
        peer_connections(&server, WAIT, |n| n == 0.0).await,
        "the abandoned call's connection is closed"
    );
    let (next, _, _) = connected_client(&server.url(""), offer, next).await;
    next.close().await;
    server.sessions.ended(1, WAIT).await;
    assert_eq!(
        server.sessions.all().len(),
        1,
        "one session: the abandoned offer ran none"
    );
}
