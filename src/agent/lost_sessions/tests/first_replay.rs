//! A sweeper in a process with a turn spool claims nothing before the
//! spool's first replay (a call's spooled turns are written before it is
//! ended), but not for ever.

use super::*;

/// A call whose process stopped a grace ago, its lease due; a sweeper of
/// the next process, waiting for its spool's first replay (`replayed`).
async fn due_lease_and_a_waiting_sweeper(
    call_id: &str,
) -> (
    Arc<dyn Store>,
    Arc<LostSessionSweeper>,
    tokio::sync::watch::Sender<bool>,
) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(StoreSettings::default()));
    inbound_started(&store, call_id).await;
    let now = unix_ms();
    let hold = LeaseHold {
        holder: new_lease_holder(),
        renewed_ms: now - millis(GRACE) - 1_000,
        due_ms: now - 1_000,
    };
    assert!(store.renew_lease(call_id, &hold, false).await.unwrap());
    let replayed = tokio::sync::watch::Sender::new(false);
    let sweeper = sweeper_with(&store, paused_clock(Arc::default()), GRACE)
        .after_first_replay(replayed.subscribe());
    (store, Arc::new(sweeper), replayed)
}

#[tokio::test(start_paused = true)]
async fn the_first_sweep_waits_for_the_spools_first_replay() {
    let (store, sweeper, replayed) = due_lease_and_a_waiting_sweeper("spooled").await;
    let sweeping = sweep(&sweeper);
    // Nothing is claimed while the replay has not happened...
    let early = store
        .read_jobs("w", 8, FIRST_REPLAY_WAIT - Duration::from_secs(1))
        .await
        .unwrap();
    assert!(early.is_empty(), "ended before the replay: {early:?}");
    let call = store.call("spooled").await.unwrap().unwrap();
    assert_eq!(call.ended_at, None);
    // ...and the call is ended once it has.
    replayed.send_replace(true);
    let jobs = store
        .read_jobs("w", 8, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    sweeping.abort();
}

#[tokio::test(start_paused = true)]
async fn a_spool_that_never_replays_holds_the_sweep_back_only_for_a_while() {
    let (store, sweeper, _replayed) = due_lease_and_a_waiting_sweeper("stuck").await;
    let sweeping = sweep(&sweeper);
    let early = store
        .read_jobs("w", 8, FIRST_REPLAY_WAIT - Duration::from_secs(1))
        .await
        .unwrap();
    assert!(early.is_empty(), "ended before the replay: {early:?}");
    let jobs = store
        .read_jobs("w", 8, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let call = store.call("stuck").await.unwrap().unwrap();
    assert_eq!(call.end_reason.as_deref(), Some(SESSION_LOST));
    sweeping.abort();
}
