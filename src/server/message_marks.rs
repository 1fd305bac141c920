//! [`MessageMarks`]: each incoming message's `MessageSid` noted in the
//! store, in two phases, so a retried webhook is answered once and a
//! message whose answer was lost is answered when Twilio retries it.
//!
//! A message is first noted for [`IN_PROGRESS_FOR_MS`] (2 minutes) while
//! it is answered; once its answer is handed on (returned as TwiML, or
//! about to go by REST) the note is kept for [`SEEN_FOR_MS`] (48 h, longer
//! than Twilio retries). A message that could not be answered is
//! forgotten at once. A process killed mid-answer leaves the short note,
//! which lapses: a retry (or a replay from Twilio's error log) after it is
//! answered. A graceful shutdown forgets the notes of messages whose
//! webhook had no answer yet ([`MessageMarks::forget_dropped`]): Twilio
//! may retry those, and the next server answers. One whose webhook was
//! answered already (its answer goes by REST) is never retried by Twilio,
//! so its note is kept and its answer may still go out while the process
//! drains; if it is not done by exit, it is lost (logged).
//!
//! This process remembers the messages noted but not yet handed on; the
//! handover and the shutdown's forgetting take them from it under one lock,
//! so a message is either answered and kept, or forgotten, never both.
//!
//! Each note holds a token unique to the attempt that took it, and is
//! forgotten only while it still holds that token (compare-and-delete): a
//! note whose write timed out may have been taken by another server since
//! (ours never written, or lapsed), and deleting theirs would let the
//! message's next retry be answered a second time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::pipeline::new_session_id;
use crate::store::{Store, StoreError};

/// How long a message being answered is noted: longer than an answer
/// takes, short enough that one lost with its process is soon taken again.
pub(crate) const IN_PROGRESS_FOR_MS: u64 = 2 * 60 * 1_000;

/// How long a message answered is remembered: longer than Twilio retries.
pub(crate) const SEEN_FOR_MS: u64 = 48 * 3_600 * 1_000;

/// How long a shutdown spends forgetting the notes of dropped answers.
const FORGET_LIMIT: Duration = Duration::from_secs(2);

/// The messages this process noted and has not handed an answer for.
#[derive(Debug, Default)]
pub(crate) struct MessageMarks {
    pending: Mutex<HashMap<String, Pending>>,
}

/// A message noted by this process, its answer not yet handed on.
#[derive(Debug)]
struct Pending {
    /// The token its note holds.
    owner: String,
    /// Its webhook has been answered (its answer goes by REST).
    webhook_answered: bool,
}

/// What the store said of a message.
pub(crate) enum Sighting {
    /// New: noted as being answered.
    First,
    /// Noted before (a retried webhook).
    Seen,
}

impl MessageMarks {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes `message_sid` in `store` as being answered: [`Sighting::Seen`]
    /// when it was noted before. On a store error the note, which may have
    /// been written with its answer lost, is forgotten again (if the store
    /// answers), so that Twilio's retry is not dropped as seen.
    pub(crate) async fn take(
        &self,
        store: &dyn Store,
        message_sid: &str,
    ) -> Result<Sighting, StoreError> {
        let owner = new_session_id();
        match store
            .first_sight_of_message(message_sid, &owner, IN_PROGRESS_FOR_MS)
            .await
        {
            Ok(true) => {
                let pending = Pending {
                    owner,
                    webhook_answered: false,
                };
                self.pending().insert(message_sid.to_owned(), pending);
                Ok(Sighting::First)
            }
            Ok(false) => Ok(Sighting::Seen),
            Err(err) => {
                forget_in_store(store, message_sid, &owner).await;
                Err(err)
            }
        }
    }

    /// `message_sid`'s webhook was answered without its answer (too late,
    /// or in several parts): Twilio will not retry it, so a shutdown keeps
    /// its note and lets its answer go by REST if it is done in time.
    pub(crate) fn webhook_answered(&self, message_sid: &str) {
        if let Some(pending) = self.pending().get_mut(message_sid) {
            pending.webhook_answered = true;
        }
    }

