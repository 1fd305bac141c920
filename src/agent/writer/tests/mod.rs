//! A turn's retries against the embedded store: an earlier attempt that
//! landed, its reply lost, is found wherever the store put it. A writer
//! whose store stalls keeps what it is sent on disk at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use super::*;
use crate::agent::turn_spool::{SpooledCall, SpooledStep};
use crate::conversation::Role;
use crate::store::{
    Appended, CallStore, Interaction, MemoryStore, RedisStore, Segment, StoreSettings,
};

const CALL: &str = "call-1";

fn turn(index: u64, text: &str) -> Arc<Turn> {
    Arc::new(Turn {
        index,
        role: if index.is_multiple_of(2) {
            Role::User
        } else {
            Role::Assistant
        },
        text: text.to_owned(),
        interrupted: false,
        tool_calls: Vec::new(),
        at_ms: index * 1_000,
        unix_ms: 1_800_000_000_000 + index * 1_000,
        latency_ms: None,
        agent: None,
        reflection: None,
    })
}

/// A store holding the first `count` turns of the call.
async fn store_with(count: u64) -> MemoryStore {
    let store = MemoryStore::new(StoreSettings::default());
    for index in 0..count {
        let stored = Interaction::from_turn(&turn(index, &format!("turn {index}")), index);
        assert!(matches!(
            store.append_turn(CALL, &stored).await.unwrap(),
            Appended::Added
        ));
    }
    store
}

async fn texts(store: &MemoryStore) -> Vec<String> {
    let turns = store.turns(CALL).await.unwrap();
    turns.into_iter().map(|t| t.text).collect()
}

/// A first attempt at `step` that reaches the store, whose reply is lost:
/// to the writer it failed, so its position is as it was (the step keeps
/// the index it was given, as a failed append leaves it).
async fn landed_unanswered(store: &MemoryStore, step: &mut Step, next_index: u64) {
    let mut unanswered = next_index;
    step.perform(store, CALL, &mut unanswered, true)
        .await
        .unwrap();
    step.attempted = true;
}

#[tokio::test]
async fn a_retry_after_a_gap_finds_its_turn_where_the_store_put_it() {
    // Turns 3 and 4 were lost (the store restarted empty, say): the
    // writer's next turn is 5, and the store appends it at 3.
    let store = store_with(3).await;
    let mut next_index = 5;
    let mut step = Step::new(Action::Turn(turn(5, "the answer")));
    landed_unanswered(&store, &mut step, next_index).await;
    assert_eq!(texts(&store).await.len(), 4, "landed after the gap");

    step.perform(&store, CALL, &mut next_index, false)
        .await
        .unwrap();
    assert_eq!(
        texts(&store).await,
        ["turn 0", "turn 1", "turn 2", "the answer"],
        "stored once"
    );
    // The next turn goes right after it, with no gap reported.
    assert_eq!(next_index, 4);
    let mut next = Step::new(Action::Turn(turn(6, "and then")));
    next.perform(&store, CALL, &mut next_index, true)
        .await
        .unwrap();
    assert_eq!(texts(&store).await.len(), 5);
    assert_eq!(next_index, 5);
}

#[tokio::test]
async fn a_retry_after_a_landing_at_its_index_writes_nothing_more() {
    let store = store_with(3).await;
    let mut next_index = 3;
    let mut step = Step::new(Action::Turn(turn(3, "the answer")));
    landed_unanswered(&store, &mut step, next_index).await;

    step.perform(&store, CALL, &mut next_index, false)
        .await
        .unwrap();
    assert_eq!(
        texts(&store).await,
        ["turn 0", "turn 1", "turn 2", "the answer"]
    );
    assert_eq!(next_index, 4);
}

#[tokio::test]
async fn a_retry_whose_first_attempt_never_landed_appends_its_turn() {
    let store = store_with(3).await;
    let mut next_index = 3;
    // The first attempt failed before reaching the store: the step kept
    // its index.
    let mut step = Step::new(Action::Turn(turn(3, "the answer")));
    step.index = Some(3);
    step.attempted = true;

    step.perform(&store, CALL, &mut next_index, false)
        .await
        .unwrap();
    assert_eq!(
        texts(&store).await,
        ["turn 0", "turn 1", "turn 2", "the answer"]
    );
    assert_eq!(next_index, 4);
}

/// A "Redis" that accepts connections and never answers: its URL.
async fn silent_redis() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("redis://{addr}")
}

/// The one file in the spool at `dir`.
fn spool_file(dir: &Path) -> SpooledCall {
    let mut files = Vec::new();
    for owner in std::fs::read_dir(dir).unwrap() {
        for file in std::fs::read_dir(owner.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    assert_eq!(files.len(), 1, "{files:?}");
    serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap()
}

fn spooled_texts(call: &SpooledCall) -> Vec<String> {
    call.steps
        .iter()
        .map(|step| match step {
            SpooledStep::Turn { turn } => turn.text.clone(),
            other => other.kind().to_owned(),
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_turn_recorded_while_a_retry_is_in_flight_reaches_the_spool_at_once() {
    const STALL: Duration = Duration::from_secs(60);
    let store = RedisStore::connect(
        &silent_redis().await,
        "REDIS_URL",
        StoreSettings {
            op_timeout: STALL,
            ..StoreSettings::default()
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(TurnSpool::new(dir.path(), store.identity()));
    let settings = WriterSettings {
        // Retried at once: a command sent after the first failure finds
        // the retry in flight.
        retry_initial: Duration::ZERO,
        retry_max: Duration::ZERO,
        flush_timeout: Duration::from_secs(1),
        on_completed: Vec::new(),
        spool: Some(spool),
    };
    let record = CallRecord::pending(CALL, "twilio", Segment::default(), Default::default(), 0);
    let (recorder, mut progress) = spawn_writer(Arc::new(store), record, settings);
    // Creating the call timed out: the writer is failing, the call state
    // in the spool, its retry stalled in turn.
    progress.wait_for(|s| s.spooled == 1).await.unwrap();

    let sent = Instant::now();
    recorder.record(turn(0, "said during the retry"));
    progress.wait_for(|s| s.spooled == 2).await.unwrap();
    assert!(
        sent.elapsed() < STALL / 2,
        "on disk only after {:?}, when the write in flight failed",
        sent.elapsed()
    );
    assert_eq!(
        spooled_texts(&spool_file(dir.path())),
        ["create", "said during the retry"]
    );

    // Behind it, in order; the stalled retry is given up at the flush
    // deadline and everything is left in the spool.
    recorder.record(turn(1, "and then"));
    recorder.ended("hangup");
    let status = progress
        .wait_for(|s| s.done.is_some())
        .await
        .unwrap()
        .clone();
    assert!(sent.elapsed() < STALL / 2, "{:?}", sent.elapsed());
    let report = status.done.unwrap();
    assert!(report.unwritten.is_empty(), "{:?}", report.unwritten);
    assert_eq!(
        report.spooled[..3],
        ["call state (pending)", "turn 0", "turn 1"]
    );
    assert_eq!(
        spooled_texts(&spool_file(dir.path())),
        ["create", "said during the retry", "and then", "ended"]
    );
}
