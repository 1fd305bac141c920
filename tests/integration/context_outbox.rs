//! The webhook outbox's store contract, on both backends: deliveries are
//! unique, leased, rescheduled, and dropped when their event is gone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use redis::AsyncCommands;

use crate::context_store::{Backend, HOUR_MS, backends};
use voxpipe::store::Enqueued;

#[tokio::test]
async fn outbox_deliveries_are_unique_leased_and_rescheduled() {
    for backend in backends() {
        let store = backend.store();
        assert_eq!(
            store
                .enqueue_delivery("e1", "{\"n\":1}", 1_000)
                .await
                .unwrap(),
            Enqueued::Queued
        );
        assert_eq!(
            store
                .enqueue_delivery("e1", "{\"n\":2}", 1_000)
                .await
                .unwrap(),
            Enqueued::Pending
        );
        assert!(
            store
                .claim_deliveries(999, 100, 10)
                .await
                .unwrap()
                .is_empty(),
            "not due yet"
        );
        let claimed = store.claim_deliveries(1_000, 100, 10).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].payload, "{\"n\":1}");
        assert!(
            store
                .claim_deliveries(1_050, 100, 10)
                .await
                .unwrap()
                .is_empty(),
            "leased"
        );
        assert_eq!(
            store.claim_deliveries(1_100, 100, 10).await.unwrap().len(),
            1,
            "lease ran out"
        );

        store
            .reschedule_delivery("e1", "{\"n\":3}", 5_000)
            .await
            .unwrap();
        assert!(
            store
                .claim_deliveries(4_999, 100, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store.claim_deliveries(5_000, 100, 10).await.unwrap()[0].payload,
            "{\"n\":3}"
        );
        assert_eq!(store.outbox_len().await.unwrap(), 1);
        let ttl = backend.ttl_ms("{t:webhook:outbox}:event:e1").await.unwrap();
        assert!(ttl > 6 * 24 * HOUR_MS, "{ttl}");

        store.complete_delivery("e1").await.unwrap();
        assert_eq!(store.outbox_len().await.unwrap(), 0);
        assert_eq!(
            store.enqueue_delivery("e2", "two", 0).await.unwrap(),
            Enqueued::Queued
        );
        store.bury_delivery("e2", "two, failed").await.unwrap();
        assert_eq!(store.outbox_len().await.unwrap(), 0);
        if let Backend::Redis(_, server) = &backend {
            let dead: Vec<String> = server
                .client()
                .await
                .lrange("{t:webhook:outbox}:dead", 0, -1)
                .await
                .unwrap();
            assert_eq!(dead, ["two, failed"]);
        }
    }
}

#[tokio::test]
async fn outbox_entries_whose_delivery_is_gone_are_dropped_on_claim() {
    let backend = Backend::redis();
    let store = backend.store();
    let Backend::Redis(_, server) = &backend else {
        unreachable!()
    };
    for id in ["a", "b", "c"] {
        assert_eq!(
            store.enqueue_delivery(id, id, 1_000).await.unwrap(),
            Enqueued::Queued
        );
    }
    // Two deliveries outlived their TTL (or were delivered elsewhere).
    let _: i64 = server
        .client()
        .await
        .del(&["{t:webhook:outbox}:event:a", "{t:webhook:outbox}:event:c"])
        .await
        .unwrap();
    let claimed = store.claim_deliveries(1_000, 100, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, "b");
    assert_eq!(store.outbox_len().await.unwrap(), 1);
}
