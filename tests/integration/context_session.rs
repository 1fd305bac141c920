//! Sessions with a context store: the call's keys appear turn by turn
//! while it runs; Redis going down or stalling never touches the audio and
//! loses no turn; the same session runs on the embedded store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use support::fake::openai::{FakeOpenAi, verdict};
use support::processors::registry;
use support::redis_server::RedisServer;
use support::turns::{HandSession, turn};
use voxpipe::agent::turn_spool::TurnSpool;
use voxpipe::agent::writer::{AfterCall, WriterSettings, WriterStatus, spawn_writer};
use voxpipe::agent::{AgentRuntime, SessionMemory};
use voxpipe::conversation::Role;
use voxpipe::frame::{AudioFrame, FrameBody};
use voxpipe::pipeline::EnvSource;
use voxpipe::pipeline::ProcessorError;
use voxpipe::pipeline::{NamedProcessor, SessionClock};
use voxpipe::pipeline_file::{PipelineConfig, parse_pipeline};
use voxpipe::session::{SessionOptions, run_session};
use voxpipe::store::{CallRecord, CallStatus, Outcome, PromptKey, Segment, TacticsList};
use voxpipe::store::{RedisStore, Store, StoreError, StoreSettings};
use voxpipe::transport::TransportEnds;
use voxpipe::transport::file::FileInput;
use voxpipe::transport::{AudioSink, OutputTransport, Pacing};

const HOUR_MS: i64 = 3_600_000;

fn env(vars: &[(&str, String)]) -> EnvSource {
    EnvSource::Fixed(Arc::new(
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<HashMap<_, _>>(),
    ))
}

fn pipeline(toml: &str) -> PipelineConfig {
    parse_pipeline(Path::new("agent.toml"), toml, &registry()).unwrap()
}

async fn written(memory: &SessionMemory, turns: u64) {
    let mut progress = memory.progress();
    reaches(&mut progress, "the turn was written in time", |s| {
        s.turns_written >= turns
    })
    .await;
}

#[tokio::test]
async fn each_turn_is_in_redis_as_soon_as_it_completes() {
    let redis = RedisServer::start();
    let config = pipeline(
        "[pipeline]\nname = \"agent\"\n\n[context]\nstore = \"redis\"\nurl_env = \"TEST_REDIS\"\nprefix = \"acme:\"\ncountry = \"US\"\n",
    );
    let runtime = config
        .agent_runtime(&env(&[("TEST_REDIS", redis.url())]))
        .unwrap();
    let store = runtime.store().clone();
    store
        .add_tactics(
            TacticsList::Base,
            &["Ask about their budget".into(), "Offer a pilot".into()],
        )
        .await
        .unwrap();
    store
        .add_tactics(
            TacticsList::Winning,
            &["Anchor on ROI".into(), "offer a pilot".into()],
        )
        .await
        .unwrap();
    let retail = PromptKey::Industry {
        industry: "retail".into(),
    };
    store
        .set_prompt(&retail, "You sell to retailers.")
        .await
        .unwrap();

    let mut setup = config.session_setup("call-1");
    setup
        .custom_parameters
        .insert("industry".into(), "retail".into());
    let memory = runtime.open_session(&setup, "twilio").await;
    assert_eq!(
        memory.system_prompt("From the TOML."),
        "You sell to retailers.\n\nWinning tactics to use when appropriate:\n\
         - Anchor on ROI\n- offer a pilot\n- Ask about their budget"
    );
    assert_eq!(
        memory.segment(),
        &Segment {
            country: Some("US".into()),
            industry: Some("retail".into())
        }
    );

    let mut client = redis.client().await;
    let session = HandSession::start(&memory);
    session.say("user: It's too expensive.").await;
    written(&memory, 1).await;
    let items: Vec<String> = client
        .lrange("acme:call:call-1:interactions", 0, -1)
        .await
        .unwrap();
    assert_eq!(
        items.len(),
        1,
        "the first turn is stored before the second exists"
    );
    let first: serde_json::Value = serde_json::from_str(&items[0]).unwrap();
    assert_eq!(first["index"], 0);
    assert_eq!(first["role"], "user");
    assert_eq!(first["text"], "It's too expensive.");
    assert_eq!(first["interrupted"], false);
    let call: CallRecord =
        serde_json::from_str(&client.get::<_, String>("acme:call:call-1").await.unwrap()).unwrap();
    assert_eq!(call.status, CallStatus::Active);
    assert_eq!(call.transport, "twilio");
    assert_eq!(
        call.prompt_source.as_deref(),
        Some("prompt:segment:*:retail")
    );
    assert_eq!(call.custom_parameters["industry"], "retail");

    session.say("assistant: Let me show you the ROI.").await;
    written(&memory, 2).await;
    assert_eq!(
        client
            .llen::<_, i64>("acme:call:call-1:interactions")
            .await
            .unwrap(),
        2
    );

    session.end("hangup").await;
    let report = memory.finished(Duration::from_secs(10)).await.unwrap();
    assert_eq!(report.turns_written, 2);
    assert!(report.unwritten.is_empty());

    let call = store.call("call-1").await.unwrap().unwrap();
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.end_reason.as_deref(), Some("hangup"));
    for key in ["acme:call:call-1", "acme:call:call-1:interactions"] {
        let ttl: i64 = client.pttl(key).await.unwrap();
        assert!(ttl > 47 * HOUR_MS && ttl <= 48 * HOUR_MS, "{key}: {ttl}");
    }
    let roles: Vec<Role> = store
        .turns("call-1")
        .await
        .unwrap()
        .iter()
        .map(|t| t.role)
        .collect();
    assert_eq!(roles, [Role::User, Role::Assistant]);
}

