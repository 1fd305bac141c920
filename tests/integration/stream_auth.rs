//! Stream authentication: with an auth token, `/twilio/ws` needs a signed
//! upgrade and, independently, the per-call token the server's TwiML
//! handed the stream; a stream without them never starts a session, and a
//! dropped stream hangs up only the call the server vouched for.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use support::fake::twilio_media::{CallConfig, FakeCall, STREAM_TOKEN, voice_webhook_token};
use support::fake::twilio_rest::FakeTwilioRest;
use support::processors::registry;
use support::redis_server::RedisServer;
use support::server::{Setup, TestServer};
use voxpipe::pipeline::EnvSource;
use voxpipe::pipeline_file::parse_pipeline;

const TOKEN: &str = "secret-token";
const WAIT: Duration = Duration::from_secs(30);
/// WebSocket close code 1008: policy violation.
const POLICY: u16 = 1008;

async fn server(rest: &FakeTwilioRest, extra: &[&str]) -> TestServer {
    let base = format!("transport.twilio.api_base_url={}", rest.base_url);
    let mut overrides = vec!["transport.twilio.auth_token_env=TWILIO_AUTH_TOKEN", &base];
    overrides.extend_from_slice(extra);
    TestServer::start(Setup {
        overrides: &overrides,
        env: &[("TWILIO_AUTH_TOKEN", TOKEN)],
        ..Setup::default()
    })
    .await
}

/// A call carrying `token` as its stream token, with a signed upgrade.
fn with_token(n: u32, token: &str) -> CallConfig {
    let mut config = CallConfig::new(n).signed(TOKEN);
    config
        .custom_parameters
        .push((STREAM_TOKEN.into(), token.to_owned()));
    config
}

