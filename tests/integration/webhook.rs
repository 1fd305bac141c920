//! The call-completed webhook: queued in a Redis-backed outbox, delivered
//! with retries and exponential backoff, surviving a deliverer's death.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use redis::AsyncCommands;
use support::fake::openai::{FakeOpenAi, verdict};
use support::fake::webhook_receiver::WebhookReceiver;
use support::processors::registry;
use support::redis_server::RedisServer;
use support::turns::converse;
use voxpipe::agent::AgentRuntime;
use voxpipe::agent::webhook::signature;
use voxpipe::pipeline::EnvSource;
use voxpipe::pipeline_file::parse_pipeline;
use voxpipe::store::Enqueued;
use voxpipe::store::time::unix_ms;

async fn runtime(redis: &RedisServer, extra: &str) -> AgentRuntime {
    let toml = format!(
        "[pipeline]\nname = \"agent\"\n\n[context]\nstore = \"redis\"\nurl_env = \"TEST_REDIS\"\n\n{extra}\n"
    );
    let config = parse_pipeline(Path::new("agent.toml"), &toml, &registry()).unwrap();
    let env = EnvSource::Fixed(Arc::new(HashMap::from([
        ("TEST_REDIS".to_owned(), redis.url()),
        ("HOOK_SECRET".to_owned(), "s3cret".to_owned()),
    ])));
    config.agent_runtime(&env).unwrap()
}

async fn call(runtime: &AgentRuntime, id: &str) {
    let lines = ["user: Can you call back later?", "assistant: Of course."];
    converse(runtime, id, "twilio", &lines, "hangup").await;
}

#[tokio::test]
async fn a_completed_call_is_posted_with_retries_and_exponential_backoff() {
    let redis = RedisServer::start();
    let receiver = WebhookReceiver::start().await;
    receiver.fail_with([500, 503]);
    let runtime = runtime(
        &redis,
        &format!(
            "[webhook]\nurl = \"{}\"\nsecret_env = \"HOOK_SECRET\"\ninitial_backoff_secs = 2\nmax_backoff_secs = 60\n",
            receiver.url()
        ),
    )
    .await;
    // No evaluator: the webhook goes as soon as the call is completed.
    call(&runtime, "c1").await;
    let store = runtime.store();
    assert_eq!(store.outbox_len().await.unwrap(), 1);
    let deliverer = runtime.deliverer().unwrap().unwrap();

    let now = unix_ms();
    assert_eq!(deliverer.deliver_due(now).await.unwrap().retrying, 1);
    assert_eq!(
        deliverer.deliver_due(now + 1_999).await.unwrap().retrying,
        0,
        "backs off 2 s"
    );
    assert_eq!(
        deliverer.deliver_due(now + 2_000).await.unwrap().retrying,
        1
    );
    assert_eq!(
        deliverer.deliver_due(now + 5_999).await.unwrap().retrying,
        0,
        "then 4 s"
    );
    assert_eq!(
        deliverer.deliver_due(now + 6_000).await.unwrap().delivered,
        1
    );
    assert_eq!(store.outbox_len().await.unwrap(), 0);

    let received = receiver.received();
    assert_eq!(received.len(), 3);
    for (n, post) in received.iter().enumerate() {
        assert_eq!(post.headers["x-voxpipe-event-id"], "call_completed:c1");
        assert_eq!(post.headers["x-voxpipe-attempt"], (n + 1).to_string());
        assert_eq!(
            post.headers["x-voxpipe-signature"],
            signature("s3cret", &post.body).as_str()
        );
    }
    let body: serde_json::Value = serde_json::from_slice(&received[2].body).unwrap();
    assert_eq!(body["event_type"], "call_completed");
    assert_eq!(body["call"]["status"], "completed");
    assert_eq!(body["call"]["end_reason"], "hangup");
    assert_eq!(body["transcript"][1]["text"], "Of course.");
    assert_eq!(body["outcome"], serde_json::Value::Null);
}

