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

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::store::{Store, StoreError};

/// How long a message being answered is noted: longer than an answer
/// takes, short enough that one lost with its process is soon taken again.
pub(crate) const IN_PROGRESS_FOR_MS: u64 = 2 * 60 * 1_000;

/// How long a message answered is remembered: longer than Twilio retries.
pub(crate) const SEEN_FOR_MS: u64 = 48 * 3_600 * 1_000;

/// How long a shutdown spends forgetting the notes of dropped answers.
const FORGET_LIMIT: Duration = Duration::from_secs(2);

/// The messages this process noted and has not handed an answer for, each
/// with whether its webhook has been answered (its answer goes by REST).
#[derive(Debug, Default)]
pub(crate) struct MessageMarks {
    pending: Mutex<HashMap<String, bool>>,
}

/// What the store said of a message.
pub(crate) enum Sighting {
    /// New: noted as being answered.
    First,
    /// Noted before (a retried webhook).
    Seen,
}

impl MessageMarks {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, bool>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes `message_sid` in `store` as being answered: [`Sighting::Seen`]
    /// when it was noted before.
    pub(crate) async fn take(
        &self,
        store: &dyn Store,
        message_sid: &str,
    ) -> Result<Sighting, StoreError> {
        if !store
            .first_sight_of_message(message_sid, IN_PROGRESS_FOR_MS)
            .await?
        {
            return Ok(Sighting::Seen);
        }
        self.pending().insert(message_sid.to_owned(), false);
        Ok(Sighting::First)
    }

    /// `message_sid`'s webhook was answered without its answer (too late,
    /// or in several parts): Twilio will not retry it, so a shutdown keeps
    /// its note and lets its answer go by REST if it is done in time.
    pub(crate) fn webhook_answered(&self, message_sid: &str) {
        if let Some(webhook_answered) = self.pending().get_mut(message_sid) {
            *webhook_answered = true;
        }
    }

    /// The answer to `message_sid` is handed on: its note is kept for
    /// [`SEEN_FOR_MS`]. False when a shutdown dropped the message meanwhile
    /// (its note forgotten): its answer must not go out.
    pub(crate) async fn answered(&self, store: &dyn Store, message_sid: &str) -> bool {
        let mine = self.pending().remove(message_sid).is_some();
        if !mine {
            return false;
        }
        if let Err(err) = store.keep_message(message_sid, SEEN_FOR_MS).await {
            // The short note lapses: a retry after it would be answered
            // again (Twilio retries within seconds, not minutes).
            tracing::warn!(message_sid, error = %err, "cannot keep the answered message noted");
        }
        true
    }

    /// `message_sid` could not be answered: forgotten, so that Twilio's
    /// retry of it is taken.
    pub(crate) async fn forget(&self, store: &dyn Store, message_sid: &str) {
        self.pending().remove(message_sid);
        if let Err(err) = store.forget_message(message_sid).await {
            tracing::warn!(message_sid, error = %err, "cannot forget the unanswered message; a retry of it may be dropped as seen");
        }
    }

    /// At exit, with answers dropped: forgets every message noted whose
    /// webhook had no answer, so that Twilio's retry of it is answered by
    /// the next server (its answer, still being made, is not sent after
    /// this). Those whose webhook was answered stay: their answers may
    /// still go by REST while the process drains.
    pub(crate) async fn forget_dropped(&self, store: &dyn Store) {
        let dropped: Vec<String> = {
            let mut pending = self.pending();
            let waiting: Vec<String> = pending
                .iter()
                .filter(|(_, webhook_answered)| !**webhook_answered)
                .map(|(sid, _)| sid.clone())
                .collect();
            for sid in &waiting {
                pending.remove(sid);
            }
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
            for message_sid in &dropped {
                if let Err(err) = store.forget_message(message_sid).await {
                    tracing::warn!(message_sid, error = %err, "cannot forget a dropped message; a retry of it is dropped as seen until its note lapses");
                }
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
        assert!(store.first_sight_of_message("SM2", 1_000).await.unwrap());
        assert!(!store.first_sight_of_message("SM1", 1_000).await.unwrap());
        // Twilio will not retry SM3: its answer still goes while draining.
        assert!(marks.answered(&store, "SM3").await);
        assert!(!store.first_sight_of_message("SM3", 1_000).await.unwrap());
    }
}
