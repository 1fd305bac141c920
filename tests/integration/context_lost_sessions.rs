//! The lost-session checks' store contract, on both backends: a check is
//! noted once, claimed by one sweeper at a time under a lease, claimed
//! again when its lease runs out, and forgotten when done; a session's
//! lease is one check, renewed in place.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use redis::AsyncCommands;

use crate::context_store::{Backend, backends};
use voxpipe::store::LostSessionCheck;

fn check(call_id: &str, at_ms: u64) -> LostSessionCheck {
    LostSessionCheck::final_status(call_id, at_ms)
}

#[tokio::test]
async fn lost_session_checks_are_claimed_once_under_a_lease() {
    for backend in backends() {
        let store = backend.store();
        let backend_name = store.backend();
        assert_eq!(store.next_lost_session_due().await.unwrap(), None);
        let first = check("c1", 100);
        store.note_lost_session(&first, 1_000).await.unwrap();
        // Noted again (Twilio repeating the callback): its due time stays.
        store.note_lost_session(&first, 5_000).await.unwrap();
        store
            .note_lost_session(&check("c2", 200), 2_000)
            .await
            .unwrap();
        assert_eq!(store.next_lost_session_due().await.unwrap(), Some(1_000));
        assert!(
            store
                .claim_lost_sessions(999, 100, 10)
                .await
                .unwrap()
                .is_empty(),
            "{backend_name}: not due yet"
        );

        // Two sweepers at once: one gets it.
        let (a, b) = tokio::join!(
            store.claim_lost_sessions(1_000, 500, 10),
            store.claim_lost_sessions(1_000, 500, 10)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.len() + b.len(), 1, "{backend_name}: {a:?} {b:?}");
        assert_eq!([a, b].concat(), vec![first.clone()]);
        assert!(
            store
                .claim_lost_sessions(1_499, 500, 10)
                .await
                .unwrap()
                .is_empty(),
            "{backend_name}: leased"
        );
        // The next due is the lease's end.
        assert_eq!(store.next_lost_session_due().await.unwrap(), Some(1_500));

        // Its sweeper died: claimed again once the lease ran out, oldest
        // first, at most `max`.
        let again = store.claim_lost_sessions(2_000, 500, 1).await.unwrap();
        assert_eq!(again, vec![first.clone()], "{backend_name}");
        let second = store.claim_lost_sessions(2_000, 500, 10).await.unwrap();
        assert_eq!(second, vec![check("c2", 200)], "{backend_name}");

        store.lost_session_checked(&first).await.unwrap();
        store.lost_session_checked(&check("c2", 200)).await.unwrap();
        assert_eq!(store.next_lost_session_due().await.unwrap(), None);
        assert!(
            store
                .claim_lost_sessions(u64::MAX, 500, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn a_member_that_is_not_a_check_is_dropped_not_claimed() {
    let backend = Backend::redis();
    let Backend::Redis(store, server) = &backend else {
        unreachable!()
    };
    let mut client = server.client().await;
    let _: i64 = client
        .zadd("t:calls:lost_sessions", "no time here", 10)
        .await
        .unwrap();
    // An id may hold a line break: the time is after the last one.
    let odd = check("a\nb", 7);
    voxpipe::store::LostSessionStore::note_lost_session(&**store, &odd, 10)
        .await
        .unwrap();
    let claimed = voxpipe::store::LostSessionStore::claim_lost_sessions(&**store, 10, 5, 10)
        .await
        .unwrap();
    assert_eq!(claimed, vec![odd]);
    let left: Vec<String> = client.zrange("t:calls:lost_sessions", 0, -1).await.unwrap();
    assert_eq!(left, vec!["a\nb\n7".to_owned()]);
}

#[tokio::test]
async fn a_session_lease_is_one_check_renewed_in_place() {
    for backend in backends() {
        let store = backend.store();
        let name = store.backend();
        let lease = LostSessionCheck::lease("s1");
        // Only while held: nothing to renew yet.
        assert!(
            !store.renew_lease("s1", 1_000, true).await.unwrap(),
            "{name}"
        );
        assert_eq!(store.lost_session_due(&lease).await.unwrap(), None);
        assert!(
            store.renew_lease("s1", 1_000, false).await.unwrap(),
            "{name}"
        );
        // A final status check of the same call is another check.
        store
            .note_lost_session(&check("s1", 150), 1_500)
            .await
            .unwrap();
        // Renewals move the one lease, later or (a late reply) earlier.
        assert!(store.renew_lease("s1", 3_000, false).await.unwrap());
        assert!(store.renew_lease("s1", 2_000, true).await.unwrap());
        assert_eq!(store.lost_session_due(&lease).await.unwrap(), Some(2_000));
        // Claimed, a lease comes with the time it was due.
        let due = store.claim_lost_sessions(2_500, 100, 10).await.unwrap();
        let mut claimed_lease = lease.clone();
        claimed_lease.at_ms = 2_000;
        assert_eq!(due, vec![check("s1", 150), claimed_lease], "{name}");
        assert_eq!(store.lost_session_due(&lease).await.unwrap(), Some(2_600));
        // Forgotten, it is gone, and a renewal only while held adds nothing.
        store.lost_session_checked(&lease).await.unwrap();
        assert_eq!(store.lost_session_due(&lease).await.unwrap(), None);
        assert!(
            !store.renew_lease("s1", 9_000, true).await.unwrap(),
            "{name}"
        );
        assert_eq!(store.lost_session_due(&lease).await.unwrap(), None);
    }
}