/// Discards audio, counting it.
#[derive(Clone, Default)]
struct CountingSink(Arc<Mutex<usize>>);

impl AudioSink for CountingSink {
    fn write(&mut self, _audio: &AudioFrame) -> Result<(), ProcessorError> {
        *self.0.lock().unwrap() += 1;
        Ok(())
    }
}

/// Runs `config` (with a `fake_turns` processor) over `secs` of audio from
/// a file, returning the memory and how long the session took on the wall
/// clock (the store behind it is a real socket, so time cannot be paused).
async fn file_session(
    runtime: &AgentRuntime,
    config: &PipelineConfig,
    id: &str,
    secs: u64,
    realtime: bool,
) -> (SessionMemory, Duration, usize) {
    let setup = config.session_setup(id);
    let memory = runtime.open_session(&setup, "file").await;
    let sink = CountingSink::default();
    let ends = TransportEnds {
        input: NamedProcessor::new(
            "in",
            FileInput::new(vec![300; 16_000 * secs as usize], 16_000, realtime),
        ),
        output: NamedProcessor::new(
            "out",
            OutputTransport::new(sink.clone(), Pacing::InboundAudio { realtime }),
        ),
    };
    let started = Instant::now();
    let report = run_session(
        &config.processors,
        ends,
        SessionOptions {
            setup,
            clock: SessionClock::audio(),
            observers: vec![],
            memory: Some(memory.clone()),
        },
    )
    .await
    .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(report.end_reason, "end_of_input");
    // The parrot repeats the whole input once it has ended.
    assert_eq!(report.duration, Duration::from_secs(2 * secs));
    let frames = *sink.0.lock().unwrap();
    (memory, elapsed, frames)
}

const AGENT: &str = "[pipeline]\nname = \"agent\"\n\n[[processor]]\ntype = \"parrot\"\n\n\
    [[processor]]\ntype = \"fake_turns\"\nevery_frames = 25\n";

