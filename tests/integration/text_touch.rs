//! Noting a text conversation's last message after its answer, over the
//! embedded store and a real Redis: only while it is still open under the
//! same id, never reopening one an idle sweep ended.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use crate::support::redis_server::RedisServer;
use crate::text_ends::{Kept, lapsed};

async fn a_conversation_is_touched_only_while_open_under_its_id(kept: Kept) {
    let [server, _] = kept.sweepers();
    let store = Arc::clone(server.runtime().store());
    let open = |store: Arc<dyn voxpipe::store::Store>| async move {
        store.idle_text_conversations(u64::MAX, 10).await.unwrap()
    };
    store
        .open_text_conversation("chat:k", None, "c1", 100)
        .await
        .unwrap();
    assert!(
        store
            .touch_text_conversation("chat:k", "c1", 200)
            .await
            .unwrap()
    );
    // Touched at 200: not idle as of 150.
    assert!(
        store
            .idle_text_conversations(150, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !store
            .touch_text_conversation("chat:k", "c0", 300)
            .await
            .unwrap(),
        "another conversation's id"
    );
    let closed = store
        .close_text_conversation("chat:k", u64::MAX, "idle_timeout", 400, &lapsed())
        .await
        .unwrap();
    assert_eq!(closed.as_deref(), Some("c1"));
    assert!(
        !store
            .touch_text_conversation("chat:k", "c1", 500)
            .await
            .unwrap()
    );
    assert!(open(Arc::clone(&store)).await.is_empty(), "reopened");
    let next = store
        .open_text_conversation("chat:k", None, "c2", 600)
        .await
        .unwrap();
    assert_eq!(next, "c2");
}

#[tokio::test]
async fn the_embedded_store_touches_only_the_open_conversation() {
    a_conversation_is_touched_only_while_open_under_its_id(Kept::memory()).await;
}

#[tokio::test]
async fn redis_touches_only_the_open_conversation() {
    a_conversation_is_touched_only_while_open_under_its_id(Kept::Redis(RedisServer::start())).await;
}
