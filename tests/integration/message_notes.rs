//! The notes of answered Twilio messages (`text:message:{sid}`), over the
//! embedded store and a real Redis: a note is forgotten only by the
//! attempt that took it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use crate::support::redis_server::RedisServer;
use crate::text_ends::Kept;

/// Server "a" timed out writing its note of SM1, which never landed;
/// server "b" took the note since. "a" forgetting its lost note must leave
/// "b"'s: deleted, the next retry of SM1 would be answered a second time.
async fn a_note_is_forgotten_only_by_its_owner(kept: Kept) {
    let [server, _] = kept.sweepers();
    let store = Arc::clone(server.runtime().store());
    assert!(
        store
            .first_sight_of_message("SM1", "b", 60_000)
            .await
            .unwrap()
    );
    store.forget_message("SM1", "a").await.unwrap();
    assert!(
        !store
            .first_sight_of_message("SM1", "c", 60_000)
            .await
            .unwrap(),
        "another server's note was deleted"
    );
    store.forget_message("SM1", "b").await.unwrap();
    assert!(
        store
            .first_sight_of_message("SM1", "c", 60_000)
            .await
            .unwrap(),
        "its owner could not forget the note"
    );
    // A note kept long holds its owner's token still.
    store.keep_message("SM1", "c", 120_000).await.unwrap();
    store.forget_message("SM1", "a").await.unwrap();
    assert!(
        !store
            .first_sight_of_message("SM1", "d", 60_000)
            .await
            .unwrap()
    );
    store.forget_message("SM1", "c").await.unwrap();
    assert!(
        store
            .first_sight_of_message("SM1", "d", 60_000)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn the_embedded_store_forgets_a_note_only_for_its_owner() {
    a_note_is_forgotten_only_by_its_owner(Kept::memory()).await;
}

#[tokio::test]
async fn redis_forgets_a_note_only_for_its_owner() {
    a_note_is_forgotten_only_by_its_owner(Kept::Redis(RedisServer::start())).await;
}
