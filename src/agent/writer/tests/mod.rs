//! A turn's retries against the embedded store: an earlier attempt that
//! landed, its reply lost, is found wherever the store put it. The
//! writer's spool side is in `spool.rs`, the runtime's hooks and commands
//! taken in during an attempt in `hooks.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::path::Path;

use async_trait::async_trait;

use super::*;
use crate::agent::turn_spool::{SpooledCall, SpooledStep};
use crate::conversation::Role;
use crate::store::{
    Appended, CallStore, Interaction, MemoryStore, RedisStore, Segment, StoreError, StoreSettings,
};

mod hooks;
mod spool;

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

async fn texts(store: &dyn Store) -> Vec<String> {
    let turns = store.turns(CALL).await.unwrap();
    turns.into_iter().map(|t| t.text).collect()
}

/// A first attempt at `step` that reaches the store, whose reply is lost:
/// to the writer it failed, so its position is as it was (the step keeps
/// the index it was given, as a failed append leaves it).
async fn landed_unanswered(store: &MemoryStore, step: &mut Step, next_index: u64) {
    let mut unanswered = next_index;
    step.perform(store, CALL, None, &mut unanswered, true)
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

    step.perform(&store, CALL, None, &mut next_index, false)
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
    next.perform(&store, CALL, None, &mut next_index, true)
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

    step.perform(&store, CALL, None, &mut next_index, false)
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

    step.perform(&store, CALL, None, &mut next_index, false)
        .await
        .unwrap();
    assert_eq!(
        texts(&store).await,
        ["turn 0", "turn 1", "turn 2", "the answer"]
    );
    assert_eq!(next_index, 4);
}

/// A "Redis" that accepts connections and never answers: its URL, and
/// how many connections it has taken.
async fn silent_redis() -> (String, watch::Receiver<usize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted, count) = watch::channel(0);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
            accepted.send_modify(|n| *n += 1);
        }
    });
    (format!("redis://{addr}"), count)
}

/// A store that never answers, its operations failing after `stall`, and
/// how many connections it has taken.
async fn silent_store(stall: Duration) -> (RedisStore, watch::Receiver<usize>) {
    let (url, accepted) = silent_redis().await;
    let settings = StoreSettings {
        op_timeout: stall,
        ..StoreSettings::default()
    };
    let store = RedisStore::connect(&url, "REDIS_URL", settings).unwrap();
    (store, accepted)
}

/// The one file in the spool at `dir`.
fn spool_file(dir: &Path) -> SpooledCall {
    let files = spool_files(dir);
    assert_eq!(files.len(), 1, "{files:?}");
    serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap()
}

/// The spool files at `dir`.
fn spool_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let Ok(owners) = std::fs::read_dir(dir) else {
        return files;
    };
    for owner in owners {
        for file in std::fs::read_dir(owner.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    files
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

/// Settings that retry at once, with `spool`.
fn spooling(spool: &Arc<TurnSpool>) -> WriterSettings {
    WriterSettings {
        retry_initial: Duration::ZERO,
        retry_max: Duration::ZERO,
        flush_timeout: Duration::from_secs(60),
        on_completed: Vec::new(),
        spool: Some(Arc::clone(spool)),
        lease_holder: None,
    }
}

/// A step standing for a store call the test answers, put at the front of
/// a writer's queue: each attempt waits until the test answers it, then
/// fails (transiently) or succeeds as told.
#[derive(Debug)]
struct HeldStep {
    calls: watch::Sender<usize>,
    answer: mpsc::UnboundedSender<bool>,
    answers: tokio::sync::Mutex<mpsc::UnboundedReceiver<bool>>,
}

impl HeldStep {
    fn new() -> Arc<Self> {
        let (answer, answers) = mpsc::unbounded_channel();
        Arc::new(HeldStep {
            calls: watch::Sender::new(0),
            answer,
            answers: tokio::sync::Mutex::new(answers),
        })
    }

    /// A writer of [`CALL`] on `store` whose queue begins with this step.
    fn first_of(
        self: &Arc<Self>,
        store: Arc<dyn Store>,
        settings: WriterSettings,
    ) -> (TurnRecorder, WriterDone) {
        let held: Arc<dyn AfterCall> = Arc::clone(self) as _;
        let steps = VecDeque::from([Step::new(Action::After(held))]);
        spawn(store, CALL.into(), steps, settings)
    }

    /// Waits until the step has been attempted `count` times.
    async fn attempted(&self, count: usize) {
        let mut calls = self.calls.subscribe();
        calls.wait_for(|n| *n >= count).await.unwrap();
    }

    /// Answers the attempt in flight (or the next one).
    fn answer(&self, succeeds: bool) {
        self.answer.send(succeeds).unwrap();
    }
}

#[async_trait]
impl AfterCall for HeldStep {
    async fn queue(&self, _store: &dyn Store, _call_id: &str) -> Result<(), StoreError> {
        self.calls.send_modify(|n| *n += 1);
        match self.answers.lock().await.recv().await {
            Some(false) => Err(StoreError::Timeout(Duration::from_secs(2))),
            _ => Ok(()),
        }
    }
}

/// Waits for `event` while a blocking task (a disk that hangs) keeps
/// paused time from moving on its own: the clock moves 100 ms each time
/// the other tasks have had their turn, and the test fails once `limit`
/// has passed.
async fn within<T>(limit: Duration, event: impl Future<Output = T>) -> T {
    let started = Instant::now();
    tokio::pin!(event);
    loop {
        tokio::select! {
            biased;
            out = &mut event => return out,
            () = tokio::task::yield_now() => {}
        }
        assert!(started.elapsed() < limit, "not within {limit:?}");
        tokio::time::advance(Duration::from_millis(100)).await;
    }
}

/// Waits for `event`, failing if the paused clock passes a minute first:
/// a writer that never gets there, while nothing blocks the clock, would
/// otherwise keep the test waiting for ever (the clock jumping from one
/// store timeout to the next).
async fn soon<T>(event: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), event)
        .await
        .expect("not within a minute")
}

/// The writer's report, once it has stopped.
async fn report(progress: &mut WriterDone) -> WriteReport {
    let status = soon(progress.wait_for(|s| s.done.is_some())).await.unwrap();
    status.done.clone().unwrap()
}
