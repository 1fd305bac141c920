//! The server's HTTP side: Twilio's voice webhook (TwiML, signatures),
//! admission limits, `/health`, `/metrics` and graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use support::fake::twilio_media::{CallConfig, FakeCall};
use support::fake::twilio_rest::FakeTwilioRest;
use support::mulaw::{silence, speech};
use support::server::{Setup, TestServer};
use voxpipe::server::ReadinessCheck;

const WAIT: Duration = Duration::from_secs(30);

const CALL_FORM: &[(&str, &str)] = &[
    ("AccountSid", "ACd5a6a5c1b9f6a1e6f6bc2c7e4a1b8e3f"),
    ("ApiVersion", "2010-04-01"),
    ("CallSid", "CA7c4b5e3e9a0e4c2b8f5d1a6e3c9b0a7f"),
    ("CallStatus", "ringing"),
    ("Direction", "inbound"),
    ("From", "+15551234567"),
    ("To", "+15557654321"),
];

fn form_body(form: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish()
}

/// Twilio's signature, computed here independently of the server's code.
fn twilio_signature(token: &str, url: &str, form: &[(&str, &str)]) -> String {
    let mut sorted = form.to_vec();
    sorted.sort();
    let mut data = url.to_owned();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, token.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, data.as_bytes()))
}