/// A whole session, then its evaluation, on `runtime`.
async fn full_session_and_evaluation(runtime: &AgentRuntime, config: &PipelineConfig) {
    let store = runtime.store();
    store
        .add_tactics(TacticsList::Base, &["Ask about their budget".into()])
        .await
        .unwrap();
    let (memory, _, _) = file_session(runtime, config, "call-2", 2, false).await;
    let report = memory.finished(Duration::from_secs(10)).await.unwrap();
    assert_eq!(report.turns_written, 4, "one turn per 0.5 s of audio");
    assert!(report.unwritten.is_empty());
    let turns = store.turns("call-2").await.unwrap();
    let texts: Vec<&str> = turns.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(texts, ["turn 0", "turn 1", "turn 2", "turn 3"]);
    assert_eq!(
        turns.iter().map(|t| t.index).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert_eq!(turns[1].session_ms, 1000);

    let worker = runtime.worker("test-worker").unwrap();
    assert_eq!(
        worker.drain().await.unwrap(),
        1,
        "the session queued one evaluation"
    );
    let call = store.call("call-2").await.unwrap().unwrap();
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.outcome, Some(Outcome::Success));
    assert_eq!(call.score, Some(0.9));
    assert_eq!(
        store.session_tactics("call-2").await.unwrap(),
        ["Anchor on ROI"]
    );
    assert_eq!(
        store.tactics(TacticsList::Winning).await.unwrap(),
        ["Anchor on ROI"]
    );
    assert_eq!(
        store.tactics(TacticsList::Base).await.unwrap(),
        ["Ask about their budget"]
    );
}

#[tokio::test]
async fn a_file_session_is_stored_and_evaluated_on_redis() {
    let redis = RedisServer::start();
    let judge = FakeOpenAi::judge().await;
    judge.push_chats([verdict("success", 0.9, &["Anchor on ROI"])]);
    let config = pipeline(&format!(
        "{AGENT}\n[context]\nstore = \"redis\"\nurl_env = \"TEST_REDIS\"\n\n\
         [evaluator]\nbase_url = \"{}\"\nmodel = \"judge-1\"\n",
        judge.base_url
    ));
    let runtime = config
        .agent_runtime(&env(&[("TEST_REDIS", redis.url())]))
        .unwrap();
    assert_eq!(runtime.store().backend(), "redis");
    full_session_and_evaluation(&runtime, &config).await;
    let request = &judge.chat_requests()[0];
    assert_eq!(request["model"], "judge-1");
    assert_eq!(request["response_format"]["type"], "json_object");
    let transcript = request["messages"][1]["content"].as_str().unwrap();
    assert!(
        transcript.contains("user: turn 0\nassistant: turn 1\n"),
        "{transcript}"
    );
}

#[tokio::test]
async fn with_no_redis_configured_the_same_session_runs_on_the_embedded_store() {
    let judge = FakeOpenAi::judge().await;
    judge.push_chats([verdict("success", 0.9, &["Anchor on ROI"])]);
    let config = pipeline(&format!(
        "{AGENT}\n[evaluator]\nbase_url = \"{}\"\n",
        judge.base_url
    ));
    let runtime = config.agent_runtime(&env(&[])).unwrap();
    assert_eq!(runtime.store().backend(), "memory");
    full_session_and_evaluation(&runtime, &config).await;
}