/// Connects `config`, expects the server to close the stream with 1008
/// before any session starts.
async fn refused(server: &TestServer, config: CallConfig, what: &str) {
    let call = FakeCall::connect(server.addr, config).await;
    let record = call.closed(WAIT).await;
    assert_eq!(
        record.close.as_ref().map(|c| c.0),
        Some(POLICY),
        "{what}: closed as a policy violation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_stream_with_its_calls_fresh_token_starts_a_session() {
    let rest = FakeTwilioRest::start(TOKEN).await;
    let server = server(&rest, &[]).await;

    // Wrong, for another call (missing: below, without signatures).
    refused(
        &server,
        with_token(2, "v1.99999999999.QUM.Q0E.AAAA"),
        "wrong",
    )
    .await;
    let other_call = voice_webhook_token(server.addr, &CallConfig::new(3), TOKEN)
        .await
        .expect("the TwiML carries a token");
    refused(&server, with_token(4, &other_call), "another call's").await;

    // A valid one starts a session; used again, it is refused.
    let config = CallConfig::new(5);
    let token = voice_webhook_token(server.addr, &config, TOKEN)
        .await
        .unwrap();
    let call = FakeCall::connect(server.addr, with_token(5, &token)).await;
    call.stop();
    let record = call.closed(WAIT).await;
    assert_eq!(record.close.as_ref().map(|c| c.0), Some(1000));
    let sessions = server.sessions.ended(1, WAIT).await;
    refused(&server, with_token(5, &token), "replayed").await;
    // A fresh token for the same call (a signed voice webhook replayed
    // later mints one, with a later expiry) opens no second stream.
    let key = voxpipe::transport::twilio::stream_token::StreamTokenKey::from_auth_token(TOKEN);
    let claims = key.verify(&token, 0).unwrap();
    let fresh = key
        .issue(
            &config.account_sid,
            &config.call_sid,
            claims.expires_at + 60,
        )
        .unwrap();
    assert_ne!(fresh, token);
    refused(
        &server,
        with_token(5, &fresh),
        "a fresh token for the same call",
    )
    .await;

    assert_eq!(
        server.sessions.all().len(),
        1,
        "only the valid stream had a session"
    );
    assert!(
        !sessions[0].custom_parameters.contains_key(STREAM_TOKEN),
        "the token is not handed to the session"
    );
    for kind in [
        "bad_stream_token",
        "other_call_stream_token",
        "replayed_stream_token",
    ] {
        let series = format!(r#"voxpipe_errors_total{{kind="{kind}",source="twilio"}}"#);
        let expected = if kind == "replayed_stream_token" {
            2.0
        } else {
            1.0
        };
        assert_eq!(server.metric(&series).await, expected, "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_check_stands_without_signatures_and_tokens_expire() {
    let rest = FakeTwilioRest::start(TOKEN).await;
    let server = server(
        &rest,
        &[
            "transport.twilio.stream_signature=false",
            "transport.twilio.stream_token_ttl_secs=1",
        ],
    )
    .await;

    // No token at all (and no signature: not checked here).
    refused(&server, CallConfig::new(1), "missing").await;
    let metric = r#"voxpipe_errors_total{kind="missing_stream_token",source="twilio"}"#;
    assert_eq!(server.metric(metric).await, 1.0);

    // A token past its life.
    let config = CallConfig::new(2);
    let token = voice_webhook_token(server.addr, &config, TOKEN)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    refused(&server, with_token(2, &token), "expired").await;
    let metric = r#"voxpipe_errors_total{kind="expired_stream_token",source="twilio"}"#;
    assert_eq!(server.metric(metric).await, 1.0);
    assert!(server.sessions.all().is_empty(), "no session started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_or_forged_upgrade_is_refused_before_a_slot_is_taken() {
    let rest = FakeTwilioRest::start(TOKEN).await;
    let server = server(&rest, &["server.max_sessions=1"]).await;

    let forged = CallConfig::new(1).signed("not-the-token");
    let unsigned = CallConfig::new(2);
    let mut other_url = CallConfig::new(3).signed(TOKEN);
    other_url.stream_url = Some("wss://elsewhere.example.com/twilio/ws".into());
    for (what, config) in [
        ("forged", forged),
        ("unsigned", unsigned),
        ("other url", other_url),
    ] {
        let err = FakeCall::try_connect(server.addr, config)
            .await
            .err()
            .unwrap_or_else(|| panic!("{what}: upgraded"));
        let status = match err {
            tokio_tungstenite::tungstenite::Error::Http(response) => response.status().as_u16(),
            other => panic!("{what}: {other}"),
        };
        assert_eq!(status, 403, "{what}");
    }
    // The one slot is still free for the real call.
    let call = FakeCall::connect(server.addr, CallConfig::new(4).signed(TOKEN)).await;
    call.stop();
    call.closed(WAIT).await;
    server.sessions.ended(1, WAIT).await;
    assert!(
        server
            .metric(r#"voxpipe_errors_total{kind="bad_signature",source="twilio"}"#)
            .await
            >= 2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_stream_hangs_up_the_call_its_token_names_not_the_one_it_claims() {
    let rest = FakeTwilioRest::start(TOKEN).await;
    let server = server(&rest, &[]).await;

    // The webhook was for account AC…acc0; the stream claims another
    // account in its `start`.
    let config = CallConfig::new(6);
    let token = voice_webhook_token(server.addr, &config, TOKEN)
        .await
        .unwrap();
    let mut claiming = with_token(6, &token);
    claiming.account_sid = format!("AC{:032x}", 0xbad_u32);
    let call = FakeCall::connect(server.addr, claiming).await;
    call.drop_socket();

    let requests = rest.wait_for(1, WAIT).await;
    assert_eq!(requests[0].call_sid, config.call_sid);
    assert_eq!(
        requests[0].account_sid, config.account_sid,
        "the account the signed webhook named, not the stream's claim"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_used_on_one_server_is_refused_by_another_sharing_its_store() {
    // Two servers behind one load balancer, one Redis: a token read from a
    // stream one of them took must not open a stream on the other.
    let redis = RedisServer::start();
    let spool = tempfile::tempdir().unwrap();
    let rest = FakeTwilioRest::start(TOKEN).await;
    let toml = format!(
        "[pipeline]\nname = \"shared\"\nsample_rate = 16000\n\n\
         [[processor]]\ntype = \"parrot\"\n\n\
         [context]\nstore = \"redis\"\nurl_env = \"TEST_REDIS\"\nspool_dir = {:?}\n\n\
         [transport.twilio]\nauth_token_env = \"TWILIO_AUTH_TOKEN\"\napi_base_url = \"{}\"\n",
        spool.path(),
        rest.base_url
    );
    let env = [
        ("TEST_REDIS", redis.url()),
        ("TWILIO_AUTH_TOKEN", TOKEN.to_owned()),
    ];
    let vars: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut servers = Vec::new();
    for _ in 0..2 {
        let config = parse_pipeline(Path::new("shared.toml"), &toml, &registry()).unwrap();
        let runtime = config
            .agent_runtime(&EnvSource::Fixed(Arc::new(vars.clone())))
            .unwrap();
        let server = TestServer::start(Setup {
            toml: Some(&toml),
            path: "shared.toml",
            env: &env,
            context: Some(Arc::new(runtime)),
            ..Setup::default()
        })
        .await;
        servers.push(server);
    }

    let config = CallConfig::new(7);
    let token = voice_webhook_token(servers[0].addr, &config, TOKEN)
        .await
        .unwrap();
    let call = FakeCall::connect(servers[0].addr, with_token(7, &token)).await;
    call.stop();
    let record = call.closed(WAIT).await;
    assert_eq!(record.close.as_ref().map(|c| c.0), Some(1000));
    servers[0].sessions.ended(1, WAIT).await;

    refused(
        &servers[1],
        with_token(7, &token),
        "replayed on the other server",
    )
    .await;
    assert!(servers[1].sessions.all().is_empty(), "no session started");
    let series = r#"voxpipe_errors_total{kind="replayed_stream_token",source="twilio"}"#;
    assert_eq!(servers[1].metric(series).await, 1.0);

    // A fresh token still works on the second server.
    let fresh = CallConfig::new(8);
    let token = voice_webhook_token(servers[1].addr, &fresh, TOKEN)
        .await
        .unwrap();
    let call = FakeCall::connect(servers[1].addr, with_token(8, &token)).await;
    call.stop();
    let record = call.closed(WAIT).await;
    assert_eq!(record.close.as_ref().map(|c| c.0), Some(1000));
    servers[1].sessions.ended(1, WAIT).await;
}
