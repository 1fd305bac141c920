//! The writer with the runtime's own after-call hooks (the last of which,
//! `ForgetLease`, ends the session's lease), through the store and through
//! the spool; and an attempt answered after commands were taken in.

use super::*;
use crate::agent::eval::EvalJob;
use crate::agent::runtime::after_call_hooks;
use crate::store::{CallStatus, LeaseHold, LostSessionCheck};

/// The hooks a runtime with an evaluator gives its writers.
fn runtime_hooks() -> Vec<Arc<dyn AfterCall>> {
    after_call_hooks(true, None)
}

/// The writer's hold on the session's lease, as the runtime gives it one.
const HOLDER: &str = "w-hooks";

/// Notes the writer's hold on the session's lease, as its keeper does
/// while the call goes on.
async fn lease(store: &dyn Store) {
    let now = unix_ms();
    let hold = LeaseHold {
        holder: HOLDER.into(),
        renewed_ms: now,
        due_ms: now + 150_000,
    };
    assert!(store.renew_lease(CALL, &hold, false).await.unwrap());
}

async fn lease_held(store: &dyn Store) -> bool {
    let lease = LostSessionCheck::lease(CALL);
    store.lost_session_due(&lease).await.unwrap().is_some()
}

/// The calls whose evaluation is queued.
async fn evaluations(store: &dyn Store) -> Vec<String> {
    let jobs = store.read_jobs("test", 8, Duration::ZERO).await.unwrap();
    jobs.iter()
        .map(|job| {
            let job: EvalJob = serde_json::from_str(&job.payload).unwrap();
            job.call_id
        })
        .collect()
}

fn call_record() -> CallRecord {
    CallRecord::pending(CALL, "twilio", Segment::default(), Default::default(), 0)
}

#[test]
fn the_runtimes_hooks_forget_the_lease_last() {
    assert_eq!(
        format!("{:?}", runtime_hooks()),
        "[QueueEvaluation, ForgetLease]"
    );
}

#[tokio::test(start_paused = true)]
async fn the_runtimes_hooks_queue_the_evaluation_and_forget_the_lease() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(StoreSettings::default()));
    lease(&*store).await;
    let settings = WriterSettings {
        on_completed: runtime_hooks(),
        lease_holder: Some(HOLDER.into()),
        ..WriterSettings::default()
    };
    let (recorder, mut progress) = spawn_writer(Arc::clone(&store), call_record(), settings);
    recorder.started();
    recorder.record(turn(0, "hello"));
    recorder.record(turn(1, "hi, how can I help?"));
    recorder.ended("hangup");

    let report = report(&mut progress).await;
    assert_eq!(report.turns_written, 2);
    assert!(report.unwritten.is_empty() && report.spooled.is_empty());
    let call = store.call(CALL).await.unwrap().unwrap();
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(evaluations(&*store).await, [CALL]);
    assert!(!lease_held(&*store).await, "the lease outlived the call");
}

#[tokio::test(start_paused = true)]
async fn a_spooled_end_runs_the_runtimes_hooks_and_forgets_the_lease_at_its_replay() {
    let (silent, _) = silent_store(Duration::from_secs(60)).await;
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(TurnSpool::new(dir.path(), silent.identity()));
    let settings = WriterSettings {
        flush_timeout: Duration::from_secs(1),
        on_completed: runtime_hooks(),
        lease_holder: Some(HOLDER.into()),
        ..spooling(&spool)
    };
    let (recorder, mut progress) = spawn_writer(Arc::new(silent), call_record(), settings);
    recorder.record(turn(0, "hello"));
    recorder.ended("hangup");
    // The store never answers: at the flush deadline everything, the
    // hooks included, is left in the spool.
    let report = report(&mut progress).await;
    assert!(report.unwritten.is_empty(), "{:?}", report.unwritten);
    assert_eq!(
        report.spooled,
        [
            "call state (pending)",
            "turn 0",
            "call status change Ended { reason: \"hangup\", at_ms: 0 }",
            "QueueEvaluation not queued",
            "ForgetLease not queued",
        ]
        .map(|s| s.replace("at_ms: 0", &format!("at_ms: {}", ended_at(&report))))
    );

    // The store is back (here, in the replaying process's store): the
    // replay writes the call, queues its evaluation and forgets the lease.
    let store = MemoryStore::new(StoreSettings::default());
    lease(&store).await;
    assert_eq!(spool.replay(&store, &runtime_hooks()).await.written, 1);
    let call = store.call(CALL).await.unwrap().unwrap();
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(texts(&store).await, ["hello"]);
    assert_eq!(evaluations(&store).await, [CALL]);
    assert!(!lease_held(&store).await, "the lease outlived the replay");
}

/// The end's time, as the report describes it.
fn ended_at(report: &WriteReport) -> String {
    let ended = report
        .spooled
        .iter()
        .find(|step| step.contains("Ended"))
        .unwrap();
    let at = ended.split("at_ms: ").nth(1).unwrap();
    at.trim_end_matches(" }").to_owned()
}

#[tokio::test(start_paused = true)]
async fn an_attempt_answered_after_taking_in_commands_writes_them_behind_its_step() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(StoreSettings::default()));
    store.create_call(&call_record()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(TurnSpool::new(dir.path(), store.identity()));
    let held = HeldStep::new();
    let (recorder, mut progress) = held.first_of(Arc::clone(&store), spooling(&spool));
    held.attempted(1).await;
    recorder.started();
    recorder.record(turn(0, "hello"));
    recorder.record(turn(1, "hi, how can I help?"));
    // Taken in while the step is in flight: behind it in the queue (the
    // attempt, slow, has put them in the spool).
    soon(progress.wait_for(|s| s.spooled == 4)).await.unwrap();
    assert_eq!(
        spooled_texts(&spool_file(dir.path())),
        ["after_call", "started", "hello", "hi, how can I help?"]
    );

    held.answer(true);
    recorder.ended("hangup");
    let report = report(&mut progress).await;
    assert_eq!(report.turns_written, 2);
    assert!(report.unwritten.is_empty() && report.spooled.is_empty());
    let turns = store.turns(CALL).await.unwrap();
    assert_eq!(
        turns
            .iter()
            .map(|t| (t.index, t.text.as_str()))
            .collect::<Vec<_>>(),
        [(0, "hello"), (1, "hi, how can I help?")]
    );
    let call = store.call(CALL).await.unwrap().unwrap();
    assert_eq!(call.status, CallStatus::Completed);
    assert!(call.started_at.is_some());
    assert_eq!(held.calls.borrow().to_owned(), 1, "the step ran again");
    assert!(spool_files(dir.path()).is_empty());
}