#[tokio::test]
async fn redis_killed_mid_call_and_restarted_loses_and_repeats_no_turn() {
    let mut redis = RedisServer::start_persistent();
    let spool = tempfile::tempdir().unwrap();
    let config = pipeline(&format!(
        "[pipeline]\nname = \"agent\"\n\n[context]\nstore = \"redis\"\nurl_env = \"TEST_REDIS\"\nop_timeout_ms = 500\nspool_dir = {:?}\n",
        spool.path()
    ));
    let runtime = config
        .agent_runtime(&env(&[("TEST_REDIS", redis.url())]))
        .unwrap();
    let setup = config.session_setup("call-3");
    let memory = runtime.open_session(&setup, "twilio").await;
    let session = HandSession::start(&memory);
    for n in 0..3 {
        session.say(&format!("user: before {n}")).await;
    }
    written(&memory, 3).await;

    redis.kill();
    for n in 0..4 {
        session.say(&format!("assistant: during {n}")).await;
    }
    // The call goes on: frames still flow while the turns wait.
    let audio = AudioFrame::from_samples(&[0; 320], 16_000, 1, Duration::ZERO);
    session
        .handle
        .queue_frame(FrameBody::InputAudio(audio))
        .await;
    assert_eq!(memory.progress().borrow().turns_written, 3);
    // The waiting turns are on disk too, should the process stop now.
    reaches(&mut memory.progress(), "the turns reach the spool", |s| {
        s.spooled == 4
    })
    .await;

    redis.restart();
    session.say("user: after").await;
    written(&memory, 8).await;
    // Written, so no longer spooled.
    reaches(
        &mut memory.progress(),
        "the spool file goes once its steps are written",
        |s| s.spooled == 0,
    )
    .await;
    let spooled_files = walk_files(spool.path());
    assert!(
        spooled_files.iter().all(|p| p.ends_with(".lock")),
        "{spooled_files:?}"
    );
    session.end("hangup").await;
    let report = memory.finished(Duration::from_secs(20)).await.unwrap();
    assert!(report.unwritten.is_empty(), "{:?}", report.unwritten);

    let turns = runtime.store().turns("call-3").await.unwrap();
    let texts: Vec<&str> = turns.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "before 0", "before 1", "before 2", "during 0", "during 1", "during 2", "during 3",
            "after"
        ]
    );
    assert_eq!(
        turns.iter().map(|t| t.index).collect::<Vec<_>>(),
        (0..8).collect::<Vec<u64>>()
    );
    let call = runtime.store().call("call-3").await.unwrap().unwrap();
    assert_eq!(call.status, CallStatus::Completed);
}

#[tokio::test]
async fn a_session_ending_while_redis_is_down_reports_exactly_what_it_could_not_write() {
    let mut redis = RedisServer::start();
    let store: Arc<dyn Store> = Arc::new(
        RedisStore::connect(
            &redis.url(),
            "REDIS_URL",
            StoreSettings {
                op_timeout: Duration::from_millis(300),
                ..StoreSettings::default()
            },
        )
        .unwrap(),
    );
    let record = CallRecord::pending(
        "call-4",
        "twilio",
        Segment::default(),
        Default::default(),
        0,
    );
    let settings = WriterSettings {
        retry_initial: Duration::from_millis(20),
        retry_max: Duration::from_millis(100),
        flush_timeout: Duration::from_millis(500),
        on_completed: Vec::new(),
        // Without a spool, what was not written is reported (and logged).
        spool: None,
        lease_holder: None,
    };
    let (recorder, mut progress) = spawn_writer(Arc::clone(&store), record, settings);
    recorder.started();
    recorder.record(Arc::new(turn(0, Role::User, "kept", 0)));
    progress.wait_for(|s| s.turns_written == 1).await.unwrap();

    redis.kill();
    recorder.record(Arc::new(turn(1, Role::Assistant, "lost one", 100)));
    recorder.record(Arc::new(turn(2, Role::User, "lost two", 200)));
    recorder.ended("hangup");
    let began = Instant::now();
    let status = tokio::time::timeout(
        Duration::from_secs(10),
        progress.wait_for(|s| s.done.is_some()),
    )
    .await
    .expect("the writer gives up after its flush time")
    .unwrap()
    .clone();
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );
    let report = status.done.unwrap();
    assert_eq!(report.turns_written, 1);
    assert_eq!(report.unwritten.len(), 3, "{:?}", report.unwritten);
    assert_eq!(report.unwritten[..2], ["turn 1", "turn 2"]);
    assert!(report.unwritten[2].starts_with("call status change Ended { reason: \"hangup\""));
}

