//! A turn's retries against the embedded store: an earlier attempt that
//! landed, its reply lost, is found wherever the store put it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::conversation::Role;
use crate::store::{CallStore, MemoryStore, StoreSettings};

const CALL: &str = "call-1";

fn turn(index: u64, text: &str) -> Arc<Turn> {
    Arc::new(Turn {
        index,
        role: if index.is_multiple_of(2) {
            Role::User
        } else {
            Role::Assistant
        },
        text: text.to_owned(),
        interrupted: false,
        tool_calls: Vec::new(),
        at_ms: index * 1_000,
        unix_ms: 1_800_000_000_000 + index * 1_000,
        latency_ms: None,
        agent: None,
        reflection: None,
    })
}

/// A store holding the first `count` turns of the call.
async fn store_with(count: u64) -> MemoryStore {
    let store = MemoryStore::new(StoreSettings::default());
    for index in 0..count {
        let stored = Interaction::from_turn(&turn(index, &format!("turn {index}")), index);
        assert!(matches!(
            store.append_turn(CALL, &stored).await.unwrap(),
            Appended::Added
        ));
    }
    store
}

async fn texts(store: &MemoryStore) -> Vec<String> {
    let turns = store.turns(CALL).await.unwrap();
    turns.into_iter().map(|t| t.text).collect()
}

/// A first attempt at `step` that reaches the store, whose reply is lost:
/// to the writer it failed, so its position is as it was (the step keeps
/// the index it was given, as a failed append leaves it).
async fn landed_unanswered(store: &MemoryStore, step: &mut Step, next_index: u64) {
    let mut unanswered = next_index;
    perform(store, CALL, step, &mut unanswered, true)
        .await
        .unwrap();
    step.attempted = true;
}

#[tokio::test]
async fn a_retry_after_a_gap_finds_its_turn_where_the_store_put_it() {
    // Turns 3 and 4 were lost (the store restarted empty, say): the
    // writer's next turn is 5, and the store appends it at 3.
    let store = store_with(3).await;
    let mut next_index = 5;
    let mut step = Step::new(Action::Turn(turn(5, "the answer")));
    landed_unanswered(&store, &mut step, next_index).await;
    assert_eq!(texts(&store).await.len(), 4, "landed after the gap");

    perform(&store, CALL, &mut step, &mut next_index, false)
        .await
        .unwrap();
    assert_eq!(
        texts(&store).await,
        ["turn 0", "turn 1", "turn 2", "the answer"],
        "stored once"
    );
    // The next turn goes right after it, with no gap reported.
    assert_eq!(next_index, 4);
    let mut next = Step::new(Action::Turn(turn(6, "and then")));
    perform(&store, CALL, &mut next, &mut next_index, true)
        .await
        .unwrap();
    assert_eq!(texts(&store).await.len(), 5);
    assert_eq!(next_index, 5);
}

#[tokio::test]
async fn a_retry_after_a_landing_at_its_index_writes_nothing_more() {
    let store = store_with(3).await;
    let mut next_index = 3;
    let mut step = Step::new(Action::Turn(turn(3, "the answer")));
    landed_unanswered(&store, &mut step, next_index).await;

    perform(&store, CALL, &mut step, &mut next_index, false)
        .await
        .unwrap();
    assert_eq!(
        texts(&store).await,
        ["turn 0", "turn 1", "turn 2", "the answer"]
    );
    assert_eq!(next_index, 4);
}

#[tokio::test]
async fn a_retry_whose_first_attempt_never_landed_appends_its_turn() {
    let store = store_with(3).await;
    let mut next_index = 3;
    // The first attempt failed before reaching the store: the step kept
    // its index.
    let mut step = Step::new(Action::Turn(turn(3, "the answer")));
    step.index = Some(3);
    step.attempted = true;

    perform(&store, CALL, &mut step, &mut next_index, false)
        .await
        .unwrap();
    assert_eq!(
        texts(&store).await,
        ["turn 0", "turn 1", "turn 2", "the answer"]
    );
    assert_eq!(next_index, 4);
}
