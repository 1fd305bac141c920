//! The claims on text conversations' ends, over the embedded store and a
//! real Redis: one holder at a time, and an attempt that outlived its
//! claim neither undoes another's count nor leaves a claim behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use crate::support::redis_server::RedisServer;
use crate::text_ends::{Kept, lapsed, untried_end};
use voxpipe::store::{EndClaim, TextEnd};
use voxpipe::text::MAX_END_ATTEMPTS;

/// The claims on ends, as a store keeps them: one holder at a time, only
/// the holder reschedules, a lapsed claim is taken over, a recorded end is
/// claimed by no one.
async fn claims_on_ends_hold_one_at_a_time(kept: Kept) {
    let [sweeper, _] = kept.sweepers();
    let store = Arc::clone(sweeper.runtime().store());
    let claim = |owner: &str| EndClaim {
        owner: owner.to_owned(),
        ttl_ms: 60_000,
    };
    let mut ends = Vec::new();
    for (call, at_ms) in [("c1", 100), ("c2", 500), ("c3", 100)] {
        let key = format!("chat:{call}");
        store
            .open_text_conversation(&key, None, call, 0)
            .await
            .unwrap();
        store
            .close_text_conversation(&key, 0, "idle_timeout", at_ms, &lapsed())
            .await
            .unwrap();
        ends.push(untried_end(call, at_ms));
    }
    let [end, early, other] = ends.try_into().unwrap();
    assert_eq!(
        store.pending_text_ends(100, 10).await.unwrap(),
        [end.clone(), other.clone()]
    );
    assert!(store.claim_text_end(&end, &claim("a"), 100).await.unwrap());
    assert!(!store.claim_text_end(&end, &claim("b"), 100).await.unwrap());
    assert!(
        !store
            .claim_text_end(&early, &claim("b"), 499)
            .await
            .unwrap()
    );
    let failed = TextEnd {
        attempts: 1,
        ..end.clone()
    };
    assert!(
        !store
            .text_end_failed(&failed, "b", Some(200))
            .await
            .unwrap()
    );
    assert!(
        store
            .text_end_failed(&failed, "a", Some(200))
            .await
            .unwrap()
    );
    assert_eq!(
        store.pending_text_ends(199, 10).await.unwrap(),
        std::slice::from_ref(&other)
    );
    assert_eq!(
        store.pending_text_ends(200, 10).await.unwrap(),
        [other.clone(), failed.clone()]
    );
    assert!(
        store
            .claim_text_end(&failed, &claim("b"), 200)
            .await
            .unwrap()
    );
    store.text_end_recorded(&failed).await.unwrap();
    assert!(
        !store
            .claim_text_end(&failed, &claim("c"), u64::MAX)
            .await
            .unwrap()
    );
    // A lapsed claim is taken over.
    assert!(store.claim_text_end(&other, &lapsed(), 100).await.unwrap());
    assert!(
        store
            .claim_text_end(&other, &claim("d"), 100)
            .await
            .unwrap()
    );
    let last = TextEnd {
        attempts: MAX_END_ATTEMPTS,
        ..other.clone()
    };
    assert!(store.text_end_failed(&last, "d", None).await.unwrap());
    assert_eq!(
        store.pending_text_ends(u64::MAX, 10).await.unwrap(),
        [early]
    );
    assert_eq!(store.set_aside_text_ends(10).await.unwrap(), [last]);
}

#[tokio::test]
async fn claims_on_ends_hold_one_at_a_time_in_memory() {
    claims_on_ends_hold_one_at_a_time(Kept::memory()).await;
}

#[tokio::test]
async fn claims_on_ends_hold_one_at_a_time_in_redis() {
    claims_on_ends_hold_one_at_a_time(Kept::Redis(RedisServer::start())).await;
}

