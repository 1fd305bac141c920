//! Pipecat's runner session flow over HTTP: `POST /start`, a session's own
//! offer path with a real WebRTC client peer, the ICE configuration with
//! TURN credentials, CORS preflights, the bearer key, signed and expiring
//! session ids, the rate limit per client address, and bad bodies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::server::{Setup, TestServer};
use support::webrtc::{post_offer, post_offer_to};
use voxpipe::transport::webrtc::{Answer, ClientPeer, OfferRequest};

const WAIT: Duration = Duration::from_secs(20);

async fn serve(overrides: &[&str], env: &[(&str, &str)]) -> TestServer {
    TestServer::start(Setup {
        overrides,
        env,
        ..Setup::default()
    })
    .await
}

/// A client whose requests come from `source` (any 127.0.0.0/8 address
/// reaches the server's 127.0.0.1 on Linux).
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn start(server: &TestServer, body: Value) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(server.url("/start"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn not_an_offer() -> OfferRequest {
    OfferRequest {
        sdp: "v=0".into(),
        kind: "offer".into(),
        pc_id: None,
        restart_pc: None,
        request_data: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_then_offer_on_the_session_path_runs_a_call_with_the_start_body() {
    let server = serve(&[], &[]).await;
    let (status, started) = start(
        &server,
        json!({"transport": "webrtc", "body": {"user": "ada", "plan": {"tier": 2}}}),
    )
    .await;
    assert_eq!(status, 200, "{started}");
    // No servers: left out, so the page's own are kept.
    assert!(started.get("iceConfig").is_none(), "{started}");
    let session = started["sessionId"].as_str().unwrap().to_owned();
    let offer_url = server.url(&format!("/sessions/{session}/api/offer"));

    // The page's own requestData cannot override what /start was given.
    let (mut client, offer) = ClientPeer::offer().await.unwrap();
    let renegotiation = offer.clone();
    let offer = OfferRequest {
        request_data: Some(json!({"user": "mallory"})),
        ..offer
    };
    let response = post_offer_to(&offer_url, &offer).await;
    assert_eq!(response.status(), 200);
    let answer: Answer = response.json().await.unwrap();
    // The call is the session; its pc_id is a capability apart from it.
    let session_id = session.split('.').next().unwrap();
    assert!(answer.pc_id.starts_with("pc-"), "{}", answer.pc_id);
    assert_ne!(answer.pc_id, session_id);
    client.accept(&answer).await.unwrap();
    client.wait_connected(WAIT).await.unwrap();

    // Trickled candidates and renegotiation on the session's path.
    let http = reqwest::Client::new();
    let patch = |pc_id: &str| {
        http.patch(&offer_url)
            .json(&json!({"pc_id": pc_id, "candidates": [{"candidate": "", "sdp_mid": "0", "sdp_mline_index": 0}]}))
            .send()
    };
    assert_eq!(patch(&answer.pc_id).await.unwrap().status(), 200);
    assert_eq!(patch("someone-else").await.unwrap().status(), 404);
    // The session's id names no connection: it is not a capability.
    assert_eq!(patch(session_id).await.unwrap().status(), 404);
    let again = OfferRequest {
        pc_id: Some(answer.pc_id.clone()),
        ..renegotiation.clone()
    };
    let reanswered = post_offer_to(&offer_url, &again).await;
    assert_eq!(reanswered.status(), 200);
    // A second first offer on a session already connected: unknown.
    let (_other, second) = ClientPeer::offer().await.unwrap();
    assert_eq!(post_offer_to(&offer_url, &second).await.status(), 404);

    client.close().await;
    let sessions = server.sessions.ended(1, WAIT).await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].session_id, session_id);
    assert_eq!(sessions[0].custom_parameters["user"], "ada");
    assert_eq!(sessions[0].custom_parameters["plan"], r#"{"tier":2}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ice_configuration_carries_time_limited_turn_credentials() {
    let servers = r#"transport.webrtc.ice_servers=[{urls=["stun:127.0.0.1:3478"]},{urls=["turn:127.0.0.1:3478"],username="voxpipe",secret_env="TURN_SECRET",credential_ttl_secs=600}]"#;
    let server = serve(&[servers], &[("TURN_SECRET", "north")]).await;
    let (status, started) = start(&server, json!({})).await;
    assert_eq!(status, 200);
    let (status, text) = server.get("/api/ice-config").await;
    assert_eq!(status, 200);
    let fetched: Value = serde_json::from_str(&text).unwrap();
    for config in [&started["iceConfig"], &fetched] {
        let ice = config["iceServers"].as_array().unwrap();
        assert_eq!(ice[0], json!({"urls": ["stun:127.0.0.1:3478"]}));
        assert_eq!(ice[1]["urls"], json!(["turn:127.0.0.1:3478"]));
        // TURN REST: `expiry:username`, credential = HMAC-SHA1 under the
        // shared secret, which is what coturn checks.
        let username = ice[1]["username"].as_str().unwrap();
        let (expiry, name) = username.split_once(':').unwrap();
        assert_eq!(name, "voxpipe");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let expiry: u64 = expiry.parse().unwrap();
        assert!(
            (now + 590..=now + 610).contains(&expiry),
            "{expiry} vs {now}"
        );
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"north");
        let expected = base64::engine::general_purpose::STANDARD
            .encode(ring::hmac::sign(&key, username.as_bytes()).as_ref());
        assert_eq!(ice[1]["credential"], expected);
    }

    // With no servers configured, Pipecat's default STUN on request.
    let plain = serve(&[], &[]).await;
    let (_, started) = start(&plain, json!({"enableDefaultIceServers": true})).await;
    assert_eq!(
        started["iceConfig"]["iceServers"],
        json!([{"urls": ["stun:stun.l.google.com:19302"]}])
    );
}

async fn preflight(
    server: &TestServer,
    path: &str,
    origin: &str,
    method: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .request(Method::OPTIONS, server.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header(
            "access-control-request-headers",
            "content-type,authorization",
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn cors_lets_listed_origins_call_and_no_others() {
    let server = serve(&[r#"server.cors_origins=["http://app.example:8080"]"#], &[]).await;
    let allowed = "http://app.example:8080";
    for (path, method) in [
        ("/api/offer", "POST"),
        ("/api/offer", "PATCH"),
        ("/start", "POST"),
        ("/api/ice-config", "GET"),
        ("/sessions/abc/api/offer", "POST"),
        ("/sessions/abc/api/offer", "PATCH"),
    ] {
        let ok = preflight(&server, path, allowed, method).await;
        assert!(ok.status().is_success(), "{path} {method}: {}", ok.status());
        let headers = ok.headers();
        assert_eq!(headers["access-control-allow-origin"], allowed, "{path}");
        let methods = headers["access-control-allow-methods"].to_str().unwrap();
        assert!(methods.contains(method), "{path}: {methods}");
        let allowed_headers = headers["access-control-allow-headers"].to_str().unwrap();
        assert!(
            allowed_headers.contains("authorization"),
            "{allowed_headers}"
        );

        let refused = preflight(&server, path, "http://evil.example", method).await;
        assert!(
            refused
                .headers()
                .get("access-control-allow-origin")
                .is_none(),
            "{path}: a refused origin gets no CORS headers"
        );
    }
    // The request itself carries the header for the allowed origin only.
    let post = |origin: &'static str| {
        reqwest::Client::new()
            .post(server.url("/start"))
            .header("origin", origin)
            .send()
    };
    let response = post(allowed).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], allowed);
    let response = post("http://evil.example").await.unwrap();
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    // By default no other origin may call; "*" must be asked for.
    let same_origin_only = serve(&[], &[]).await;
    let response = preflight(&same_origin_only, "/start", allowed, "POST").await;
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let any = serve(&[r#"server.cors_origins=["*"]"#], &[]).await;
    let response = preflight(&any, "/api/offer", "http://anyone.example", "POST").await;
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn a_bearer_key_guards_start_and_direct_offers_but_not_the_session_path() {
    let server = serve(
        &["server.start_token_env=START_TOKEN"],
        &[("START_TOKEN", "s3cret")],
    )
    .await;
    let http = reqwest::Client::new();
    let start = |key: Option<&'static str>| {
        let mut request = http.post(server.url("/start"));
        if let Some(key) = key {
            request = request.header("authorization", key);
        }
        request.send()
    };
    let refused = start(None).await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["www-authenticate"], "Bearer");
    // JSON with `detail`, as client-js's `startBot()` reads a refusal.
    let detail: Value = refused.json().await.expect("a JSON refusal");
    assert!(
        detail["detail"]
            .as_str()
            .is_some_and(|d| d.contains("bearer")),
        "{detail}"
    );
    assert_eq!(start(Some("Bearer wrong")).await.unwrap().status(), 401);
    assert_eq!(start(Some("s3cret")).await.unwrap().status(), 401);
    let started = start(Some("Bearer s3cret")).await.unwrap();
    assert_eq!(started.status(), 200);
    let session: Value = started.json().await.unwrap();
    assert_eq!(server.get("/api/ice-config").await.0, 401);
    assert_eq!(
        post_offer(&server.url(""), &not_an_offer()).await.status(),
        401
    );

    // The browser offers on its session's path without the key: admitted
    // (this offer is then refused for what it is, not for the key).
    let url = server.url(&format!(
        "/sessions/{}/api/offer",
        session["sessionId"].as_str().unwrap()
    ));
    assert_eq!(post_offer_to(&url, &not_an_offer()).await.status(), 400);
    assert!(server.sessions.all().is_empty());
}

/// A session id as the server signs them with `key` (the documented
/// format: `{id}.{expires}.{base64url(HMAC-SHA256(key, "{id}.{expires}")[..16])}`).
fn signed(key: &[u8], id: &str, expires: u64) -> String {
    let claim = format!("{id}.{expires}");
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
        claim.as_bytes(),
    );
    let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&tag.as_ref()[..16]);
    format!("{claim}.{tag}")
}

#[tokio::test]
async fn session_ids_are_signed_and_expire() {
    let server = serve(
        &["server.session_key_env=SESSION_KEY"],
        &[("SESSION_KEY", "k3y")],
    )
    .await;
    let (_, started) = start(&server, json!({})).await;
    let session = started["sessionId"].as_str().unwrap();
    let (id, rest) = session.split_once('.').unwrap();
    let (expires, _) = rest.split_once('.').unwrap();
    assert_eq!(
        session,
        signed(b"k3y", id, expires.parse().unwrap()),
        "the documented format"
    );

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let status = |session: String| {
        let url = server.url(&format!("/sessions/{session}/api/offer"));
        async move { post_offer_to(&url, &not_an_offer()).await.status().as_u16() }
    };
    assert_eq!(status("abc".into()).await, 404, "not signed");
    assert_eq!(status(session.replace(id, "0123")).await, 404, "altered");
    assert_eq!(
        status(signed(b"other", id, now + 60)).await,
        404,
        "another key"
    );
    let expired = signed(b"k3y", id, now - 1);
    let url = server.url(&format!("/sessions/{expired}/api/offer"));
    let response = post_offer_to(&url, &not_an_offer()).await;
    assert_eq!(response.status(), 401);
    assert!(response.text().await.unwrap().contains("expired"));
    assert_eq!(
        status(signed(b"k3y", "never-started", now + 60)).await,
        404,
        "signed, but no such session"
    );
    let patch = reqwest::Client::new()
        .patch(server.url("/sessions/abc/api/offer"))
        .json(&json!({"pc_id": "abc", "candidates": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 404);
    // A bad offer leaves the session waiting for a good one.
    assert_eq!(status(session.to_owned()).await, 400);
    assert_eq!(status(session.to_owned()).await, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_is_refused_while_another_is_served() {
    // One a minute after the burst: nothing refills while the test runs.
    let server = serve(
        &[
            "server.rate_limit_per_minute=1",
            "server.rate_limit_burst=10",
        ],
        &[],
    )
    .await;
    let flooder = client_from("127.0.0.1");
    let flood = (0..60).map(|_| flooder.post(server.url("/start")).send());
    let responses = futures_util::future::join_all(flood).await;
    let mut served = 0;
    for response in responses {
        let response = response.unwrap();
        match response.status().as_u16() {
            200 => served += 1,
            429 => {
                let retry: u64 = response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=60).contains(&retry), "Retry-After: {retry}");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(served, 10, "the burst is served, the rest refused");
    // Offers from the flooder count against the same bucket...
    let refused = flooder
        .post(server.url("/api/offer"))
        .json(&json!({"sdp": "v=0", "type": "offer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    // ... while another address is served as usual.
    let neighbour = client_from("127.0.0.2");
    let started = neighbour.post(server.url("/start")).send().await.unwrap();
    assert_eq!(started.status(), 200);
    let offered = neighbour
        .post(server.url("/api/offer"))
        .json(&json!({"sdp": "v=0", "type": "offer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(offered.status(), 400, "served: refused for its SDP only");
    assert_eq!(
        server
            .metric(r#"voxpipe_sessions_refused_total{reason="rate_limited",transport="webrtc"}"#)
            .await,
        51.0,
        "50 starts and an offer"
    );
}

/// A refusal of a route Pipecat's clients call: its status, and the reason
/// in `{"detail"}`, the JSON client-js reads.
async fn refusal(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("a JSON refusal");
    let detail = body["detail"].as_str();
    assert!(
        detail.is_some() && body.as_object().is_some_and(|o| o.len() == 1),
        "{status}: {body}"
    );
    (status, detail.unwrap_or_default().to_owned())
}

#[tokio::test]
async fn bad_bodies_are_413_or_400_with_a_reason() {
    let server = serve(&[], &[]).await;
    let http = reqwest::Client::new();
    let send = |method: Method, path: &str, body: String| {
        http.request(method, server.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let huge = format!(
        "{{\"sdp\": \"{}\", \"type\": \"offer\"}}",
        "a".repeat(200_000)
    );
    for (method, path) in [
        (Method::POST, "/api/offer"),
        (Method::PATCH, "/api/offer"),
        (Method::POST, "/start"),
    ] {
        let response = send(method.clone(), path, huge.clone()).await.unwrap();
        assert_eq!(refusal(response).await.0, 413, "{method} {path}");
    }
    let response = send(Method::POST, "/start", "{\"body\": ".into())
        .await
        .unwrap();
    let (status, reason) = refusal(response).await;
    assert_eq!(status, 400);
    assert!(reason.contains("not a /start request"), "{reason}");
    let response = send(Method::POST, "/start", r#"{"transport": "daily"}"#.into())
        .await
        .unwrap();
    let (status, reason) = refusal(response).await;
    assert_eq!(status, 400);
    assert!(reason.contains("daily"), "{reason}");
    let response = send(Method::POST, "/api/offer", r#"{"type": "offer"}"#.into())
        .await
        .unwrap();
    let (status, reason) = refusal(response).await;
    assert_eq!(status, 400);
    assert!(reason.contains("sdp"), "names the missing field: {reason}");
    let response = send(Method::PATCH, "/api/offer", "{\"pc_id\": ".into())
        .await
        .unwrap();
    assert_eq!(refusal(response).await.0, 400);
    let (_, started) = start(&server, json!({})).await;
    let path = format!(
        "/sessions/{}/api/offer",
        started["sessionId"].as_str().unwrap()
    );
    for (method, body, status) in [
        (Method::POST, "[".to_owned(), 400),
        (Method::PATCH, "{}".to_owned(), 400),
        (Method::POST, huge.clone(), 413),
    ] {
        let response = send(method.clone(), &path, body).await.unwrap();
        assert_eq!(refusal(response).await.0, status, "{method}");
    }
    let response = send(Method::POST, "/sessions/nope/api/offer", "{}".into())
        .await
        .unwrap();
    assert_eq!(refusal(response).await.0, 404);
    assert!(server.sessions.all().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_real_offers_takes_only_its_burst_of_slots() {
    // The issue's flood: 60 offers at once from one page. With 12 slots,
    // the flood used to take all 12 and everyone else got 503.
    let server = serve(
        &[
            "server.max_sessions=12",
            "server.rate_limit_per_minute=1",
            "server.rate_limit_burst=10",
        ],
        &[],
    )
    .await;
    let (_flood_peer, offer) = ClientPeer::offer().await.unwrap();
    let body = json!({"sdp": offer.sdp, "type": "offer"});
    let flooder = client_from("127.0.0.1");
    let flood = (0..60).map(|_| flooder.post(server.url("/api/offer")).json(&body).send());
    let statuses: Vec<u16> = futures_util::future::join_all(flood)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    let count = |s: u16| statuses.iter().filter(|&&x| x == s).count();
    assert_eq!((count(200), count(429)), (10, 50), "{statuses:?}");

    // Someone else still gets a slot and a working call.
    let (mut client, offer) = ClientPeer::offer().await.unwrap();
    let neighbour = client_from("127.0.0.2");
    let response = neighbour
        .post(server.url("/api/offer"))
        .json(&json!({"sdp": offer.sdp, "type": "offer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Answer = response.json().await.unwrap();
    client.accept(&answer).await.unwrap();
    client.wait_connected(WAIT).await.unwrap();
    client.close().await;
}
