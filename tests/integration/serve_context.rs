//! `voxpipe serve` with a context store: each call is stored with its
//! parameters and segment, and `/health` reports the store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use support::fake::twilio_media::{CallConfig, FakeCall};
use support::mulaw::{silence, speech};
use support::redis_server::RedisServer;
use support::server::{Setup, TestServer};
use voxpipe::pipeline::EnvSource;
use voxpipe::pipeline_file::parse_pipeline;
use voxpipe::processors::ProcessorRegistry;
use voxpipe::store::{CallStatus, PromptKey};

const WAIT: Duration = Duration::from_secs(30);

const PARROT: &str = "[pipeline]\nname = \"parrot\"\n\n[[processor]]\ntype = \"parrot\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_call_is_stored_with_its_segment_and_health_follows_the_store() {
    let mut redis = RedisServer::start();
    let toml = format!(
        "{PARROT}\n[context]\nstore = \"redis\"\nurl_env = \"TEST_REDIS\"\nop_timeout_ms = 300\n"
    );
    let config = parse_pipeline(Path::new("p.toml"), &toml, &ProcessorRegistry::builtin()).unwrap();
    let env = EnvSource::Fixed(Arc::new(HashMap::from([(
        "TEST_REDIS".to_owned(),
        redis.url(),
    )])));
    let context = Arc::new(config.agent_runtime(&env).unwrap());
    let store = context.store().clone();
    let retail = PromptKey::Industry {
        industry: "retail".into(),
    };
    store
        .set_prompt(&retail, "You sell to shops.")
        .await
        .unwrap();
    let server = TestServer::start(Setup {
        toml: Some(PARROT),
        path: "p.toml",
        context: Some(Arc::clone(&context)),
        ..Setup::default()
    })
    .await;
    let (status, body) = server.get("/health").await;
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["checks"]["store"]["ok"], true);

    let mut call = CallConfig::new(1);
    call.custom_parameters
        .push(("industry".into(), "retail".into()));
    let call = FakeCall::connect(server.addr, call).await;
    call.say([speech(1_400, 2_000), silence(200)].concat());
    call.stop();
    let ended = server.sessions.ended(1, WAIT).await;
    let id = ended[0].session_id.clone();
    // The session's writer stores the call's end after the session ends.
    assert_eq!(context.drain_writers(WAIT).await, 0, "every writer stopped");
    let stored = store.call(&id).await.unwrap().unwrap();
    assert_eq!(stored.status, CallStatus::Completed);
    assert_eq!(stored.transport, "twilio");
    assert_eq!(stored.end_reason.as_deref(), Some("hangup"));
    assert_eq!(stored.segment.industry.as_deref(), Some("retail"));
    assert_eq!(stored.custom_parameters["From"], "+15550000001");
    assert_eq!(
        stored.prompt_source.as_deref(),
        Some("prompt:segment:*:retail")
    );

    redis.kill();
    let (status, body) = server.get("/health").await;
    assert_eq!(status, 503, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["checks"]["store"]["ok"], false);
    assert!(
        health["checks"]["store"]["error"]
            .as_str()
            .unwrap()
            .starts_with("redis store:"),
        "{health}"
    );
}
