//! The prompt optimiser when a model it needs is down: the optimisation
//! is deferred (the job stays pending, nothing is recorded, the failures
//! it acts on are kept) and runs once the model is back. Uses the
//! optimiser tests' set-up (`prompt_optimiser.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::prompt_optimiser::{candidate, failed_call, score, segment_key, setup};
use crate::support::fake::openai::Reply;
use voxpipe::store::Decision;

#[tokio::test]
async fn a_writer_that_is_down_defers_the_optimisation_until_it_is_back() {
    let setup = setup("claim_idle_secs = 0", "", 2).await;
    let (openai, store) = (&setup.openai, &setup.store);
    let worker = setup.runtime.worker("w1").unwrap();

    openai.push_chats_for("writer", [Reply::error(503, "overloaded", "server_error")]);
    failed_call(&setup, "s1").await;
    let err = worker.drain().await.unwrap_err();
    assert!(err.to_string().contains("optimiser"), "{err}");
    assert_eq!(setup.redis.pending_jobs().await, 1, "the job is deferred");
    assert!(
        store.optimisation("s1").await.unwrap().is_none(),
        "no trace: a model down decides nothing"
    );
    let call = store.call("s1").await.unwrap().unwrap();
    assert!(call.optimisation.is_none());
    assert_eq!(call.post_call_deferrals, 1);
    // The deferred optimisation holds no slot: with a limit of one, another
    // optimisation still gets it (and gives it back).
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let hour_ms = 3_600_000;
    assert!(
        store
            .take_optimisation_slot(&segment_key(), "other", now_ms, hour_ms, 1)
            .await
            .unwrap(),
        "a deferred optimisation holds its slot through the outage"
    );
    store
        .give_back_optimisation_slot(&segment_key(), "other")
        .await
        .unwrap();

    // The writer is back: the same job optimises, with the failure kept.
    openai.push_chats_for("writer", [candidate("Offer a pilot.")]);
    openai.push_chats_for("scorer", [score(0.9), score(0.9), score(0.5), score(0.5)]);
    assert_eq!(worker.drain().await.unwrap(), 1);
    assert_eq!(setup.redis.pending_jobs().await, 0);
    let trace = store.optimisation("s1").await.unwrap().unwrap();
    assert_eq!(trace.decision, Decision::Deployed, "{}", trace.reason);
    let state = store.prompt_state(&segment_key()).await.unwrap();
    assert_eq!(state.text.as_deref(), Some("Offer a pilot."));
}

#[tokio::test]
async fn an_optimisation_cut_short_again_and_again_gives_up_after_five_attempts() {
    let setup = setup("claim_idle_secs = 0", "", 1).await;
    let (openai, store) = (&setup.openai, &setup.store);
    let worker = setup.runtime.worker("w1").unwrap();
    // The writer answers every time; the case judge never does.
    openai.chat_fallback_for("writer", candidate("Offer a pilot."));
    openai.chat_fallback_for("scorer", Reply::error(503, "overloaded", "server_error"));
    failed_call(&setup, "s1").await;
    let writer_asked = || {
        openai
            .chat_requests()
            .iter()
            .filter(|r| r["model"] == "writer")
            .count()
    };
    for attempt in 1..=5 {
        let err = worker.drain().await.unwrap_err();
        assert!(err.to_string().contains("optimiser"), "{attempt}: {err}");
        assert!(store.optimisation("s1").await.unwrap().is_none());
        assert_eq!(writer_asked(), attempt);
    }

    assert_eq!(worker.drain().await.unwrap(), 1, "given up, the job done");
    let trace = store.optimisation("s1").await.unwrap().unwrap();
    assert_eq!(trace.decision, Decision::Skipped);
    assert!(
        trace.reason.contains("after 5 attempts"),
        "{}",
        trace.reason
    );
    assert_eq!(writer_asked(), 5, "no sixth candidate");
    assert_eq!(setup.redis.pending_jobs().await, 0);
    assert_eq!(store.prompt_state(&segment_key()).await.unwrap().version, 0);
}