#[tokio::test]
async fn with_an_evaluator_the_webhook_carries_the_outcome() {
    let redis = RedisServer::start();
    let receiver = WebhookReceiver::start().await;
    let judge = FakeOpenAi::judge().await;
    judge.push_chats([verdict("failure", 0.3, &["Pushed too hard"])]);
    let runtime = runtime(
        &redis,
        &format!(
            "[evaluator]\nbase_url = \"{}\"\n\n[webhook]\nurl = \"{}\"\n",
            judge.base_url,
            receiver.url()
        ),
    )
    .await;
    call(&runtime, "c2").await;
    assert_eq!(
        runtime.store().outbox_len().await.unwrap(),
        0,
        "waits for the evaluation"
    );
    runtime.worker("w").unwrap().drain().await.unwrap();
    let deliverer = runtime.deliverer().unwrap().unwrap();
    assert_eq!(deliverer.deliver_due(unix_ms()).await.unwrap().delivered, 1);
    let body: serde_json::Value = serde_json::from_slice(&receiver.received()[0].body).unwrap();
    assert_eq!(body["outcome"], "failure");
    assert_eq!(body["score"], 0.3);
    assert_eq!(body["evaluation"]["tactics"][0], "Pushed too hard");
    assert!(
        receiver.received()[0]
            .headers
            .get("x-voxpipe-signature")
            .is_none()
    );
}

#[tokio::test]
async fn a_call_evaluated_again_is_posted_again_with_the_new_verdict() {
    let redis = RedisServer::start();
    let receiver = WebhookReceiver::start().await;
    let judge = FakeOpenAi::judge().await;
    judge.push_chats([
        verdict("failure", 0.3, &["Pushed too hard"]),
        verdict("success", 0.8, &["Offered a callback"]),
    ]);
    let runtime = runtime(
        &redis,
        &format!(
            "[evaluator]\nbase_url = \"{}\"\n\n[webhook]\nurl = \"{}\"\n",
            judge.base_url,
            receiver.url()
        ),
    )
    .await;
    call(&runtime, "c7").await;
    runtime.worker("w").unwrap().drain().await.unwrap();
    let deliverer = runtime.deliverer().unwrap().unwrap();
    assert_eq!(deliverer.deliver_due(unix_ms()).await.unwrap().delivered, 1);

    // `voxpipe evaluate c7`.
    let evaluator = runtime.evaluator().unwrap();
    evaluator.evaluate("c7", true).await.unwrap();
    assert_eq!(
        runtime.store().outbox_len().await.unwrap(),
        1,
        "a new event"
    );
    assert_eq!(deliverer.deliver_due(unix_ms()).await.unwrap().delivered, 1);
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    let first = received[0].headers["x-voxpipe-event-id"].to_str().unwrap();
    let second = received[1].headers["x-voxpipe-event-id"].to_str().unwrap();
    assert_eq!(first, "call_completed:c7");
    assert!(second.starts_with("call_completed:c7:"), "{second}");
    let body: serde_json::Value = serde_json::from_slice(&received[1].body).unwrap();
    assert_eq!(body["event_id"], second);
    assert_eq!(body["outcome"], "success");
    assert_eq!(body["evaluation"]["tactics"][0], "Offered a callback");

    // The same evaluation's webhook queued again (a second server, a
    // re-run job) adds nothing.
    runtime.worker("w").unwrap().drain().await.unwrap();
    evaluator.evaluate("c7", false).await.unwrap();
    assert_eq!(runtime.store().outbox_len().await.unwrap(), 0);
}

#[tokio::test]
async fn a_call_first_judged_after_its_webhook_went_out_is_posted_again() {
    let redis = RedisServer::start();
    let receiver = WebhookReceiver::start().await;
    let judge = FakeOpenAi::judge().await;
    judge.push_chats([verdict("success", 0.8, &["Offered a callback"])]);
    // Served without a judge: the call's webhook goes out with no verdict.
    let plain = runtime(
        &redis,
        &format!("[webhook]\nurl = \"{}\"\n", receiver.url()),
    )
    .await;
    call(&plain, "c9").await;
    let deliverer = plain.deliverer().unwrap().unwrap();
    assert_eq!(deliverer.deliver_due(unix_ms()).await.unwrap().delivered, 1);

    // The judge turned on, then `voxpipe evaluate c9`: the verdict is new.
    let judged = runtime(
        &redis,
        &format!(
            "[evaluator]\nbase_url = \"{}\"\n\n[webhook]\nurl = \"{}\"\n",
            judge.base_url,
            receiver.url()
        ),
    )
    .await;
    judged
        .evaluator()
        .unwrap()
        .evaluate("c9", true)
        .await
        .unwrap();
    assert_eq!(deliverer.deliver_due(unix_ms()).await.unwrap().delivered, 1);
    let received = receiver.received();
    assert_eq!(received.len(), 2, "the new verdict is posted");
    let second = received[1].headers["x-voxpipe-event-id"].to_str().unwrap();
    assert!(second.starts_with("call_completed:c9:"), "{second}");
    let body: serde_json::Value = serde_json::from_slice(&received[1].body).unwrap();
    assert_eq!(body["outcome"], "success");
}

