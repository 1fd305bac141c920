//! The sweep and the sessions' leases, on the embedded store with paused
//! time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicI64, Ordering};

mod faults;
mod first_replay;
mod holds;

use super::*;
use crate::agent::eval::QueueEvaluation;
use crate::agent::writer::{WriteReport, WriterStatus};
use crate::store::time::rfc3339;
use crate::store::{
    CallDirection, CallRecord, CallStatus, MemoryStore, OutboundCall, Store, StoreSettings,
};

const GRACE: Duration = Duration::from_secs(150);

/// A wall clock that paused time moves: `unix_ms()` at its making,
/// plus the time since, plus `offset` (the clock stepped).
fn paused_clock(offset: Arc<AtomicI64>) -> Clock {
    let (base, start) = (unix_ms(), Instant::now());
    Arc::new(move || {
        let now = base.saturating_add(millis(start.elapsed()));
        now.saturating_add_signed(offset.load(Ordering::SeqCst))
    })
}

/// A process's lost-session sweeper on the shared `store`: its own
/// runtime, nothing of another's.
fn process(store: &Arc<dyn Store>) -> Arc<LostSessionSweeper> {
    process_with(store, paused_clock(Arc::default()))
}

fn process_with(store: &Arc<dyn Store>, clock: Clock) -> Arc<LostSessionSweeper> {
    Arc::new(sweeper_with(store, clock, GRACE))
}

/// A process's sweeper on `store`, by `clock`, its sessions' grace `grace`.
fn sweeper_with(store: &Arc<dyn Store>, clock: Clock, grace: Duration) -> LostSessionSweeper {
    // The after-call work is an evaluation job, which is not
    // deduplicated: each queueing counts.
    let hooks: Vec<Arc<dyn AfterCall>> = vec![Arc::new(QueueEvaluation), Arc::new(ForgetLease)];
    LostSessionSweeper::new(Arc::clone(store), hooks, grace).with_clock(clock)
}

/// Notes a final status check for `call_id` at `at_ms`, due a grace later.
async fn note(sweeper: &LostSessionSweeper, call_id: &str, at_ms: u64) {
    let check = LostSessionCheck::final_status(call_id, at_ms);
    sweeper.note(&check, at_ms + millis(GRACE)).await.unwrap();
}

/// An answered call its server left started and never ended.
async fn left_started(store: &Arc<dyn Store>, call_id: &str) {
    let started = unix_ms() - 30_000;
    let mut call = CallRecord::pending(
        call_id,
        "twilio",
        Default::default(),
        Default::default(),
        started,
    );
    call.status = CallStatus::Completed;
    call.direction = Some(CallDirection::Outbound);
    call.started_at = Some(rfc3339(started));
    call.outbound = Some(OutboundCall {
        twilio_sid: Some("CA1".into()),
        ..OutboundCall::default()
    });
    assert!(store.create_call(&call).await.unwrap());
}

fn sweep(sweeper: &Arc<LostSessionSweeper>) -> tokio::task::JoinHandle<()> {
    let sweeper = Arc::clone(sweeper);
    tokio::spawn(async move { sweeper.run(std::future::pending()).await })
}