    /// The answer to `message_sid` is handed on: its note is kept for
    /// [`SEEN_FOR_MS`]. False when a shutdown dropped the message meanwhile
    /// (its note forgotten): its answer must not go out.
    pub(crate) async fn answered(&self, store: &dyn Store, message_sid: &str) -> bool {
        let Some(mine) = self.pending().remove(message_sid) else {
            return false;
        };
        if let Err(err) = store
            .keep_message(message_sid, &mine.owner, SEEN_FOR_MS)
            .await
        {
            // The short note lapses: a retry after it would be answered
            // again (Twilio retries within seconds, not minutes).
            tracing::warn!(message_sid, error = %err, "cannot keep the answered message noted");
        }
        true
    }

    /// `message_sid` could not be answered: forgotten, so that Twilio's
    /// retry of it is taken. Nothing to forget when this process holds no
    /// note of it (a shutdown forgot it already).
    pub(crate) async fn forget(&self, store: &dyn Store, message_sid: &str) {
        let Some(mine) = self.pending().remove(message_sid) else {
            return;
        };
        forget_in_store(store, message_sid, &mine.owner).await;
    }

    /// At exit, with answers dropped: forgets every message noted whose
    /// webhook had no answer, so that Twilio's retry of it is answered by
    /// the next server (its answer, still being made, is not sent after
    /// this). Those whose webhook was answered stay: their answers may
    /// still go by REST while the process drains.
    pub(crate) async fn forget_dropped(&self, store: &dyn Store) {
        let dropped: Vec<(String, Pending)> = {
            let mut pending = self.pending();
            let waiting: Vec<String> = pending
                .iter()
                .filter(|(_, noted)| !noted.webhook_answered)
                .map(|(sid, _)| sid.clone())
                .collect();
            let waiting: Vec<(String, Pending)> = waiting
                .into_iter()
                .filter_map(|sid| pending.remove_entry(&sid))
                .collect();
            if !pending.is_empty() {
                tracing::warn!(
                    count = pending.len(),
                    "answers going by REST still being made at exit: lost if not sent before it \
                     (Twilio does not retry a webhook it had an answer to)"
                );
            }
            waiting
        };
        if dropped.is_empty() {
            return;
        }
        let count = dropped.len();
        let forgetting = async {
            for (message_sid, noted) in &dropped {
                forget_in_store(store, message_sid, &noted.owner).await;
            }
        };
        if tokio::time::timeout(FORGET_LIMIT, forgetting)
            .await
            .is_err()
        {
            tracing::warn!(
                count,
                "the store is slow: not every dropped message is forgotten"
            );
        } else {
            tracing::warn!(
                count,
                "messages dropped unanswered at exit: forgotten, so that Twilio's retries are answered"
            );
        }
    }
}

/// Forgets `message_sid`'s note in `store` if it is still `owner`'s.
async fn forget_in_store(store: &dyn Store, message_sid: &str, owner: &str) {
    if let Err(err) = store.forget_message(message_sid, owner).await {
        tracing::warn!(message_sid, error = %err, "cannot forget the unanswered message; a retry of it may be dropped as seen");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, StoreSettings, TextStore as _};

    #[tokio::test]
    async fn an_answer_keeps_its_note_and_a_dropped_one_is_forgotten() {
        let store = MemoryStore::new(StoreSettings::default());
        let marks = MessageMarks::default();
        assert!(matches!(
            marks.take(&store, "SM1").await.unwrap(),
            Sighting::First
        ));
        assert!(matches!(
            marks.take(&store, "SM1").await.unwrap(),
            Sighting::Seen
        ));
        assert!(marks.answered(&store, "SM1").await);
        // Dropped at exit, before its answer was handed on.
        marks.take(&store, "SM2").await.unwrap();
        // Its webhook answered already: its answer goes by REST.
        marks.take(&store, "SM3").await.unwrap();
        marks.webhook_answered("SM3");
        marks.forget_dropped(&store).await;
        assert!(!marks.answered(&store, "SM2").await, "sent after the drop");
        assert!(
            store
                .first_sight_of_message("SM2", "x", 1_000)
                .await
                .unwrap()
        );
        assert!(
            !store
                .first_sight_of_message("SM1", "x", 1_000)
                .await
                .unwrap()
        );
        // Twilio will not retry SM3: its answer still goes while draining.
        assert!(marks.answered(&store, "SM3").await);
        assert!(
            !store
                .first_sight_of_message("SM3", "x", 1_000)
                .await
                .unwrap()
        );
    }
}