#[tokio::test]
async fn a_deliverer_that_dies_mid_delivery_loses_nothing() {
    let redis = RedisServer::start();
    let receiver = WebhookReceiver::start().await;
    let runtime = runtime(
        &redis,
        &format!(
            "[webhook]\nurl = \"{}\"\ntimeout_secs = 5\n",
            receiver.url()
        ),
    )
    .await;
    call(&runtime, "c3").await;
    // A deliverer claims it (the lease moves it out of reach) and dies.
    let now = unix_ms();
    let leased = runtime
        .store()
        .claim_deliveries(now, 35_000, 10)
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);

    // A new process: nothing until the lease runs out, then delivered.
    let restarted = runtime.deliverer().unwrap().unwrap();
    assert_eq!(
        restarted.deliver_due(now + 34_999).await.unwrap().delivered,
        0
    );
    assert_eq!(
        restarted.deliver_due(now + 35_000).await.unwrap().delivered,
        1
    );
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn a_delivery_out_of_attempts_goes_to_the_dead_letters() {
    let redis = RedisServer::start();
    let receiver = WebhookReceiver::start().await;
    receiver.fail_with([500, 404]);
    let runtime = runtime(
        &redis,
        &format!(
            "[webhook]\nurl = \"{}\"\nmax_attempts = 2\ninitial_backoff_secs = 1\n",
            receiver.url()
        ),
    )
    .await;
    call(&runtime, "c4").await;
    let deliverer = runtime.deliverer().unwrap().unwrap();
    let now = unix_ms();
    assert_eq!(deliverer.deliver_due(now).await.unwrap().retrying, 1);
    assert_eq!(deliverer.deliver_due(now + 1_000).await.unwrap().dead, 1);
    assert_eq!(runtime.store().outbox_len().await.unwrap(), 0);
    let dead: Vec<String> = redis
        .client()
        .await
        .lrange("{webhook:outbox}:dead", 0, -1)
        .await
        .unwrap();
    let delivery: serde_json::Value = serde_json::from_str(&dead[0]).unwrap();
    assert_eq!(delivery["attempts"], 2);
    assert_eq!(delivery["last_error"], "HTTP 404");
    assert_eq!(delivery["body"]["call_id"], "c4");
    // Kept for a while, not for ever, and counted.
    let ttl_ms: i64 = redis
        .client()
        .await
        .pttl("{webhook:outbox}:dead")
        .await
        .unwrap();
    assert!(ttl_ms > 0, "the dead letters expire ({ttl_ms})");
    deliverer.refresh_sizes().await.unwrap();
    let metrics = runtime.webhook_metrics().unwrap().render();
    for line in [
        "voxpipe_webhook_deliveries_total{result=\"retrying\"} 1",
        "voxpipe_webhook_deliveries_total{result=\"dead\"} 1",
        "voxpipe_webhook_deliveries_total{result=\"delivered\"} 0",
        "voxpipe_webhook_outbox_size 0",
        "voxpipe_webhook_dead_letters 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

#[tokio::test]
async fn a_redirect_is_a_failed_attempt_not_a_delivery() {
    let redis = RedisServer::start();
    let receiver = WebhookReceiver::start().await;
    receiver.fail_with([302, 301, 303]);
    let runtime = runtime(
        &redis,
        &format!(
            "[webhook]\nurl = \"{}\"\ninitial_backoff_secs = 1\nmax_backoff_secs = 1\n",
            receiver.url()
        ),
    )
    .await;
    call(&runtime, "c5").await;
    let deliverer = runtime.deliverer().unwrap().unwrap();
    let now = unix_ms();
    for n in 0..3 {
        let pass = deliverer.deliver_due(now + n * 1_000).await.unwrap();
        assert_eq!((pass.delivered, pass.retrying), (0, 1), "attempt {n}");
        assert_eq!(runtime.store().outbox_len().await.unwrap(), 1);
    }
    assert_eq!(receiver.landings(), 0, "the redirect was not followed");
    assert_eq!(
        deliverer.deliver_due(now + 3_000).await.unwrap().delivered,
        1
    );
    assert_eq!(runtime.store().outbox_len().await.unwrap(), 0);
    let received = receiver.received();
    assert_eq!(received.len(), 4);
    assert_eq!(received[3].headers["x-voxpipe-attempt"], "4");
}

#[tokio::test]
async fn dead_letters_are_redriven_with_fresh_attempts() {
    let redis = RedisServer::start();
    let receiver = WebhookReceiver::start().await;
    receiver.fail_with([500]);
    let runtime = runtime(
        &redis,
        &format!(
            "[webhook]\nurl = \"{}\"\nmax_attempts = 1\n",
            receiver.url()
        ),
    )
    .await;
    call(&runtime, "c6").await;
    let deliverer = runtime.deliverer().unwrap().unwrap();
    let now = unix_ms();
    assert_eq!(deliverer.deliver_due(now).await.unwrap().dead, 1);
    let store = runtime.store();
    assert_eq!(store.dead_letters_len().await.unwrap(), 1);

    let done = voxpipe::agent::webhook::redrive_dead_letters(&**store, 100, now)
        .await
        .unwrap();
    assert_eq!(done.queued, 1);
    assert_eq!(store.dead_letters_len().await.unwrap(), 0);
    assert_eq!(store.outbox_len().await.unwrap(), 1);
    assert_eq!(deliverer.deliver_due(now).await.unwrap().delivered, 1);
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    assert_eq!(
        received[1].headers["x-voxpipe-event-id"],
        "call_completed:c6"
    );
    assert_eq!(
        received[1].headers["x-voxpipe-attempt"], "1",
        "fresh attempts"
    );
}

/// One letter, buried twice, redriven by two operators at once and once
/// more after its delivery: queued once.
async fn a_letter_is_redriven_once(store: &dyn voxpipe::store::Store) {
    assert!(
        store
            .enqueue_delivery("e1", "one", 0)
            .await
            .unwrap()
            .is_queued()
    );
    assert_eq!(
        store.enqueue_delivery("e1", "one", 0).await.unwrap(),
        Enqueued::Pending
    );
    store.bury_delivery("e1", "letter").await.unwrap();
    // Buried twice (a repeated bury), or read by two redrives at once.
    store.bury_delivery("e1", "letter").await.unwrap();
    assert_eq!(store.dead_letters_len().await.unwrap(), 2);
    assert!(
        store
            .redrive_delivery("letter", "e1", "two", 5)
            .await
            .unwrap()
    );
    assert!(
        !store
            .redrive_delivery("letter", "e1", "two", 5)
            .await
            .unwrap(),
        "already queued"
    );
    assert!(
        !store
            .redrive_delivery("letter", "e1", "two", 5)
            .await
            .unwrap(),
        "no letter left"
    );
    assert_eq!(store.dead_letters_len().await.unwrap(), 0);
    let claimed = store.claim_deliveries(5, 100, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].payload, "two");
    store.complete_delivery("e1").await.unwrap();
    assert_eq!(
        store.enqueue_delivery("e1", "three", 0).await.unwrap(),
        Enqueued::Delivered
    );

    // A stale copy of the letter, after the delivery: nothing queued.
    store.bury_delivery("e2", "letter").await.unwrap();
    assert!(
        !store
            .redrive_delivery("letter", "e1", "two", 5)
            .await
            .unwrap()
    );
    assert_eq!(store.outbox_len().await.unwrap(), 0);
    assert!(
        store
            .claim_deliveries(10_000, 100, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_dead_letter_redriven_twice_is_delivered_once() {
    let redis = RedisServer::start();
    let runtime = runtime(&redis, "").await;
    a_letter_is_redriven_once(&**runtime.store()).await;
    let memory = voxpipe::store::MemoryStore::new(voxpipe::store::StoreSettings::default());
    a_letter_is_redriven_once(&memory).await;
}