#[tokio::test(start_paused = true)]
async fn a_noted_check_outlives_its_process_and_ends_the_call_once() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(StoreSettings::default()));
    left_started(&store, "lost").await;
    // The server that heard the final status notes the check, then
    // stops before the grace is over: nothing of it is left running.
    let at_ms = unix_ms();
    note(&process(&store), "lost", at_ms).await;

    // Two servers start on the same store, each with its sweeper.
    let sweepers = [sweep(&process(&store)), sweep(&process(&store))];
    tokio::time::sleep(GRACE - Duration::from_secs(1)).await;
    let call = store.call("lost").await.unwrap().unwrap();
    assert_eq!(call.ended_at, None, "ended before the grace");
    assert!(
        store
            .read_jobs("w", 8, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );

    // Once it is due, one of them ends it, as of the final status.
    let jobs = store
        .read_jobs("w", 8, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let call = store.call("lost").await.unwrap().unwrap();
    assert_eq!(call.ended_at, Some(rfc3339(at_ms)));
    assert_eq!(call.end_reason.as_deref(), Some("session_lost"));
    // And only one: the other finds nothing to claim, however long
    // they both run on, and the check is gone.
    tokio::time::sleep(LEASE * 10).await;
    let more = store.read_jobs("w", 8, Duration::ZERO).await.unwrap();
    assert!(more.is_empty(), "queued again: {more:?}");
    assert_eq!(store.next_lost_session_due().await.unwrap(), None);
    for sweeper in sweepers {
        sweeper.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_its_session_ended_within_the_grace_is_left_alone() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(StoreSettings::default()));
    left_started(&store, "alive").await;
    let sweeper = process(&store);
    let at_ms = unix_ms();
    note(&sweeper, "alive", at_ms).await;
    let sweeping = sweep(&sweeper);
    // The session was alive after all: its writer ends the call.
    let ended = crate::store::CallChange::Ended {
        reason: "hangup".into(),
        at_ms: at_ms + 1_000,
    };
    store.update_call("alive", &ended).await.unwrap();
    tokio::time::sleep(GRACE * 2).await;
    let call = store.call("alive").await.unwrap().unwrap();
    assert_eq!(call.end_reason.as_deref(), Some("hangup"));
    assert!(
        store
            .read_jobs("w", 8, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.next_lost_session_due().await.unwrap(),
        None,
        "checked"
    );
    sweeping.abort();
}

#[tokio::test]
async fn a_check_whose_work_failed_is_done_again_after_its_lease() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(StoreSettings::default()));
    left_started(&store, "lost").await;
    let sweeper = process(&store);
    let at_ms = 1_000;
    note(&sweeper, "lost", at_ms).await;
    let due = at_ms + millis(GRACE);
    // Claimed by a sweeper that died before ending it.
    let claimed = store
        .claim_lost_sessions(due, millis(LEASE), 8)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(sweeper.end_due(due).await.unwrap(), 0, "held by its lease");
    let after_lease = due + millis(LEASE);
    assert_eq!(sweeper.end_due(after_lease).await.unwrap(), 1);
    assert_eq!(sweeper.end_due(after_lease * 2).await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_wall_clock_stepped_back_does_not_end_a_call_before_its_grace() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(StoreSettings::default()));
    left_started(&store, "lost").await;
    // The sweeper starts while the wall clock is ten minutes ahead.
    let offset = Arc::new(AtomicI64::new(600_000));
    let clock = paused_clock(Arc::clone(&offset));
    let sweeper = process_with(&store, Arc::clone(&clock));
    let sweeping = sweep(&sweeper);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The clock is set right, and a check noted by it.
    offset.store(0, Ordering::SeqCst);
    let at_ms = clock();
    note(&sweeper, "lost", at_ms).await;
    tokio::time::sleep(GRACE - Duration::from_secs(1)).await;
    let call = store.call("lost").await.unwrap().unwrap();
    assert_eq!(call.ended_at, None, "ended before the grace");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let call = store.call("lost").await.unwrap().unwrap();
    assert_eq!(call.ended_at, Some(rfc3339(at_ms)));
    sweeping.abort();
}

/// An inbound call its session started and has not ended.
async fn inbound_started(store: &Arc<dyn Store>, call_id: &str) {
    let started = unix_ms() - 30_000;
    let mut call = CallRecord::pending(
        call_id,
        "webrtc",
        Default::default(),
        Default::default(),
        started,
    );
    call.status = CallStatus::Active;
    call.started_at = Some(rfc3339(started));
    assert!(store.create_call(&call).await.unwrap());
}

/// A writer's progress that the test moves: still running until
/// [`stop_writer`] is called.
fn running_writer() -> (
    tokio::sync::watch::Sender<WriterStatus>,
    crate::agent::writer::WriterDone,
) {
    tokio::sync::watch::channel(WriterStatus::default())
}

