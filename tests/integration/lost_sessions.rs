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
use voxpipe::agent::turn_spool::{SpooledCall, SpooledStep, TurnSpool};
use voxpipe::agent::{SESSION_LOST, SessionMemory};
use voxpipe::conversation::Role;
use voxpipe::pipeline::EnvSource;
use voxpipe::pipeline_file::{PipelineConfig, parse_pipeline};
use voxpipe::store::time::unix_ms;
use voxpipe::store::{CallRecord, CallStatus, Interaction, LeaseHold, Segment, Store};

const GRACE_MS: u64 = 30_000;

fn pipeline(context: &str) -> PipelineConfig {
    spooling_pipeline(context, Path::new(""))
}

/// The same, its writers' turn spool in `spool`.
fn spooling_pipeline(context: &str, spool: &Path) -> PipelineConfig {
    let toml = format!(
        "[pipeline]\nname = \"parrot\"\n\n[[processor]]\ntype = \"parrot\"\n\n\
         [context]\n{context}lost_session_grace_secs = 30\nspool_dir = {spool:?}\n\n\
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

/// A call whose process stopped during an outage: its last turn and its
/// end left in the turn spool at `spool` (with the writer's hold), its
/// lease due. The process's spool lock goes with it.
async fn stopped_with_its_end_spooled(store: &Arc<dyn Store>, spool: &Path, call_id: &str) {
    let now = unix_ms();
    let mut record = CallRecord::pending(
        call_id,
        "webrtc",
        Segment::default(),
        Default::default(),
        now - 60_000,
    );
    record.status = CallStatus::Active;
    record.started_at = Some(voxpipe::store::time::rfc3339(now - 60_000));
    assert!(store.create_call(&record).await.unwrap());
    let hold = LeaseHold {
        holder: "w0000000000000001".into(),
        renewed_ms: now - GRACE_MS - 1_000,
        due_ms: now - 1_000,
    };
    assert!(store.renew_lease(call_id, &hold, false).await.unwrap());
    let stopped = TurnSpool::new(spool, store.identity());
    let entry = stopped.entry(now - 60_000);
    let said = turn(0, Role::User, "Are you there?", 1_000);
    let call = SpooledCall {
        version: 1,
        store: store.identity(),
        call_id: call_id.into(),
        lease_holder: Some(hold.holder),
        steps: vec![
            SpooledStep::Turn {
                turn: Interaction::from_turn(&said, 0),
            },
            SpooledStep::Ended {
                reason: "hangup".into(),
                at_ms: now - 40_000,
            },
            SpooledStep::AfterCall,
        ],
    };
    stopped.keep(&entry, &call).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_sweeps_only_after_its_spool_is_replayed() {
    let redis = RedisServer::start();
    let spool = tempfile::tempdir().unwrap();
    let config = spooling_pipeline(
        "store = \"redis\"\nurl_env = \"TEST_REDIS\"\n",
        spool.path(),
    );
    let runtime = Arc::new(config.agent_runtime(&env(&redis)).unwrap());
    let store = Arc::clone(runtime.store());
    stopped_with_its_end_spooled(&store, spool.path(), "spooled-end").await;

    // The next process on this disk starts its sweep first...
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stop_when = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let sweeper = runtime.lost_session_sweeper();
    let sweeping = tokio::spawn({
        let stop = stop_when(stopped.clone());
        async move { sweeper.run(stop).await }
    });
    // ...which claims nothing while the spool has not been replayed (a
    // sweep at its start would end the call at once).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let call = store.call("spooled-end").await.unwrap().unwrap();
    assert_eq!(call.ended_at, None, "ended before the spool was replayed");
    // Then its replayer writes the spooled turn and end, and lets go of
    // the writer's hold.
    let background = tokio::spawn({
        let runtime = Arc::clone(&runtime);
        let stop = futures_util::FutureExt::shared(Box::pin(stop_when(stopped)));
        async move { runtime.run_background(stop).await }
    });
    assert!(
        eventually(Duration::from_secs(20), async || {
            store.next_lost_session_due().await.unwrap().is_none()
        })
        .await,
        "the lease outlived the replayed end"
    );
    let call = store.call("spooled-end").await.unwrap().unwrap();
    assert_eq!(call.end_reason.as_deref(), Some("hangup"));
    let turns = store.turns("spooled-end").await.unwrap();
    assert_eq!(turns.len(), 1);
    stop.send_replace(true);
    sweeping.await.unwrap();
    background.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_without_a_replayer_replays_the_spool_itself_first() {
    let redis = RedisServer::start();
    let spool = tempfile::tempdir().unwrap();
    let config = spooling_pipeline(
        "store = \"redis\"\nurl_env = \"TEST_REDIS\"\n",
        spool.path(),
    );
    let runtime = config.agent_runtime(&env(&redis)).unwrap();
    let store = Arc::clone(runtime.store());
    stopped_with_its_end_spooled(&store, spool.path(), "no-replayer").await;
    // Only the sweep runs (a server whose background work is not started):
    // the spool's end is written first, not a lost session's.
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let sweeping = runtime.sweep_lost_sessions(async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    });
    let check = async {
        assert!(
            eventually(Duration::from_secs(20), async || {
                store.next_lost_session_due().await.unwrap().is_none()
            })
            .await,
            "the spooled call was not replayed"
        );
        let call = store.call("no-replayer").await.unwrap().unwrap();
        assert_eq!(call.end_reason.as_deref(), Some("hangup"));
        assert_eq!(store.turns("no-replayer").await.unwrap().len(), 1);
        stop.send_replace(true);
    };
    tokio::join!(sweeping, check);
}