/// An attempt that outlived its claim, none claiming the end since: its
/// failure still counts, and its claim, lapsed, is let go when the end is
/// recorded.
async fn a_lapsed_claims_attempt_still_counts(kept: &Kept) {
    let [sweeper, _] = kept.sweepers();
    let store = Arc::clone(sweeper.runtime().store());
    store
        .open_text_conversation("chat:c9", None, "c9", 0)
        .await
        .unwrap();
    store
        .close_text_conversation("chat:c9", 0, "idle_timeout", 100, &lapsed())
        .await
        .unwrap();
    let end = untried_end("c9", 100);
    let failed = TextEnd {
        attempts: 1,
        ..end.clone()
    };
    assert!(
        store
            .text_end_failed(&failed, "gone", Some(200))
            .await
            .unwrap(),
        "the attempt counts"
    );
    assert!(store.pending_text_ends(199, 10).await.unwrap().is_empty());
    assert_eq!(
        store.pending_text_ends(200, 10).await.unwrap(),
        std::slice::from_ref(&failed)
    );
    // Another's claim that holds: that attempt decides.
    let live = EndClaim {
        owner: "live".to_owned(),
        ttl_ms: 60_000,
    };
    assert!(store.claim_text_end(&failed, &live, 200).await.unwrap());
    let again = TextEnd {
        attempts: 2,
        ..end.clone()
    };
    assert!(
        !store
            .text_end_failed(&again, "gone", Some(300))
            .await
            .unwrap()
    );
    assert!(
        store
            .text_end_failed(&again, "live", Some(300))
            .await
            .unwrap()
    );
    // Claimed again, lapsing at once, then recorded: the claim is gone.
    assert!(store.claim_text_end(&again, &lapsed(), 300).await.unwrap());
    store.text_end_recorded(&again).await.unwrap();
    assert!(
        store
            .pending_text_ends(u64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_lapsed_claims_attempt_still_counts_in_memory() {
    a_lapsed_claims_attempt_still_counts(&Kept::memory()).await;
}

#[tokio::test]
async fn a_lapsed_claims_attempt_still_counts_and_its_claim_is_let_go_in_redis() {
    let kept = Kept::Redis(RedisServer::start());
    a_lapsed_claims_attempt_still_counts(&kept).await;
    assert_eq!(
        kept.claims_left().await,
        Some(0),
        "a lapsed claim left behind"
    );
}

/// A claim lapsing at once: its attempt is slower than its claim.
fn lapsing(owner: &str) -> EndClaim {
    EndClaim {
        owner: owner.to_owned(),
        ttl_ms: 0,
    }
}

/// A claim that holds for the length of a test.
fn holding(owner: &str) -> EndClaim {
    EndClaim {
        owner: owner.to_owned(),
        ttl_ms: 60_000,
    }
}

/// An end noted pending by a closer gone at once, as `call` at `at_ms`.
async fn pending_end(kept: &Kept, call: &str, at_ms: u64) -> TextEnd {
    let [sweeper, _] = kept.sweepers();
    let store = sweeper.runtime().store();
    let key = format!("chat:{call}");
    store
        .open_text_conversation(&key, None, call, 0)
        .await
        .unwrap();
    store
        .close_text_conversation(&key, 0, "idle_timeout", at_ms, &lapsed())
        .await
        .unwrap();
    untried_end(call, at_ms)
}

/// An attempt whose claim lapsed while it ran, reporting its failure after
/// others claimed the end and counted theirs: its count, from the attempts
/// it read, is older than theirs, and changes nothing.
async fn a_late_failure_leaves_the_count_of_those_who_claimed_since(kept: &Kept) {
    let [sweeper, _] = kept.sweepers();
    let store = Arc::clone(sweeper.runtime().store());
    let end = pending_end(kept, "c1", 100).await;
    let attempt = |attempts| TextEnd {
        attempts,
        ..end.clone()
    };
    assert!(
        store
            .claim_text_end(&end, &lapsing("a"), 100)
            .await
            .unwrap()
    );
    // While "a" runs, "b" then "c" claim the end and fail.
    assert!(
        store
            .claim_text_end(&end, &holding("b"), 100)
            .await
            .unwrap()
    );
    assert!(
        store
            .text_end_failed(&attempt(1), "b", Some(200))
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_text_end(&attempt(1), &holding("c"), 200)
            .await
            .unwrap()
    );
    assert!(
        store
            .text_end_failed(&attempt(2), "c", Some(300))
            .await
            .unwrap()
    );
    // "a" fails at last, with the 0 attempts it read, 1 with its own.
    assert!(
        !store
            .text_end_failed(&attempt(1), "a", Some(150))
            .await
            .unwrap(),
        "a failure of a claim taken since is not counted"
    );
    assert!(store.pending_text_ends(299, 10).await.unwrap().is_empty());
    assert_eq!(
        store.pending_text_ends(300, 10).await.unwrap(),
        [attempt(2)]
    );
    // Nor while the claim taken since has lapsed in turn, but is not its.
    assert!(
        store
            .claim_text_end(&attempt(2), &lapsing("d"), 300)
            .await
            .unwrap()
    );
    assert!(
        !store
            .text_end_failed(&attempt(1), "a", Some(150))
            .await
            .unwrap()
    );
    // "d" outlived its claim, none claiming since: its failure counts.
    assert!(
        store
            .text_end_failed(&attempt(3), "d", Some(400))
            .await
            .unwrap()
    );
    assert!(store.pending_text_ends(399, 10).await.unwrap().is_empty());
    assert_eq!(
        store.pending_text_ends(400, 10).await.unwrap(),
        [attempt(3)]
    );
}

#[tokio::test]
async fn a_late_failure_leaves_the_count_of_those_who_claimed_since_in_memory() {
    a_late_failure_leaves_the_count_of_those_who_claimed_since(&Kept::memory()).await;
}

#[tokio::test]
async fn a_late_failure_leaves_the_count_of_those_who_claimed_since_in_redis() {
    let kept = Kept::Redis(RedisServer::start());
    a_late_failure_leaves_the_count_of_those_who_claimed_since(&kept).await;
    assert_eq!(kept.claims_left().await, Some(0));
}

/// An attempt slower than its claim records the end while another's claim
/// is on it: that claim goes too, and the other attempt, failing then,
/// changes nothing.
async fn recording_an_end_lets_its_claim_go_whoever_holds_it(kept: &Kept) {
    let [sweeper, _] = kept.sweepers();
    let store = Arc::clone(sweeper.runtime().store());
    let end = pending_end(kept, "c1", 100).await;
    // The closer ("gone") lapsed; "b" claims the end, then "gone" records it.
    assert!(
        store
            .claim_text_end(&end, &holding("b"), 100)
            .await
            .unwrap()
    );
    store.text_end_recorded(&end).await.unwrap();
    if let Some(claims) = kept.claims_left().await {
        assert_eq!(claims, 0, "the claim of \"b\" outlived its end");
    }
    let failed = TextEnd {
        attempts: 1,
        ..end.clone()
    };
    assert!(
        !store
            .text_end_failed(&failed, "b", Some(200))
            .await
            .unwrap()
    );
    assert!(
        store
            .pending_text_ends(u64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.set_aside_text_ends(10).await.unwrap().is_empty());
    assert!(
        !store
            .claim_text_end(&end, &holding("c"), 200)
            .await
            .unwrap()
    );
    if let Some(claims) = kept.claims_left().await {
        assert_eq!(claims, 0);
    }
}

#[tokio::test]
async fn recording_an_end_lets_its_claim_go_whoever_holds_it_in_memory() {
    recording_an_end_lets_its_claim_go_whoever_holds_it(&Kept::memory()).await;
}

#[tokio::test]
async fn recording_an_end_lets_its_claim_go_whoever_holds_it_in_redis() {
    recording_an_end_lets_its_claim_go_whoever_holds_it(&Kept::Redis(RedisServer::start())).await;
}
