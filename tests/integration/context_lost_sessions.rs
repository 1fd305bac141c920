//! The lost-session checks' store contract, on both backends: a check is
//! noted once, claimed by one sweeper at a time under a lease, claimed
//! again when its lease runs out, and forgotten when done; a session's
//! lease is one check, renewed in place, held by each of its call's
//! writers until the last lets go.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use redis::AsyncCommands;

use crate::context_store::{Backend, backends};
use voxpipe::store::time::unix_ms;
use voxpipe::store::{LeaseHold, LostSessionCheck, Store};

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

fn hold(holder: &str, renewed_ms: u64, due_ms: u64) -> LeaseHold {
    LeaseHold {
        holder: holder.to_owned(),
        renewed_ms,
        due_ms,
    }
}

/// `call_id`'s holds, by holder.
async fn holds_of(store: &Arc<dyn Store>, call_id: &str) -> Vec<LeaseHold> {
    let mut holds = store.lease_holds(call_id).await.unwrap();
    holds.sort_by(|a, b| a.holder.cmp(&b.holder));
    holds
}

#[tokio::test]
async fn a_session_lease_is_one_check_renewed_in_place() {
    // Real times: a call's holds expire a week after their due time.
    let t = unix_ms();
    for backend in backends() {
        let store = backend.store();
        let name = store.backend();
        let lease = LostSessionCheck::lease("s1");
        // Only while held: nothing to renew yet.
        assert!(
            !store
                .renew_lease("s1", &hold("wa", t, t + 1_000), true)
                .await
                .unwrap(),
            "{name}"
        );
        assert_eq!(store.lost_session_due(&lease).await.unwrap(), None);
        assert!(
            store
                .renew_lease("s1", &hold("wa", t, t + 1_000), false)
                .await
                .unwrap(),
            "{name}"
        );
        // A final status check of the same call is another check.
        store
            .note_lost_session(&check("s1", 150), t + 1_500)
            .await
            .unwrap();
        // Renewals move the one lease, later or (a late reply) earlier.
        let renewed = hold("wa", t + 1_000, t + 3_000);
        assert!(store.renew_lease("s1", &renewed, false).await.unwrap());
        let late = hold("wa", t + 500, t + 2_000);
        assert!(store.renew_lease("s1", &late, true).await.unwrap());
        assert_eq!(
            store.lost_session_due(&lease).await.unwrap(),
            Some(t + 2_000)
        );
        assert_eq!(holds_of(&store, "s1").await, vec![late.clone()], "{name}");
        // Claimed, a lease comes with the time it was due, and its hold
        // keeps its renewal, claimed again or not.
        let due = store.claim_lost_sessions(t + 2_500, 100, 10).await.unwrap();
        let mut claimed_lease = lease.clone();
        claimed_lease.at_ms = t + 2_000;
        assert_eq!(due, vec![check("s1", 150), claimed_lease], "{name}");
        assert_eq!(
            store.lost_session_due(&lease).await.unwrap(),
            Some(t + 2_600)
        );
        let again = store.claim_lost_sessions(t + 2_600, 100, 10).await.unwrap();
        assert_eq!(again.len(), 2, "{name}: {again:?}");
        assert_eq!(holds_of(&store, "s1").await, vec![late.clone()], "{name}");
        // Done, it is gone with its holds, and a renewal only while held
        // adds nothing.
        store.lost_session_checked(&lease).await.unwrap();
        assert_eq!(store.lost_session_due(&lease).await.unwrap(), None);
        assert!(holds_of(&store, "s1").await.is_empty(), "{name}");
        assert!(
            !store
                .renew_lease("s1", &hold("wa", t, t + 9_000), true)
                .await
                .unwrap(),
            "{name}"
        );
        assert_eq!(store.lost_session_due(&lease).await.unwrap(), None);
    }
}

#[tokio::test]
async fn a_lease_is_held_until_the_last_of_its_writers_lets_go() {
    let t = unix_ms();
    for backend in backends() {
        let store = backend.store();
        let name = store.backend();
        let lease = LostSessionCheck::lease("r1");
        // Two writers of one call (a reconnect): due with the later hold.
        let first = hold("wa", t, t + 5_000);
        let second = hold("wb", t + 1_000, t + 3_000);
        assert!(store.renew_lease("r1", &first, false).await.unwrap());
        assert!(store.renew_lease("r1", &second, false).await.unwrap());
        assert_eq!(
            store.lost_session_due(&lease).await.unwrap(),
            Some(t + 5_000),
            "{name}"
        );
        assert_eq!(
            holds_of(&store, "r1").await,
            vec![first.clone(), second.clone()]
        );
        // The first lets go (twice: its keeper again): the lease is the
        // second's, due with it.
        for _ in 0..2 {
            store.forget_lease("r1", Some("wa")).await.unwrap();
            assert_eq!(
                store.lost_session_due(&lease).await.unwrap(),
                Some(t + 3_000),
                "{name}"
            );
            assert_eq!(holds_of(&store, "r1").await, vec![second.clone()]);
        }
        // A step with no hold (a sweep's, an older build's writer) leaves
        // a held lease alone.
        store.forget_lease("r1", None).await.unwrap();
        assert_eq!(
            store.lost_session_due(&lease).await.unwrap(),
            Some(t + 3_000),
            "{name}"
        );
        // The last hold goes, and the lease with it.
        store.forget_lease("r1", Some("wb")).await.unwrap();
        assert_eq!(store.lost_session_due(&lease).await.unwrap(), None);
        assert!(holds_of(&store, "r1").await.is_empty(), "{name}");
        // A renewal landing after that notes it again, to be swept.
        assert!(store.renew_lease("r1", &second, false).await.unwrap());
        assert_eq!(
            store.lost_session_due(&lease).await.unwrap(),
            Some(t + 3_000)
        );
        store.forget_lease("r1", Some("wb")).await.unwrap();
        assert_eq!(store.lost_session_due(&lease).await.unwrap(), None);
    }
}

#[tokio::test]
async fn a_lease_an_older_build_noted_is_still_swept_and_forgotten() {
    for backend in backends() {
        let store = backend.store();
        let name = store.backend();
        // `{call id}\nlease`, renewed in place, with no holds.
        let old = LostSessionCheck::lease("o1");
        store.note_lost_session(&old, 1_000).await.unwrap();
        let mut claimed_old = old.clone();
        claimed_old.at_ms = 1_000;
        let claimed = store.claim_lost_sessions(1_000, 100, 10).await.unwrap();
        assert_eq!(claimed, vec![claimed_old], "{name}");
        assert!(store.lease_holds("o1").await.unwrap().is_empty());
        store.lost_session_checked(&old).await.unwrap();
        assert_eq!(store.lost_session_due(&old).await.unwrap(), None);
        // Its writer's last step (no hold) forgets it.
        store.note_lost_session(&old, 2_000).await.unwrap();
        store.forget_lease("o1", None).await.unwrap();
        assert_eq!(store.lost_session_due(&old).await.unwrap(), None, "{name}");
    }
}