/// Every file under `dir`.
fn walk_files(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.file_type().unwrap().is_dir() {
            files.extend(walk_files(&entry.path()));
        } else {
            files.push(entry.path().display().to_string());
        }
    }
    files
}

/// Waits (at most 20 s) until the writer's progress satisfies `done`.
async fn reaches(
    progress: &mut tokio::sync::watch::Receiver<WriterStatus>,
    what: &str,
    done: impl FnMut(&WriterStatus) -> bool,
) -> WriterStatus {
    tokio::time::timeout(Duration::from_secs(20), progress.wait_for(done))
        .await
        .expect(what)
        .expect("the writer's status")
        .clone()
}

/// A writer's settings that keep its steps in `spool` while the store
/// fails, retrying every `retry`.
fn spooling(
    spool: &Arc<TurnSpool>,
    retry: Duration,
    flush_timeout: Duration,
    on_completed: Vec<Arc<dyn AfterCall>>,
) -> WriterSettings {
    WriterSettings {
        retry_initial: retry,
        retry_max: retry,
        flush_timeout,
        on_completed,
        spool: Some(Arc::clone(spool)),
        lease_holder: None,
    }
}

fn redis_store(redis: &RedisServer) -> Arc<dyn Store> {
    Arc::new(
        RedisStore::connect(
            &redis.url(),
            "REDIS_URL",
            StoreSettings {
                op_timeout: Duration::from_millis(300),
                ..StoreSettings::default()
            },
        )
        .unwrap(),
    )
}

/// Counts the after-call hooks run (an evaluation job, a webhook).
#[derive(Debug, Default)]
struct CountedAfterCall(std::sync::atomic::AtomicUsize);