async fn post_voice(
    server: &TestServer,
    query: &str,
    headers: &[(&str, &str)],
    form: &[(&str, &str)],
) -> (u16, String, String) {
    let mut request = reqwest::Client::new()
        .post(server.url(&format!("/twilio/voice{query}")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(form));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

#[tokio::test]
async fn the_voice_webhook_connects_the_call_to_a_stream_on_the_public_host() {
    let server = TestServer::parrot(&[]).await;
    let (status, content_type, twiml) = post_voice(
        &server,
        "?segment=retail&country=FR",
        &[("host", "voice.example.com")],
        CALL_FORM,
    )
    .await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/xml"), "{content_type}");
    assert_eq!(
        twiml,
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect>"#,
            r#"<Stream url="wss://voice.example.com/twilio/ws">"#,
            r#"<Parameter name="CallSid" value="CA7c4b5e3e9a0e4c2b8f5d1a6e3c9b0a7f"/>"#,
            r#"<Parameter name="From" value="+15551234567"/>"#,
            r#"<Parameter name="To" value="+15557654321"/>"#,
            r#"<Parameter name="Direction" value="inbound"/>"#,
            r#"<Parameter name="segment" value="retail"/>"#,
            r#"<Parameter name="country" value="FR"/>"#,
            r#"</Stream></Connect></Response>"#
        )
    );

    // Behind a proxy: the forwarded host is the public one.
    let (_, _, twiml) = post_voice(
        &server,
        "",
        &[
            ("host", "10.0.0.7:8080"),
            ("x-forwarded-host", "abc.ngrok.app"),
        ],
        CALL_FORM,
    )
    .await;
    assert!(
        twiml.contains(r#"<Stream url="wss://abc.ngrok.app/twilio/ws">"#),
        "{twiml}"
    );

    // The configured host wins over both.
    let server = TestServer::parrot(&["server.public_host=voice.example.org"]).await;
    let (_, _, twiml) = post_voice(
        &server,
        "",
        &[("x-forwarded-host", "abc.ngrok.app")],
        CALL_FORM,
    )
    .await;
    assert!(
        twiml.contains(r#"<Stream url="wss://voice.example.org/twilio/ws">"#),
        "{twiml}"
    );
}

#[tokio::test]
async fn with_an_auth_token_only_signed_webhooks_are_answered() {
    let server = TestServer::start(Setup {
        overrides: &[
            "transport.twilio.auth_token_env=TWILIO_AUTH_TOKEN",
            "server.public_host=voice.example.com",
        ],
        env: &[("TWILIO_AUTH_TOKEN", "12345")],
        ..Setup::default()
    })
    .await;
    let url = "https://voice.example.com/twilio/voice?segment=retail";
    let good = twilio_signature("12345", url, CALL_FORM);
    let (status, _, twiml) = post_voice(
        &server,
        "?segment=retail",
        &[("x-twilio-signature", &good)],
        CALL_FORM,
    )
    .await;
    assert_eq!(status, 200);
    assert!(twiml.contains("<Connect>"));

    // A tampered form, a signature for another URL, another token, none.
    let mut tampered = CALL_FORM.to_vec();
    tampered[5] = ("From", "+15550000000");
    let other_url = twilio_signature("12345", "https://voice.example.com/twilio/voice", CALL_FORM);
    let other_token = twilio_signature("54321", url, CALL_FORM);
    for (headers, form) in [
        (
            vec![("x-twilio-signature", good.as_str())],
            tampered.as_slice(),
        ),
        (vec![("x-twilio-signature", other_url.as_str())], CALL_FORM),
        (
            vec![("x-twilio-signature", other_token.as_str())],
            CALL_FORM,
        ),
        (vec![], CALL_FORM),
    ] {
        let (status, _, body) = post_voice(&server, "?segment=retail", &headers, form).await;
        assert_eq!(status, 403, "{headers:?}: {body}");
        assert!(!body.contains("<Connect>"));
    }
    assert_eq!(
        server
            .metric(r#"voxpipe_errors_total{kind="bad_signature",source="twilio"}"#)
            .await,
        3.0
    );
    assert_eq!(
        server
            .metric(r#"voxpipe_errors_total{kind="missing_signature",source="twilio"}"#)
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_capacity_calls_get_a_busy_signal_and_streams_a_503() {
    let server = TestServer::parrot(&["server.max_sessions=1"]).await;
    let call = FakeCall::connect(server.addr, CallConfig::new(1)).await;
    call.say(silence(100));
    call.said(WAIT).await;

    let (status, _, twiml) =
        post_voice(&server, "", &[("host", "voice.example.com")], CALL_FORM).await;
    assert_eq!(status, 200);
    assert!(
        twiml.ends_with(r#"<Response><Reject reason="busy"/></Response>"#),
        "{twiml}"
    );
    let refused = tokio_tungstenite::connect_async(format!("ws://{}/twilio/ws", server.addr)).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503);
            assert!(response.headers().contains_key("retry-after"));
        }
        other => panic!("expected a 503, got {other:?}"),
    }
    let (status, health) = server.get("/health").await;
    assert_eq!(status, 503);
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["ready"], false);
    assert_eq!(health["live"], true);
    assert_eq!(health["sessions"]["refusing"], "at_capacity");
    assert_eq!(
        server
            .metric(r#"voxpipe_sessions_refused_total{reason="at_capacity",transport="twilio"}"#)
            .await,
        2.0
    );

    call.stop();
    server.sessions.ended(1, WAIT).await;
    call.closed(WAIT).await;
    let (status, _) = server.get("/health").await;
    assert_eq!(status, 200, "a slot is free again");
}

struct Store {
    up: bool,
}

#[async_trait]
impl ReadinessCheck for Store {
    fn name(&self) -> &str {
        "store"
    }

    async fn check(&self) -> Result<(), String> {
        if self.up {
            Ok(())
        } else {
            Err("connection refused".into())
        }
    }
}

#[tokio::test]
async fn health_reports_liveness_readiness_and_every_check() {
    let server = TestServer::start(Setup {
        readiness: vec![Arc::new(Store { up: true })],
        ..Setup::default()
    })
    .await;
    let (status, body) = server.get("/health").await;
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["ready"], true);
    assert_eq!(health["pipeline"], "parrot");
    assert_eq!(health["sessions"]["active"], 0);
    assert_eq!(health["sessions"]["max"], 200);
    assert_eq!(health["checks"]["store"]["ok"], true);

    let server = TestServer::start(Setup {
        readiness: vec![Arc::new(Store { up: false })],
        ..Setup::default()
    })
    .await;
    let (status, body) = server.get("/health").await;
    assert_eq!(status, 503);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "unavailable");
    assert_eq!(health["live"], true);
    assert_eq!(health["checks"]["store"]["error"], "connection refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_sessions_audio_and_latency() {
    let server = TestServer::parrot(&[]).await;
    let (status, text) = server.get("/metrics").await;
    assert_eq!(status, 200);
    for family in [
        "voxpipe_sessions_active",
        "voxpipe_sessions_total",
        "voxpipe_sessions_refused_total",
        "voxpipe_session_duration_seconds",
        "voxpipe_audio_frames_total",
        "voxpipe_errors_total",
        "voxpipe_transit_seconds",
        "voxpipe_ttfb_seconds",
        "voxpipe_voice_to_voice_seconds",
        "voxpipe_twilio_hangups_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family}:\n{text}"
        );
    }

    let call = FakeCall::connect(server.addr, CallConfig::new(1)).await;
    // Words, not a tone: parrot answers speech, with or without a VAD.
    call.say([speech(1_400, 3_400), silence(1_000)].concat());
    call.said(WAIT).await;
    assert_eq!(server.metric("voxpipe_sessions_active").await, 1.0);
    call.stop();
    call.closed(WAIT).await;
    server.sessions.ended(1, WAIT).await;

    assert_eq!(server.metric("voxpipe_sessions_active").await, 0.0);
    assert_eq!(
        server
            .metric(r#"voxpipe_sessions_total{reason="hangup",transport="twilio"}"#)
            .await,
        1.0
    );
    assert_eq!(
        server
            .metric("voxpipe_session_duration_seconds_count")
            .await,
        1.0
    );
    let frames_in = server
        .metric(r#"voxpipe_audio_frames_total{direction="in",transport="twilio"}"#)
        .await;
    assert!(frames_in >= 20.0, "{frames_in} frames in");
    let frames_out = server
        .metric(r#"voxpipe_audio_frames_total{direction="out",transport="twilio"}"#)
        .await;
    assert!(
        frames_out >= 20.0,
        "{frames_out} frames out: parrot replied"
    );
    assert_eq!(
        server.metric("voxpipe_transit_seconds_count").await,
        frames_in
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_calls_finish_then_ends_and_hangs_up_the_rest() {
    let rest = FakeTwilioRest::start("secret-token").await;
    let base = format!("transport.twilio.api_base_url={}", rest.base_url);
    let mut server = TestServer::start(Setup {
        overrides: &[
            "transport.twilio.auth_token_env=TWILIO_AUTH_TOKEN",
            &base,
            "server.shutdown_deadline_secs=1",
        ],
        env: &[("TWILIO_AUTH_TOKEN", "secret-token")],
        ..Setup::default()
    })
    .await;
    let finishing = FakeCall::connect(server.addr, CallConfig::new(1).signed("secret-token")).await;
    let lingering = FakeCall::connect(server.addr, CallConfig::new(2).signed("secret-token")).await;
    for call in [&finishing, &lingering] {
        call.say([speech(1_400, 3_400), silence(1_000)].concat());
    }
    for call in [&finishing, &lingering] {
        call.said(WAIT).await;
    }

    server.begin_shutdown();
    // No new connections. A bounded poll of the real socket: nothing
    // announces that the listener has closed.
    tokio::time::timeout(WAIT, async {
        while tokio::net::TcpStream::connect(server.addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the listener closes");
    // A call that ends before the deadline ends as usual.
    finishing.stop();
    finishing.closed(WAIT).await;
    // One still going at the deadline is ended (drained, replying first),
    // hung up, and told the server is going away.
    let record = lingering.closed(WAIT).await;
    assert_eq!(record.close.as_ref().map(|c| c.0), Some(1001));
    assert!(
        !record.heard.is_empty(),
        "parrot's reply went out before the end"
    );
    let sessions = server.sessions.ended(2, WAIT).await;
    let reasons: Vec<_> = sessions
        .iter()
        .map(|s| (s.end_reason.clone().unwrap(), s.cancelled))
        .collect();
    assert!(reasons.contains(&("hangup".into(), false)), "{reasons:?}");
    assert!(
        reasons.contains(&("server_shutdown".into(), false)),
        "{reasons:?}"
    );
    let hang_ups = rest.wait_for(1, WAIT).await;
    assert_eq!(hang_ups.len(), 1);
    assert_eq!(hang_ups[0].call_sid, lingering.config.call_sid);
    server.shutdown(WAIT).await.unwrap();
}
