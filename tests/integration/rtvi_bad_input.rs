//! RTVI over a WebRTC call, from a Rust peer speaking as a Pipecat client
//! would: `client-ready` switches the page to RTVI, and bad input
//! (malformed JSON, unknown types, missing data, huge messages, a flood)
//! is answered with `error-response` or dropped, without costing the
//! session. (A message over 64 KiB cannot be sent: the data channel
//! refuses it at the sender; the server's own check of that limit is a
//! unit test of `messages`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::time::Duration;

use serde_json::{Value, json};
use support::server::TestServer;
use support::webrtc::{Events, connected_client};
use voxpipe::transport::webrtc::ClientPeer;

const WAIT: Duration = Duration::from_secs(10);

fn rtvi(kind: &str, id: &str, data: Value) -> String {
    json!({"label": "rtvi-ai", "type": kind, "id": id, "data": data}).to_string()
}

async fn rtvi_call(server: &TestServer) -> (ClientPeer, Events) {
    let (client, offer) = ClientPeer::offer().await.unwrap();
    let (client, _, events) = connected_client(&server.url(""), offer, client).await;
    let ready = json!({"version": "2.1.0", "about": {"library": "test"}});
    client
        .send_message(&rtvi("client-ready", "ready", ready))
        .await
        .unwrap();
    events
        .wait_for(|v| v["type"] == "bot-ready" && v["id"] == "ready", WAIT)
        .await
        .expect("bot-ready");
    (client, events)
}

fn reply_to(id: &'static str) -> impl Fn(&Value) -> bool {
    move |v: &Value| v["id"] == id && v["label"] == "rtvi-ai"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rtvi_messages_get_error_responses_and_the_session_goes_on() {
    let server = TestServer::parrot(&[]).await;
    let (client, events) = rtvi_call(&server).await;

    client.send_message("{not json").await.unwrap();
    client
        .send_message(&format!(
            r#"{{"label":"rtvi-ai","type":"send-text","id":"huge","data":{{"content":"{}"}}}}"#,
            "a".repeat(60_000)
        ))
        .await
        .unwrap();
    client
        .send_message(&rtvi("dance", "unknown", json!({})))
        .await
        .unwrap();
    client
        .send_message(&rtvi("send-text", "no-content", json!({})))
        .await
        .unwrap();
    client
        .send_message(&rtvi(
            "send-text",
            "too-long",
            json!({"content": "a".repeat(5_000)}),
        ))
        .await
        .unwrap();
    client
        .send_message(&rtvi(
            "client-message",
            "info",
            json!({"t": "session-info"}),
        ))
        .await
        .unwrap();

    let (_, info) = events.wait_for(reply_to("info"), WAIT).await.unwrap();
    assert_eq!(info["type"], "server-response", "{info}");
    for id in ["huge", "unknown", "no-content", "too-long"] {
        let (_, reply) = events
            .wait_for(|v| v["id"] == id, WAIT)
            .await
            .unwrap_or_else(|| panic!("no answer to {id}"));
        assert_eq!(reply["type"], "error-response", "{reply}");
        assert!(reply["data"]["error"].as_str().is_some(), "{reply}");
    }
    // The malformed message (no id to answer) was dropped; the huge one
    // (as big as a client may send: 64 KiB) is refused as too long a text.
    // Once RTVI, the page gets no voxpipe event lines.
    assert!(
        events
            .matching(|v| v.get("event").is_some() && v["event"] != "session_started")
            .is_empty()
    );

    client.close().await;
    let sessions = server.sessions.ended(1, WAIT).await;
    assert_eq!(sessions[0].end_reason.as_deref(), Some("hangup"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_messages_is_answered_within_budget_then_dropped() {
    let server = TestServer::parrot(&[]).await;
    let (client, events) = rtvi_call(&server).await;
    let flood = 1_000;
    for n in 0..flood {
        client
            .send_message(&rtvi("dance", &format!("f{n}"), json!({})))
            .await
            .unwrap();
    }
    // The session is still there and answers.
    client
        .send_message(&rtvi(
            "client-message",
            "after",
            json!({"t": "session-info"}),
        ))
        .await
        .unwrap();
    let after = events.wait_for(reply_to("after"), WAIT).await;
    let answered = events.matching(|v| v["type"] == "error-response").len();
    assert!(
        (100..flood).contains(&answered),
        "{answered} of {flood} answered: the burst, not the flood"
    );
    if after.is_none() {
        // Dropped as over budget too: a second later the budget is back.
        tokio::time::sleep(Duration::from_secs(1)).await;
        client
            .send_message(&rtvi(
                "client-message",
                "later",
                json!({"t": "session-info"}),
            ))
            .await
            .unwrap();
        events
            .wait_for(reply_to("later"), WAIT)
            .await
            .expect("answered once the budget refilled");
    }
    assert!(
        server.sessions.all()[0].end_reason.is_none(),
        "the session lives"
    );
    client.close().await;
    server.sessions.ended(1, WAIT).await;
}
