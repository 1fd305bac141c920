//! The spool against the embedded store, on temporary directories.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[cfg(unix)]
mod disk;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::agent::after_call::AfterCall;
use crate::conversation::Role;
use crate::store::{
    CallStatus, CallStore, MemoryStore, RedisStore, Segment, Store, StoreError, StoreSettings,
};

const STORE: &str = "memory:test";

#[derive(Debug, Default)]
struct CountingHook(AtomicUsize);

#[async_trait]
impl AfterCall for CountingHook {
    async fn queue(&self, _store: &dyn Store, _call_id: &str) -> Result<(), StoreError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn interaction(index: u64, text: &str) -> Interaction {
    Interaction {
        index,
        role: if index.is_multiple_of(2) {
            Role::User
        } else {
            Role::Assistant
        },
        text: text.to_owned(),
        timestamp: format!("2026-12-07T12:00:0{index}Z"),
        session_ms: index * 1000,
        interrupted: false,
        tool_calls: Vec::new(),
        latency_ms: None,
        agent: None,
        reflection: None,
    }
}

fn record(call_id: &str) -> CallRecord {
    CallRecord::pending(call_id, "twilio", Segment::default(), Default::default(), 1)
}

fn whole_call(call_id: &str) -> SpooledCall {
    SpooledCall {
        version: VERSION,
        store: STORE.to_owned(),
        call_id: call_id.to_owned(),
        lease_holder: None,
        steps: vec![
            SpooledStep::Create {
                record: Box::new(record(call_id)),
            },
            SpooledStep::Started { at_ms: 2 },
            SpooledStep::Turn {
                turn: interaction(0, "hello"),
            },
            SpooledStep::Turn {
                turn: interaction(1, "hi, how can I help?"),
            },
            SpooledStep::Ended {
                reason: "hangup".to_owned(),
                at_ms: 3,
            },
            SpooledStep::AfterCall,
        ],
    }
}

fn hooks() -> (Arc<CountingHook>, Vec<Arc<dyn AfterCall>>) {
    let hook = Arc::new(CountingHook::default());
    let hooks = vec![Arc::clone(&hook) as Arc<dyn AfterCall>];
    (hook, hooks)
}

fn spool(dir: &Path) -> Arc<TurnSpool> {
    Arc::new(TurnSpool::new(dir, STORE))
}

/// `call` kept by a writer that has then stopped.
fn left_by_a_writer(spool: &TurnSpool, call: &SpooledCall) -> SpoolEntry {
    let entry = spool.entry(crate::store::time::unix_ms());
    spool.keep(&entry, call).unwrap();
    spool.release(&entry);
    entry
}

async fn texts(store: &dyn Store, call_id: &str) -> Vec<String> {
    let turns = store.turns(call_id).await.unwrap();
    turns.into_iter().map(|t| t.text).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_call_is_replayed_only_once_its_writer_lets_it_go() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool(dir.path());
    let store = MemoryStore::new(StoreSettings::default());
    let (hook, hooks) = hooks();
    let entry = spool.entry(crate::store::time::unix_ms());
    spool.keep(&entry, &whole_call("call-1")).unwrap();

    let live = spool.replay(&store, &hooks).await;
    assert_eq!(live, ReplayReport::default());
    assert!(store.call("call-1").await.unwrap().is_none());

    spool.release(&entry);
    let report = spool.replay(&store, &hooks).await;
    assert_eq!(report.written, 1);
    let call = store.call("call-1").await.unwrap().unwrap();
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(
        texts(&store, "call-1").await,
        ["hello", "hi, how can I help?"]
    );
    assert_eq!(hook.0.load(Ordering::SeqCst), 1);
    // The file is gone: a second pass writes nothing.
    assert_eq!(spool.replay(&store, &hooks).await, ReplayReport::default());
    assert_eq!(hook.0.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn turns_already_written_are_not_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool(dir.path());
    let store = MemoryStore::new(StoreSettings::default());
    // The writer got the call and its first turn in before it stopped.
    store.create_call(&record("call-2")).await.unwrap();
    store
        .append_turn("call-2", &interaction(0, "hello"))
        .await
        .unwrap();
    left_by_a_writer(&spool, &whole_call("call-2"));
    let (_, hooks) = hooks();
    assert_eq!(spool.replay(&store, &hooks).await.written, 1);
    assert_eq!(
        texts(&store, "call-2").await,
        ["hello", "hi, how can I help?"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn turns_whose_places_were_taken_go_after_the_transcript_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool(dir.path());
    let store = MemoryStore::new(StoreSettings::default());
    // A later writer of the same call (the conversation's next
    // message) wrote its turns where the spooled ones were to go.
    store.create_call(&record("call-3")).await.unwrap();
    for (i, text) in ["next message", "its answer", "and more"]
        .iter()
        .enumerate()
    {
        let mut turn = interaction(i as u64, text);
        turn.timestamp = format!("2026-12-07T13:00:0{i}Z");
        store.append_turn("call-3", &turn).await.unwrap();
    }
    left_by_a_writer(&spool, &whole_call("call-3"));
    let (_, hooks) = hooks();
    assert_eq!(spool.replay(&store, &hooks).await.written, 1);
    let turns = store.turns("call-3").await.unwrap();
    assert_eq!(
        turns.iter().map(|t| t.text.as_str()).collect::<Vec<_>>(),
        [
            "next message",
            "its answer",
            "and more",
            "hello",
            "hi, how can I help?"
        ]
    );
    assert_eq!(
        turns.iter().map(|t| t.index).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_file_replayed_again_after_a_gap_writes_its_turns_once() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool(dir.path());
    let store = MemoryStore::new(StoreSettings::default());
    // The transcript was lost (Redis restarted empty): the spooled
    // turns' indices are past its end.
    store.create_call(&record("call-11")).await.unwrap();
    let mut call = whole_call("call-11");
    call.steps = vec![
        SpooledStep::Turn {
            turn: interaction(5, "five"),
        },
        SpooledStep::Turn {
            turn: interaction(6, "six"),
        },
    ];
    // The same file twice (a pass cut short before its removal).
    left_by_a_writer(&spool, &call);
    left_by_a_writer(&spool, &call);
    let (_, hooks) = hooks();
    assert_eq!(spool.replay(&store, &hooks).await.written, 2);
    assert_eq!(texts(&store, "call-11").await, ["five", "six"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn two_writers_of_one_call_keep_a_file_each() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool(dir.path());
    let mut first = whole_call("call-4");
    first.steps.truncate(4);
    left_by_a_writer(&spool, &first);
    // A second writer of the same call, still running.
    let mut second = whole_call("call-4");
    second.steps = vec![SpooledStep::Turn {
        turn: interaction(2, "second writer's turn"),
    }];
    let live = spool.entry(crate::store::time::unix_ms());
    spool.keep(&live, &second).unwrap();
    let store = MemoryStore::new(StoreSettings::default());
    let (_, hooks) = hooks();
    // The first writer's file is written; the live one's is not touched.
    assert_eq!(spool.replay(&store, &hooks).await.written, 1);
    assert_eq!(
        texts(&store, "call-4").await,
        ["hello", "hi, how can I help?"]
    );
    spool.discard(&live);
    assert_eq!(spool.replay(&store, &hooks).await, ReplayReport::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_failing_store_leaves_the_call_for_the_next_pass() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool(dir.path());
    left_by_a_writer(&spool, &whole_call("call-5"));
    let (hook, hooks) = hooks();
    // Nothing listens on port 1: every operation fails, transiently.
    let down = RedisStore::connect(
        "redis://127.0.0.1:1",
        "REDIS_URL",
        StoreSettings {
            op_timeout: Duration::from_millis(500),
            ..StoreSettings::default()
        },
    )
    .unwrap();
    let replayed = spool.replayed();
    let report = spool.replay(&down, &hooks).await;
    assert_eq!((report.written, report.waiting), (0, 1));
    assert!(!*replayed.borrow(), "replayed with the call waiting");

    let store = MemoryStore::new(StoreSettings::default());
    assert_eq!(spool.replay(&store, &hooks).await.written, 1);
    assert_eq!(texts(&store, "call-5").await.len(), 2);
    assert_eq!(hook.0.load(Ordering::SeqCst), 1);
    assert!(*replayed.borrow(), "written, and not said so");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_spool_with_nothing_to_replay_says_so_after_its_first_pass() {
    let dir = tempfile::tempdir().unwrap();
    // Never made: no writer needed it yet.
    let spool = spool(&dir.path().join("spool"));
    let store = MemoryStore::new(StoreSettings::default());
    let replayed = spool.replayed();
    assert!(!*replayed.borrow());
    assert_eq!(spool.replay(&store, &[]).await, ReplayReport::default());
    assert!(*replayed.borrow());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_pass_that_left_a_file_to_another_pass_has_not_replayed_it() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool(dir.path());
    let entry = left_by_a_writer(&spool, &whole_call("call-10"));
    let owner = lock(&spool.owner).as_ref().unwrap().path.clone();
    let path = owner.join(&entry.name).display().to_string();
    let store = MemoryStore::new(StoreSettings::default());
    let replayed = spool.replayed();
    // Another pass (the replayer's, beside a sweep's) is writing it.
    lock(&spool.live).insert(path.clone(), None);
    assert_eq!(spool.replay(&store, &[]).await, ReplayReport::default());
    assert!(!*replayed.borrow(), "replayed while another pass writes");
    lock(&spool.live).remove(&path);
    assert_eq!(spool.replay(&store, &[]).await.written, 1);
    assert!(*replayed.borrow());
}

/// Notes the lease hold of each writer it runs for.
#[derive(Debug, Default)]
struct HolderHook(std::sync::Mutex<Vec<Option<String>>>);

#[async_trait]
impl AfterCall for HolderHook {
    async fn queue(&self, store: &dyn Store, call_id: &str) -> Result<(), StoreError> {
        self.queue_for_writer(store, call_id, None).await
    }

    async fn queue_for_writer(
        &self,
        _store: &dyn Store,
        _call_id: &str,
        lease_holder: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut holders = self.0.lock().unwrap_or_else(|e| e.into_inner());
        holders.push(lease_holder.map(str::to_owned));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_after_call_steps_are_replayed_for_the_writers_lease_hold() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool(dir.path());
    let mut leased = whole_call("call-8");
    leased.lease_holder = Some("w1".into());
    left_by_a_writer(&spool, &leased);
    // An older build's file, without a hold.
    let older = serde_json::to_value(whole_call("call-9")).unwrap();
    assert!(older.get("lease_holder").is_none(), "{older}");
    let older: SpooledCall = serde_json::from_value(older).unwrap();
    left_by_a_writer(&spool, &older);
    let hook = Arc::new(HolderHook::default());
    let hooks = vec![Arc::clone(&hook) as Arc<dyn AfterCall>];
    let store = MemoryStore::new(StoreSettings::default());
    assert_eq!(spool.replay(&store, &hooks).await.written, 2);
    let mut holders = hook.0.lock().unwrap().clone();
    holders.sort();
    assert_eq!(holders, [None, Some("w1".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn another_store_files_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool(dir.path());
    let mut call = whole_call("call-6");
    call.store = "redis:0123456789abcdef:".to_owned();
    left_by_a_writer(&spool, &call);
    let store = MemoryStore::new(StoreSettings::default());
    let (_, hooks) = hooks();
    assert_eq!(spool.replay(&store, &hooks).await, ReplayReport::default());
    assert!(store.call("call-6").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn another_process_files_wait_until_it_has_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::new(StoreSettings::default());
    let (_, hooks) = hooks();
    let other = spool(dir.path());
    left_by_a_writer(&other, &whole_call("call-7"));
    let this = spool(dir.path());
    // The other process still runs (holds its lock).
    assert_eq!(this.replay(&store, &hooks).await, ReplayReport::default());
    assert!(store.call("call-7").await.unwrap().is_none());

    drop(other);
    assert_eq!(this.replay(&store, &hooks).await.written, 1);
    assert_eq!(texts(&store, "call-7").await.len(), 2);
    // Its directory went with its last file.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn directories_that_are_not_a_spool_owner_are_never_touched() {
    let dir = tempfile::tempdir().unwrap();
    // What else may live in the same directory.
    let recordings = dir.path().join("recordings");
    std::fs::create_dir(&recordings).unwrap();
    std::fs::write(recordings.join("call.wav.part"), b"RIFF").unwrap();
    let unlocked = dir.path().join("owner-without-lock");
    std::fs::create_dir(&unlocked).unwrap();
    std::fs::write(unlocked.join("notes.json"), b"{}").unwrap();
    let spool = spool(dir.path());
    left_by_a_writer(&spool, &whole_call("call-8"));
    let store = MemoryStore::new(StoreSettings::default());
    let (_, hooks) = hooks();
    assert_eq!(spool.replay(&store, &hooks).await.written, 1);
    assert!(recordings.join("call.wav.part").exists());
    assert!(unlocked.join("notes.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn an_unreadable_file_is_set_aside_and_the_rest_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool(dir.path());
    left_by_a_writer(&spool, &whole_call("call-9"));
    let own = spool.own_dir().unwrap();
    std::fs::write(own.join("0-broken.json"), b"{\"version\":1,\"call_").unwrap();
    std::fs::write(own.join("1-newer.json"), b"{\"version\":99}").unwrap();
    let store = MemoryStore::new(StoreSettings::default());
    let (_, hooks) = hooks();
    let report = spool.replay(&store, &hooks).await;
    assert_eq!((report.written, report.unreadable), (1, 1));
    let owner = own.file_name().unwrap().to_str().unwrap().to_owned();
    let aside = dir
        .path()
        .join(UNREADABLE)
        .join(format!("{owner}-0-broken.json"));
    assert!(aside.exists());
    // A newer build's file is left for it.
    assert!(own.join("1-newer.json").exists());
}

#[cfg(unix)]
#[test]
fn files_and_directories_are_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let spool = spool(&dir.path().join("spool"));
    let entry = spool.entry(crate::store::time::unix_ms());
    spool.keep(&entry, &whole_call("call-10")).unwrap();
    let own = spool.own_dir().unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&own.join(&entry.name)), 0o600);
    assert_eq!(mode(&own), 0o700);
    assert_eq!(mode(&dir.path().join("spool")), 0o700);
}

/// Two turns of `call_id`, at indices 0 and 1, as a writer that never
/// reached the store gives them.
fn message(call_id: &str, texts: [&str; 2]) -> SpooledCall {
    let mut call = whole_call(call_id);
    call.steps = texts
        .iter()
        .enumerate()
        .map(|(i, text)| SpooledStep::Turn {
            turn: interaction(i as u64, text),
        })
        .collect();
    call
}

/// A file `name` in `owner`'s directory holding [`message`].
fn message_file(owner: &TurnSpool, name: &str, call_id: &str, texts: [&str; 2]) {
    let entry = SpoolEntry {
        name: name.to_owned(),
    };
    owner.keep(&entry, &message(call_id, texts)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn files_of_all_stopped_processes_are_replayed_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    // Two processes that stopped during an outage, each holding one
    // message of two text conversations: one has the first message of
    // the one and the second of the other, so that in one of them the
    // directories' order is the reverse of the messages'.
    let one = spool(dir.path());
    let two = spool(dir.path());
    message_file(
        &one,
        "0000000001000-000000000000000a.json",
        "call-a",
        ["a: hello", "a: hi"],
    );
    message_file(
        &two,
        "0000000002000-000000000000000b.json",
        "call-a",
        ["a: later", "a: sure"],
    );
    message_file(
        &one,
        "0000000004000-000000000000000c.json",
        "call-b",
        ["b: later", "b: sure"],
    );
    message_file(
        &two,
        "0000000003000-000000000000000d.json",
        "call-b",
        ["b: hello", "b: hi"],
    );
    drop((one, two));
    let store = MemoryStore::new(StoreSettings::default());
    for call_id in ["call-a", "call-b"] {
        store.create_call(&record(call_id)).await.unwrap();
    }
    let (_, hooks) = hooks();
    let report = spool(dir.path()).replay(&store, &hooks).await;
    assert_eq!(report.written, 4);
    assert_eq!(
        texts(&store, "call-a").await,
        ["a: hello", "a: hi", "a: later", "a: sure"]
    );
    assert_eq!(
        texts(&store, "call-b").await,
        ["b: hello", "b: hi", "b: later", "b: sure"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_file_that_must_wait_holds_back_its_calls_later_files() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool(dir.path());
    let store = MemoryStore::new(StoreSettings::default());
    for call_id in ["call-c", "call-d"] {
        store.create_call(&record(call_id)).await.unwrap();
    }
    // A text conversation's first message, whose writer still flushes (it
    // owns its file), then its next message, whose writer gave up; and
    // another conversation's message, after both.
    let first = spool.entry(1_000);
    spool
        .keep(&first, &message("call-c", ["c: hello", "c: hi"]))
        .unwrap();
    let next = spool.entry(2_000);
    spool
        .keep(&next, &message("call-c", ["c: later", "c: sure"]))
        .unwrap();
    spool.release(&next);
    let other = spool.entry(3_000);
    spool
        .keep(&other, &message("call-d", ["d: hello", "d: hi"]))
        .unwrap();
    spool.release(&other);
    let (_, hooks) = hooks();

    let report = spool.replay(&store, &hooks).await;
    assert_eq!((report.written, report.waiting), (1, 1));
    assert!(
        texts(&store, "call-c").await.is_empty(),
        "the next message went before the first"
    );
    assert_eq!(texts(&store, "call-d").await, ["d: hello", "d: hi"]);

    // The first writer gives up in turn: both messages go, in order.
    spool.release(&first);
    assert_eq!(spool.replay(&store, &hooks).await.written, 2);
    assert_eq!(
        texts(&store, "call-c").await,
        ["c: hello", "c: hi", "c: later", "c: sure"]
    );
}
