//! A voice session's lease across processes: a call whose process stops
//! mid-call is ended (`session_lost`) by the next process's sweep once its
//! grace has passed, with its turns and its after-call work; a live call,
//! and a text conversation between messages, are not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use support::processors::registry;
use support::redis_server::RedisServer;
use support::turns::turn;
use support::wait::eventually;
use voxpipe::agent::{SESSION_LOST, SessionMemory};
use voxpipe::conversation::Role;
use voxpipe::pipeline::EnvSource;
use voxpipe::pipeline_file::{PipelineConfig, parse_pipeline};
use voxpipe::store::time::unix_ms;
use voxpipe::store::{CallStatus, Store};

const GRACE_MS: u64 = 30_000;

fn pipeline(context: &str) -> PipelineConfig {
    let toml = format!(
        "[pipeline]\nname = \"parrot\"\n\n[[processor]]\ntype = \"parrot\"\n\n\
         [context]\n{context}lost_session_grace_secs = 30\nspool_dir = \"\"\n\n\
         [webhook]\nurl = \"http://127.0.0.1:9/hook\"\n"
    );
    parse_pipeline(Path::new("agent.toml"), &toml, &registry()).unwrap()
}

fn env(redis: &RedisServer) -> EnvSource {
    EnvSource::Fixed(Arc::new(HashMap::from([(
        "TEST_REDIS".to_owned(),
        redis.url(),
    )])))
}

/// Waits until `store` holds a lost-session check: the session's lease (a
/// write to Redis, which sends no notice of it).
async fn lease_noted(store: &Arc<dyn Store>) -> bool {
    eventually(Duration::from_secs(10), async || {
        store.next_lost_session_due().await.unwrap().is_some()
    })
    .await
}

/// The session starts and the user says `text`: back once it is written.
async fn says_one_turn(memory: &SessionMemory, text: &str) {
    memory.started();
    memory.record_turn(Arc::new(turn(0, Role::User, text, 0)));
    let mut progress = memory.progress();
    tokio::time::timeout(
        Duration::from_secs(10),
        progress.wait_for(|s| s.turns_written == 1),
    )
    .await
    .unwrap()
    .unwrap();
}

#[test]
fn a_call_whose_process_stopped_is_ended_by_the_next_process() {
    let redis = RedisServer::start();
    let config = pipeline("store = \"redis\"\nurl_env = \"TEST_REDIS\"\n");
    let env = env(&redis);
    // The first process: a call is answered and says one turn, and the
    // process stops mid-call (its runtime dropped, every task with it).
    {
        let process = tokio::runtime::Runtime::new().unwrap();
        let (runtime, memory) = process.block_on(async {
            let runtime = config.agent_runtime(&env).unwrap();
            let setup = config.session_setup("call-lost");
            let memory = runtime.open_session(&setup, "twilio").await;
            says_one_turn(&memory, "Hello?").await;
            assert!(lease_noted(runtime.store()).await, "no lease in Redis");
            (runtime, memory)
        });
        // The session outlives its process: dropped first, it would end
        // the call, as a session that stops does.
        drop(process);
        drop((runtime, memory));
    }
    let process = tokio::runtime::Runtime::new().unwrap();
    process.block_on(async {
        let runtime = config.agent_runtime(&env).unwrap();
        let store = runtime.store();
        let sweeper = runtime.lost_session_sweeper();
        // A sweep before the grace has passed ends nothing.
        assert_eq!(sweeper.end_due(unix_ms()).await.unwrap(), 0);
        let call = store.call("call-lost").await.unwrap().unwrap();
        assert_eq!(call.status, CallStatus::Active);
        assert_eq!(store.outbox_len().await.unwrap(), 0);
        // Once it has, the call is ended, with its turn and its webhook.
        let later = unix_ms() + GRACE_MS;
        assert_eq!(sweeper.end_due(later).await.unwrap(), 1);
        let call = store.call("call-lost").await.unwrap().unwrap();
        assert_eq!(call.status, CallStatus::Completed);
        assert_eq!(call.end_reason.as_deref(), Some(SESSION_LOST));
        let turns = store.turns("call-lost").await.unwrap();
        assert_eq!(turns.len(), 1);
        assert_eq!(turns[0].text, "Hello?");
        assert_eq!(store.outbox_len().await.unwrap(), 1);
        // Once.
        assert_eq!(sweeper.end_due(later + GRACE_MS).await.unwrap(), 0);
        assert_eq!(store.next_lost_session_due().await.unwrap(), None);
    });
}

#[tokio::test]
async fn a_session_that_ends_forgets_its_lease_and_a_text_message_keeps_none() {
    // The embedded store in a file (another process may read it after this
    // one): a store only in this process's memory keeps no lease.
    let dir = tempfile::tempdir().unwrap();
    let config = pipeline(&format!("path = {:?}\n", dir.path().join("context.jsonl")));
    let runtime = config
        .agent_runtime(&EnvSource::Fixed(Arc::default()))
        .unwrap();
    let store = Arc::clone(runtime.store());
    let voice = runtime
        .open_session(&config.session_setup("voice"), "webrtc")
        .await;
    voice.started();
    assert!(lease_noted(&store).await, "a voice session keeps a lease");
    voice.ended("hangup");
    voice.finished(Duration::from_secs(10)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), async || {
            store.next_lost_session_due().await.unwrap().is_none()
        })
        .await,
        "the lease outlived its session"
    );
    // A text conversation's message: the conversation goes on after it.
    let text = runtime
        .open_text_session(&config.session_setup("text"), "sms")
        .await;
    says_one_turn(&text, "Hi").await;
    assert_eq!(
        store.next_lost_session_due().await.unwrap(),
        None,
        "a text message's session took a lease"
    );
    text.detached();
    text.finished(Duration::from_secs(10)).await.unwrap();
    assert_eq!(store.next_lost_session_due().await.unwrap(), None);
    // And the sweep finds nothing to end, however late.
    let sweeper = runtime.lost_session_sweeper();
    assert_eq!(sweeper.end_due(u64::MAX / 2).await.unwrap(), 0);
    let call = store.call("text").await.unwrap().unwrap();
    assert_eq!(call.ended_at, None);
}

#[tokio::test]
async fn a_store_only_in_this_process_keeps_no_lease() {
    let config = pipeline("");
    let runtime = config
        .agent_runtime(&EnvSource::Fixed(Arc::default()))
        .unwrap();
    let store = Arc::clone(runtime.store());
    let voice = runtime
        .open_session(&config.session_setup("voice"), "twilio")
        .await;
    says_one_turn(&voice, "Hi").await;
    assert_eq!(store.next_lost_session_due().await.unwrap(), None);
}