#[async_trait::async_trait]
impl AfterCall for CountedAfterCall {
    async fn queue(&self, _store: &dyn Store, _call_id: &str) -> Result<(), StoreError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn turns_of_a_call_ending_in_a_long_redis_outage_are_written_once_redis_is_back() {
    let mut redis = RedisServer::start_persistent();
    let store = redis_store(&redis);
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(TurnSpool::new(dir.path(), store.identity()));
    let hook = Arc::new(CountedAfterCall::default());
    let settings = spooling(
        &spool,
        Duration::from_millis(50),
        Duration::from_millis(500),
        vec![Arc::clone(&hook) as Arc<dyn AfterCall>],
    );
    let record = CallRecord::pending(
        "call-7",
        "twilio",
        Segment::default(),
        Default::default(),
        0,
    );
    let (recorder, mut progress) = spawn_writer(Arc::clone(&store), record, settings.clone());
    recorder.started();
    recorder.record(Arc::new(turn(0, Role::User, "kept", 0)));
    progress.wait_for(|s| s.turns_written == 1).await.unwrap();

    redis.kill();
    recorder.record(Arc::new(turn(1, Role::Assistant, "spooled one", 100)));
    recorder.record(Arc::new(turn(2, Role::User, "spooled two", 200)));
    recorder.ended("hangup");
    let status = tokio::time::timeout(
        Duration::from_secs(10),
        progress.wait_for(|s| s.done.is_some()),
    )
    .await
    .expect("the writer gives up after its flush time")
    .unwrap()
    .clone();
    let report = status.done.unwrap();
    assert!(report.unwritten.is_empty(), "{:?}", report.unwritten);
    assert_eq!(report.spooled[..2], ["turn 1", "turn 2"]);
    assert!(report.spooled[2].starts_with("call status change Ended"));
    // Redis still down: the replayer keeps the call.
    let waiting = spool.replay(&*store, &settings.on_completed).await;
    assert_eq!((waiting.written, waiting.waiting), (0, 1));

    redis.restart();
    let replayed = spool.replay(&*store, &settings.on_completed).await;
    assert_eq!(replayed.written, 1);
    let turns = store.turns("call-7").await.unwrap();
    let texts: Vec<&str> = turns.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(texts, ["kept", "spooled one", "spooled two"]);
    assert_eq!(turns.iter().map(|t| t.index).collect::<Vec<_>>(), [0, 1, 2]);
    let call = store.call("call-7").await.unwrap().unwrap();
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.end_reason.as_deref(), Some("hangup"));
    assert_eq!(hook.0.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_second_outage_in_one_call_keeps_the_writer_file_from_the_replayer() {
    let mut redis = RedisServer::start_persistent();
    let store = redis_store(&redis);
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(TurnSpool::new(dir.path(), store.identity()));
    let settings = spooling(
        &spool,
        Duration::from_millis(50),
        Duration::from_secs(60),
        Vec::new(),
    );
    let record = CallRecord::pending(
        "call-9",
        "twilio",
        Segment::default(),
        Default::default(),
        0,
    );
    let (recorder, mut progress) = spawn_writer(Arc::clone(&store), record, settings);
    recorder.started();
    let mut said = vec!["before".to_owned()];
    recorder.record(Arc::new(turn(0, Role::User, "before", 0)));
    progress.wait_for(|s| s.turns_written == 1).await.unwrap();
    for outage in 0..2 {
        redis.kill();
        for n in 0..2 {
            let text = format!("outage {outage} turn {n}");
            let index = said.len() as u64;
            recorder.record(Arc::new(turn(index, Role::User, &text, index * 100)));
            said.push(text);
        }
        reaches(&mut progress, "the outage's turns reach the spool", |s| {
            s.spooled == 2
        })
        .await;
        // The writer still owns its file: the replayer leaves it.
        assert_eq!(
            spool.replay(&*store, &[]).await,
            voxpipe::agent::turn_spool::ReplayReport::default(),
            "outage {outage}"
        );
        redis.restart();
        reaches(&mut progress, "the spool file goes once written", |s| {
            s.spooled == 0
        })
        .await;
    }
    recorder.ended("hangup");
    let status = progress
        .wait_for(|s| s.done.is_some())
        .await
        .unwrap()
        .clone();
    assert!(status.done.unwrap().unwritten.is_empty());
    let turns = store.turns("call-9").await.unwrap();
    let texts: Vec<&str> = turns.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(texts, said);
}

#[tokio::test]
async fn a_retried_turn_whose_place_another_writer_took_goes_after_it() {
    let mut redis = RedisServer::start_persistent();
    let store = redis_store(&redis);
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(TurnSpool::new(dir.path(), store.identity()));
    // Time for another writer to take the place between two tries.
    let settings = spooling(
        &spool,
        Duration::from_secs(4),
        Duration::from_secs(60),
        Vec::new(),
    );
    let record = CallRecord::pending("call-10", "chat", Segment::default(), Default::default(), 0);
    let (recorder, mut progress) = spawn_writer(Arc::clone(&store), record, settings);
    recorder.started();
    recorder.record(Arc::new(turn(0, Role::User, "first message", 0)));
    progress.wait_for(|s| s.turns_written == 1).await.unwrap();
    redis.kill();
    recorder.record(Arc::new(turn(1, Role::Assistant, "its answer", 100)));
    // Tried once, failed (and so spooled).
    reaches(&mut progress, "the failed turn reaches the spool", |s| {
        s.spooled == 1
    })
    .await;
    redis.restart();
    // The conversation's next message, from another writer, takes index 1.
    let next =
        voxpipe::store::Interaction::from_turn(&turn(1, Role::User, "next message", 5_000), 1);
    tokio::time::timeout(Duration::from_secs(20), async {
        while store.append_turn("call-10", &next).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("Redis is back");
    assert_eq!(
        progress.borrow().turns_written,
        1,
        "the next message went in before the writer's retry"
    );
    reaches(&mut progress, "the retried turn is written", |s| {
        s.turns_written == 2
    })
    .await;
    let turns = store.turns("call-10").await.unwrap();
    let texts: Vec<&str> = turns.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(texts, ["first message", "next message", "its answer"]);
}

#[test]
fn turns_kept_during_an_outage_survive_the_process_stopping() {
    let mut redis = RedisServer::start_persistent();
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().to_owned();
    // The first process: a call goes on while Redis is down, and the
    // process stops (its runtime dropped) before the call ends.
    {
        let process = tokio::runtime::Runtime::new().unwrap();
        // The session stays alive until the process stops: dropped first,
        // it would end the call (a session dropped), as it should.
        let session = process.block_on(async {
            let store = redis_store(&redis);
            let spool = Arc::new(TurnSpool::new(&spool_dir, store.identity()));
            let settings = spooling(
                &spool,
                Duration::from_millis(50),
                Duration::from_secs(60),
                Vec::new(),
            );
            let record = CallRecord::pending(
                "call-8",
                "twilio",
                Segment::default(),
                Default::default(),
                0,
            );
            let (recorder, mut progress) = spawn_writer(Arc::clone(&store), record, settings);
            recorder.started();
            recorder.record(Arc::new(turn(0, Role::User, "before", 0)));
            progress.wait_for(|s| s.turns_written == 1).await.unwrap();
            redis.kill();
            recorder.record(Arc::new(turn(1, Role::Assistant, "during one", 100)));
            recorder.record(Arc::new(turn(2, Role::User, "during two", 200)));
            // Both turns are on disk as soon as the writer has them.
            reaches(&mut progress, "the turns reach the spool", |s| {
                s.spooled == 2
            })
            .await;
            recorder
        });
        drop(process);
        drop(session);
    }
    // The next process, once Redis is back.
    redis.restart();
    let process = tokio::runtime::Runtime::new().unwrap();
    process.block_on(async {
        let store = redis_store(&redis);
        let spool = Arc::new(TurnSpool::new(&spool_dir, store.identity()));
        let replayed = spool.replay(&*store, &[]).await;
        assert_eq!(replayed.written, 1);
        let turns = store.turns("call-8").await.unwrap();
        let texts: Vec<&str> = turns.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, ["before", "during one", "during two"]);
        // The call never ended: it stays active, as it was.
        let call = store.call("call-8").await.unwrap().unwrap();
        assert_eq!(call.status, CallStatus::Active);
    });
}

#[tokio::test]
async fn a_stalled_store_never_holds_up_the_audio() {
    // A "Redis" that accepts connections and never answers.
    let url = format!("redis://{}", support::net::silent_server().await);
    let spool = tempfile::tempdir().unwrap();
    let config = pipeline(&format!(
        "{AGENT}\n[context]\nstore = \"redis\"\nurl_env = \"TEST_REDIS\"\n\
         op_timeout_ms = 60000\nflush_timeout_secs = 0.3\nprompt_timeout_ms = 100\n\
         spool_dir = {:?}\n",
        spool.path()
    ));
    let runtime = config.agent_runtime(&env(&[("TEST_REDIS", url)])).unwrap();
    // Two seconds of audio in real time, a turn every half second, every
    // store operation stuck.
    let (memory, elapsed, frames) = file_session(&runtime, &config, "call-5", 2, true).await;
    assert_eq!(frames, 100, "every 20 ms of echo left");
    assert!(
        elapsed < Duration::from_millis(4_300),
        "the session took {elapsed:?} for 2 s of input and 2 s of echo"
    );
    let report = memory.finished(Duration::from_secs(5)).await.unwrap();
    assert_eq!(report.turns_written, 0);
    // A store that never answers is given up at the flush time like one
    // that refuses: what it holds waits in the spool.
    assert!(report.unwritten.is_empty(), "{:?}", report.unwritten);
    assert_eq!(
        report
            .spooled
            .iter()
            .filter(|u| u.starts_with("turn "))
            .count(),
        4,
        "{:?}",
        report.spooled
    );
    assert!(
        memory.prompt().stored.is_none(),
        "the TOML's prompt after the read timed out"
    );
}
