//! One attempt at one step against the store.

use super::{Action, Step};
use crate::store::{Appended, Interaction, Store, StoreError};

impl Step {
    /// Performs the step once; `Ok` means it is done (or was already
    /// done). `lease_holder` is the writer's hold on the call's session
    /// lease, for the after-call steps.
    pub(super) async fn perform(
        &mut self,
        store: &dyn Store,
        call_id: &str,
        lease_holder: Option<&str>,
        next_index: &mut u64,
        first_attempt: bool,
    ) -> Result<(), StoreError> {
        let step = self;
        match &step.action {
            Action::Create(record) => {
                if !store.create_call(record).await? && first_attempt {
                    // The call exists (a reconnecting transport reuses the id):
                    // continue its transcript rather than clash with it.
                    *next_index = store.turns(call_id).await?.len() as u64;
                    tracing::info!(call_id, turns = *next_index, "continuing an existing call");
                }
                Ok(())
            }
            Action::Change(change) => {
                if store.update_call(call_id, change).await?.is_none() {
                    tracing::warn!(
                        call_id,
                        ?change,
                        "call state missing (expired or deleted); status not updated"
                    );
                }
                Ok(())
            }
            Action::Turn(turn) => {
                if !first_attempt {
                    // An earlier attempt may have landed, its reply lost. Looked
                    // for anywhere, not only at the index: after a gap (turns
                    // lost) the store appended it where the transcript ended,
                    // and an append at the index, still past the end, would
                    // land again.
                    let index = *step.index.get_or_insert(*next_index);
                    let ours = Interaction::from_turn(turn, index);
                    let transcript = store.turns(call_id).await?;
                    if transcript.iter().any(|t| t.is_same_turn(&ours)) {
                        // After the last turn stored, as an append that
                        // answered would leave it (after a gap: past the
                        // turn's position, not its index).
                        *next_index = transcript.len() as u64;
                        return Ok(());
                    }
                }
                let mut fresh = first_attempt;
                loop {
                    let index = *step.index.get_or_insert(*next_index);
                    let stored_turn = Interaction::from_turn(turn, index);
                    match store.append_turn(call_id, &stored_turn).await? {
                        Appended::Added => *next_index = index + 1,
                        Appended::AlreadyStored { stored }
                            if !fresh
                                && store
                                    .turns(call_id)
                                    .await?
                                    .iter()
                                    .any(|t| t.index == index && t.is_same_turn(&stored_turn)) =>
                        {
                            // An earlier attempt landed; its reply was lost.
                            *next_index = stored.max(index + 1);
                        }
                        Appended::AlreadyStored { stored } => {
                            // Another writer holds this position: go after it.
                            tracing::warn!(
                                call_id,
                                index,
                                stored,
                                "transcript position taken by another writer; appending at the end"
                            );
                            step.index = Some(stored);
                            *next_index = stored;
                            fresh = true;
                            continue;
                        }
                        Appended::AddedAfterGap { stored } => {
                            tracing::error!(
                                call_id,
                                index,
                                stored,
                                "transcript lost turns {stored}..{index} (deleted, expired, or Redis restarted empty); appended at {stored}"
                            );
                            *next_index = stored + 1;
                        }
                    }
                    return Ok(());
                }
            }
            Action::After(after) => after.queue_for_writer(store, call_id, lease_holder).await,
        }
    }
}
