//! A lease's holds: two writers of one call (a reconnect) each hold it,
//! and a lease that falls due ends its call as of the last renewal its
//! writers noted, whatever the sweeping process's grace and however often
//! it was claimed.

use super::*;

/// `call_id`'s writer that lets go of its hold `holder` without ending the
/// call (its session gave way to a reconnect's): its last after-call step
/// runs, and it stops with everything written.
async fn lets_go(
    store: &Arc<dyn Store>,
    (writer, holder): (&tokio::sync::watch::Sender<WriterStatus>, &str),
    call_id: &str,
) {
    ForgetLease
        .queue_for_writer(&**store, call_id, Some(holder))
        .await
        .unwrap();
    writer.send_modify(|status| status.done = Some(WriteReport::default()));
}

/// The renewal time of `call_id`'s hold `holder`.
async fn renewed_at(store: &Arc<dyn Store>, call_id: &str, holder: &str) -> u64 {
    let holds = store.lease_holds(call_id).await.unwrap();
    let hold = holds.iter().find(|hold| hold.holder == holder);
    hold.unwrap_or_else(|| panic!("no hold {holder}: {holds:?}"))
        .renewed_ms
}

#[tokio::test(start_paused = true)]
async fn a_reconnects_writer_keeps_the_lease_after_the_first_writer_has_finished() {
    let Leased {
        store,
        sweeper,
        writer: first,
        holder: first_holder,
        lease: first_lease,
    } = leased("reconnect").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The caller reconnects: a second session, and writer, of the call.
    let (_second, second_done) = running_writer();
    let (second_holder, second_lease) = keep(&sweeper, "reconnect", second_done);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let last_renewal = renewed_at(&store, "reconnect", &second_holder).await;
    // The first writer finishes: its hold goes, and its keeper stops...
    lets_go(&store, (&first, &first_holder), "reconnect").await;
    first_lease.await.unwrap();
    // ...but the lease stays, the second writer's.
    let holds = store.lease_holds("reconnect").await.unwrap();
    assert_eq!(holds.len(), 1, "{holds:?}");
    assert!(lease_due(&store, "reconnect").is_some(), "the lease went");

    // The process stops before the second writer's next renewal.
    second_lease.abort();
    let next = process(&store);
    let sweeping = sweep(&next);
    // The call is ended, as of the second writer's last renewal.
    let jobs = store
        .read_jobs("w", 8, GRACE + Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let call = store.call("reconnect").await.unwrap().unwrap();
    assert_eq!(call.end_reason.as_deref(), Some(SESSION_LOST));
    assert_eq!(call.ended_at, Some(rfc3339(last_renewal)));
    assert_eq!(store.next_lost_session_due().await.unwrap(), None);
    assert!(store.lease_holds("reconnect").await.unwrap().is_empty());
    sweeping.abort();
}

/// A call whose process stopped, its lease kept with a grace of `grace`:
/// the store, and the last renewal of the lease.
async fn stopped_with_grace(call_id: &str, grace: Duration) -> (Arc<dyn Store>, u64) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(StoreSettings::default()));
    inbound_started(&store, call_id).await;
    let holder_process = sweeper_with(&store, paused_clock(Arc::default()), grace);
    let (_writer, done) = running_writer();
    let (holder, lease) = keep(&holder_process, call_id, done);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let last_renewal = renewed_at(&store, call_id, &holder).await;
    lease.abort();
    (store, last_renewal)
}

#[tokio::test(start_paused = true)]
async fn a_lost_call_ends_at_its_last_renewal_whatever_the_sweepers_grace() {
    // The call's server had a grace of 10 minutes; the sweeping one has 2.
    let (store, last_renewal) = stopped_with_grace("long", Duration::from_secs(600)).await;
    let sweeper = Arc::new(sweeper_with(
        &store,
        paused_clock(Arc::default()),
        Duration::from_secs(120),
    ));
    let sweeping = sweep(&sweeper);
    let jobs = store
        .read_jobs("w", 8, Duration::from_secs(610))
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let call = store.call("long").await.unwrap().unwrap();
    assert_eq!(call.end_reason.as_deref(), Some(SESSION_LOST));
    assert_eq!(call.ended_at, Some(rfc3339(last_renewal)));
    sweeping.abort();
}

#[tokio::test(start_paused = true)]
async fn a_lost_call_claimed_again_ends_at_its_last_renewal() {
    let (store, last_renewal) = stopped_with_grace("again", GRACE).await;
    let due = lease_due(&store, "again").unwrap();
    // A sweeper claims the lease once it is due, and dies before ending
    // the call.
    let claimed = store
        .claim_lost_sessions(due, millis(LEASE), 8)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    // Another claims it again once that claim has ended.
    let sweeper = process(&store);
    let again = due + millis(LEASE);
    assert_eq!(sweeper.end_due(again).await.unwrap(), 1);
    let call = store.call("again").await.unwrap().unwrap();
    assert_eq!(call.ended_at, Some(rfc3339(last_renewal)));
}
