//! The writer's spool side: what it is sent reaches the disk while the
//! store fails or hangs, and neither a hung store nor a hung disk holds up
//! the other.

use super::*;

#[tokio::test(start_paused = true)]
async fn a_turn_recorded_while_the_first_attempt_hangs_reaches_the_spool_before_it_fails() {
    const STALL: Duration = Duration::from_secs(60);
    let (store, mut accepted) = silent_store(STALL).await;
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(TurnSpool::new(dir.path(), store.identity()));
    let settings = WriterSettings {
        flush_timeout: Duration::from_secs(1),
        ..spooling(&spool)
    };
    let record = CallRecord::pending(CALL, "twilio", Segment::default(), Default::default(), 0);
    let (recorder, mut progress) = spawn_writer(Arc::new(store), record, settings);
    // The call's creation, the writer's first attempt, is on its way to a
    // store that never answers: nothing has failed yet.
    accepted.wait_for(|n| *n >= 1).await.unwrap();

    let sent = Instant::now();
    recorder.record(turn(0, "said while the store hangs"));
    soon(progress.wait_for(|s| s.spooled == 2)).await.unwrap();
    assert!(
        sent.elapsed() < STALL / 2,
        "on disk only after {:?}, when the attempt in flight failed",
        sent.elapsed()
    );
    assert_eq!(
        spooled_texts(&spool_file(dir.path())),
        ["create", "said while the store hangs"]
    );

    // Behind it, in order; the stalled attempt is given up at the flush
    // deadline and everything is left in the spool.
    recorder.record(turn(1, "and then"));
    recorder.ended("hangup");
    let report = report(&mut progress).await;
    assert!(sent.elapsed() < STALL / 2, "{:?}", sent.elapsed());
    assert!(report.unwritten.is_empty(), "{:?}", report.unwritten);
    assert_eq!(
        report.spooled[..3],
        ["call state (pending)", "turn 0", "turn 1"]
    );
    assert_eq!(
        spooled_texts(&spool_file(dir.path())),
        ["create", "said while the store hangs", "and then", "ended"]
    );
}

#[tokio::test(start_paused = true)]
async fn what_comes_while_a_spool_write_hangs_follows_it_as_soon_as_it_lands() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(StoreSettings::default()));
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(TurnSpool::new(dir.path(), store.identity()));
    let held = HeldStep::new();
    let (recorder, mut progress) = held.first_of(Arc::clone(&store), spooling(&spool));
    // The step fails while the disk hangs: its spool write hangs too, and
    // the retry goes on without it.
    held.attempted(1).await;
    let hung = spool.disk_gate().close();
    held.answer(false);
    spool.disk_gate().arrived(1).await;
    within(Duration::from_secs(1), held.attempted(2)).await;

    // A turn comes during the retry, while the first write still hangs.
    recorder.record(turn(0, "said while the disk hangs"));
    tokio::task::yield_now().await;
    drop(hung);
    // The first write lands, and the turn follows it at once, though
    // neither the retry nor any other command comes to rewrite the file.
    // (The clock moves only once the disk is idle.)
    soon(progress.wait_for(|s| s.spooled == 2)).await.unwrap();
    assert_eq!(
        spooled_texts(&spool_file(dir.path())),
        ["after_call", "said while the disk hangs"]
    );

    held.answer(true);
    recorder.ended("hangup");
    let report = report(&mut progress).await;
    assert_eq!(report.turns_written, 1);
    assert!(report.unwritten.is_empty() && report.spooled.is_empty());
    assert_eq!(texts(&*store).await, ["said while the disk hangs"]);
    assert!(spool_files(dir.path()).is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_step_in_flight_is_answered_while_a_spool_write_hangs() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(StoreSettings::default()));
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(TurnSpool::new(dir.path(), store.identity()));
    let held = HeldStep::new();
    let (recorder, mut progress) = held.first_of(Arc::clone(&store), spooling(&spool));
    // The step fails once: the writer keeps its queue in the spool, and
    // tries again.
    held.attempted(1).await;
    held.answer(false);
    soon(progress.wait_for(|s| s.spooled == 1)).await.unwrap();
    soon(held.attempted(2)).await;

    // The disk hangs; a turn comes during the retry, and its write hangs.
    let hung = spool.disk_gate().close();
    recorder.record(turn(0, "said while the disk hangs"));
    spool.disk_gate().arrived(1).await;
    // The store answers the retry: it is done, and the turn written after
    // it, while the disk still hangs.
    held.answer(true);
    within(
        Duration::from_secs(2),
        progress.wait_for(|s| s.turns_written == 1),
    )
    .await
    .unwrap();

    drop(hung);
    recorder.ended("hangup");
    let report = report(&mut progress).await;
    assert_eq!(report.turns_written, 1);
    assert!(report.unwritten.is_empty() && report.spooled.is_empty());
    assert_eq!(texts(&*store).await, ["said while the disk hangs"]);
    assert!(spool_files(dir.path()).is_empty());
}