/// A live inbound call on the embedded store whose session's lease
/// `sweeper`'s process keeps, its writer still running.
struct Leased {
    store: Arc<dyn Store>,
    sweeper: Arc<LostSessionSweeper>,
    writer: tokio::sync::watch::Sender<WriterStatus>,
    /// The writer's hold on the lease.
    holder: String,
    lease: tokio::task::JoinHandle<()>,
}

async fn leased(call_id: &str) -> Leased {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(StoreSettings::default()));
    inbound_started(&store, call_id).await;
    let sweeper = process(&store);
    let (writer, done) = running_writer();
    let holder = new_lease_holder();
    let lease = sweeper.keep_lease(call_id.into(), holder.clone(), done);
    Leased {
        store,
        sweeper,
        writer,
        holder,
        lease,
    }
}

/// `sweeper`'s process keeps a new writer's hold on `call_id`'s lease
/// while `done` runs; the writer's hold and its keeper.
fn keep(
    sweeper: &LostSessionSweeper,
    call_id: &str,
    done: crate::agent::writer::WriterDone,
) -> (String, tokio::task::JoinHandle<()>) {
    let holder = new_lease_holder();
    let lease = sweeper.keep_lease(call_id.into(), holder.clone(), done);
    (holder, lease)
}

/// The writer stops with `report`, having written the end when nothing
/// is left over, and having run its last after-call step (which forgets
/// the lease) unless its end waits in the spool, as a writer does; with
/// `forget: false`, the step's write lost (a store blip).
async fn stop_writer(
    store: &Arc<dyn Store>,
    (writer, holder): (&tokio::sync::watch::Sender<WriterStatus>, &str),
    call_id: &str,
    report: WriteReport,
    forget: bool,
) {
    if report.unwritten.is_empty() && report.spooled.is_empty() {
        let ended = crate::store::CallChange::Ended {
            reason: "hangup".into(),
            at_ms: unix_ms(),
        };
        store.update_call(call_id, &ended).await.unwrap();
    }
    if forget && report.spooled.is_empty() {
        ForgetLease
            .queue_for_writer(&**store, call_id, Some(holder))
            .await
            .unwrap();
    }
    writer.send_modify(|status| status.done = Some(report));
}

fn lease_due(store: &Arc<dyn Store>, call_id: &str) -> Option<u64> {
    let check = LostSessionCheck::lease(call_id);
    futures_util::FutureExt::now_or_never(store.lost_session_due(&check))
        .unwrap()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_live_session_is_never_ended_and_its_lease_goes_with_its_writer() {
    let Leased {
        store,
        sweeper,
        writer,
        holder,
        lease,
    } = leased("live").await;
    let sweeping = sweep(&sweeper);
    // However long the call goes on, its lease is renewed before it is due.
    tokio::time::sleep(GRACE * 10).await;
    let call = store.call("live").await.unwrap().unwrap();
    assert_eq!(call.ended_at, None, "a live call ended");
    let due = lease_due(&store, "live");
    assert!(due.is_some_and(|due| due > (sweeper.clock)()), "{due:?}");
    // Its writer writes the end and stops (its own forgetting lost): the
    // keeper forgets the lease, and no more work is queued than the
    // writer's own.
    let report = WriteReport::default();
    stop_writer(&store, (&writer, &holder), "live", report, false).await;
    lease.await.unwrap();
    assert_eq!(lease_due(&store, "live"), None);
    tokio::time::sleep(GRACE * 2).await;
    assert!(
        store
            .read_jobs("w", 8, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
    sweeping.abort();
}

#[tokio::test(start_paused = true)]
async fn a_session_whose_process_stopped_is_ended_as_of_its_last_renewal() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(StoreSettings::default()));
    inbound_started(&store, "orphan").await;
    // One wall clock for both processes, as on one machine.
    let clock = paused_clock(Arc::default());
    let first = process_with(&store, Arc::clone(&clock));
    let (_writer, done) = running_writer();
    let renewed_at = clock();
    let (_holder, lease) = keep(&first, "orphan", done);
    // Renewed at 0, a third of the grace and two thirds; then the process
    // stops, its writer with it.
    tokio::time::sleep(GRACE * 2 / 3 + Duration::from_secs(1)).await;
    lease.abort();
    let last_renewal = renewed_at + millis(GRACE * 2 / 3);

    let next = process_with(&store, clock);
    let sweeping = sweep(&next);
    // Not before a grace after the last renewal...
    tokio::time::sleep(GRACE - Duration::from_secs(2)).await;
    let call = store.call("orphan").await.unwrap().unwrap();
    assert_eq!(call.ended_at, None, "ended before the grace");
    // ...and then once, as of it, with its after-call work.
    let jobs = store
        .read_jobs("w", 8, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let call = store.call("orphan").await.unwrap().unwrap();
    assert_eq!(call.ended_at, Some(rfc3339(last_renewal)));
    assert_eq!(call.end_reason.as_deref(), Some(SESSION_LOST));
    tokio::time::sleep(LEASE * 5).await;
    assert!(
        store
            .read_jobs("w", 8, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.next_lost_session_due().await.unwrap(), None);
    sweeping.abort();
}

#[tokio::test(start_paused = true)]
async fn a_lease_renewed_after_a_sweeper_claimed_it_ends_nothing_and_stays() {
    let Leased {
        store,
        sweeper,
        writer: _writer,
        lease: _lease,
        ..
    } = leased("slow").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // A sweeper whose clock runs a grace ahead claims the lease...
    let ahead = (sweeper.clock)() + millis(GRACE);
    let claimed = store
        .claim_lost_sessions(ahead, millis(LEASE), 8)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    // ...and the session renews it before that sweeper ends the call.
    tokio::time::sleep(GRACE / 3).await;
    let until = ahead + millis(LEASE);
    let outcome = sweeper.end_lost_session(&claimed[0], until).await.unwrap();
    assert_eq!(outcome, LostSessionOutcome::Kept);
    let call = store.call("slow").await.unwrap().unwrap();
    assert_eq!(call.ended_at, None);
    assert!(
        lease_due(&store, "slow").is_some(),
        "the live lease was dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn a_store_outage_longer_than_the_grace_ends_no_live_call() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(StoreSettings::default()));
    inbound_started(&store, "through").await;
    let clock = paused_clock(Arc::default());
    let sweeper = process_with(&store, Arc::clone(&clock));
    let (_writer, done) = running_writer();
    let _lease = keep(&sweeper, "through", done);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Every process lost the store for longer than the grace: no renewal
    // landed, and the sweeper's own sweeps failed.
    let due = lease_due(&store, "through").unwrap();
    sweeper.note_store_failure(&StoreError::Timeout(Duration::from_secs(2)));
    // Back, the sweeper's first sweep finds the lease due, before the
    // keeper's retry renewed it: it keeps it.
    assert_eq!(sweeper.end_due(due + 1).await.unwrap(), 0);
    let call = store.call("through").await.unwrap().unwrap();
    assert_eq!(call.ended_at, None, "a live call ended after an outage");
}

#[tokio::test(start_paused = true)]
async fn a_writer_that_left_its_end_in_the_spool_keeps_the_lease_until_the_replay() {
    let Leased {
        store,
        sweeper,
        writer,
        holder,
        lease,
    } = leased("spooled").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = WriteReport {
        spooled: vec!["turn 3".into()],
        ..WriteReport::default()
    };
    stop_writer(&store, (&writer, &holder), "spooled", report, true).await;
    // Renewed on while the store takes its time to come back...
    let sweeping = sweep(&sweeper);
    tokio::time::sleep(GRACE * 2).await;
    assert!(!lease.is_finished());
    let call = store.call("spooled").await.unwrap().unwrap();
    assert_eq!(call.ended_at, None, "ended before the replay");
    // ...until the replayer writes the end and its last after-call step.
    ForgetLease
        .queue_for_writer(&*store, "spooled", Some(&holder))
        .await
        .unwrap();
    lease.await.unwrap();
    assert_eq!(lease_due(&store, "spooled"), None);
    sweeping.abort();
}

/// `call_id`'s writer stops with `report` (its last step run, when its
/// end is not in the spool); its keeper stops too, the lease left to fall
/// due: once it does, the sweep ends the call.
async fn left_to_end_the_call(call_id: &str, report: WriteReport) {
    let Leased {
        store,
        sweeper,
        writer,
        holder,
        lease,
    } = leased(call_id).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_writer(&store, (&writer, &holder), call_id, report, true).await;
    lease.await.unwrap();
    assert!(lease_due(&store, call_id).is_some(), "no lease left");
    let sweeping = sweep(&sweeper);
    tokio::time::sleep(GRACE + LEASE).await;
    let call = store.call(call_id).await.unwrap().unwrap();
    assert_eq!(call.end_reason.as_deref(), Some(SESSION_LOST));
    sweeping.abort();
}

#[tokio::test(start_paused = true)]
async fn a_writer_that_gave_up_leaves_its_lease_to_end_the_call() {
    // Its last step ran all the same, forgetting the lease: the keeper
    // notes it once more.
    let report = WriteReport {
        unwritten: vec!["call status change Ended".into()],
        ..WriteReport::default()
    };
    left_to_end_the_call("given-up", report).await;
}

#[tokio::test]
async fn a_lease_left_on_an_ended_call_queues_its_work_again_and_keeps_its_end() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(StoreSettings::default()));
    inbound_started(&store, "ended").await;
    let now = unix_ms();
    let ended = crate::store::CallChange::Ended {
        reason: "hangup".into(),
        at_ms: now - 5_000,
    };
    store.update_call("ended", &ended).await.unwrap();
    // Its process stopped after the end, before queueing the work and
    // forgetting the lease.
    let hold = LeaseHold {
        holder: new_lease_holder(),
        renewed_ms: now - 10_000,
        due_ms: now,
    };
    assert!(store.renew_lease("ended", &hold, false).await.unwrap());
    let sweeper = process(&store);
    assert_eq!(sweeper.end_due(now).await.unwrap(), 0, "ended by another");
    let call = store.call("ended").await.unwrap().unwrap();
    assert_eq!(call.end_reason.as_deref(), Some("hangup"));
    let jobs = store.read_jobs("w", 8, Duration::ZERO).await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(store.next_lost_session_due().await.unwrap(), None);
}

#[test]
fn a_lease_and_a_final_status_are_told_apart_by_their_members() {
    let lease = LostSessionCheck::lease("a\nb");
    assert_eq!(lease.member(), "a\nb\nlease");
    let claimed = LostSessionCheck::from_member(&lease.member(), 9).unwrap();
    assert_eq!(
        (claimed.source, claimed.at_ms),
        (LostSessionSource::Lease, 9)
    );
    assert_eq!(claimed.call_id, "a\nb");
    for check in [
        LostSessionCheck::final_status("a\nb", 7),
        LostSessionCheck::final_status("lease", 12),
    ] {
        assert_eq!(
            LostSessionCheck::from_member(&check.member(), 1),
            Some(check.clone())
        );
    }
    assert_eq!(LostSessionCheck::from_member("no time", 1), None);
}

#[tokio::test(start_paused = true)]
async fn a_spooled_end_never_replayed_is_ended_by_its_lease_in_the_end() {
    // No replayer ever writes it (its file set aside as unreadable): the
    // keeper gives up renewing.
    let report = WriteReport {
        spooled: vec!["call status change Ended".into()],
        ..WriteReport::default()
    };
    left_to_end_the_call("set-aside", report).await;
}
