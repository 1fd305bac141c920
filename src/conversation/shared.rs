//! [`SharedConversation`]: the one context the two aggregators of a session
//! share.

use std::sync::{Arc, Mutex, MutexGuard};

use super::llm_context::LlmContext;

/// The state of one conversation: its LLM context, the transcript's turn
/// counter, and whether a reply to the last user turn is still due.
#[derive(Debug, Default)]
pub struct Conversation {
    /// The messages the LLM reads.
    pub context: LlmContext,
    next_turn: u64,
    awaiting_reply: bool,
}

impl Conversation {
    /// The index of the next turn, counting it as taken.
    pub(crate) fn take_turn_index(&mut self) -> u64 {
        let index = self.next_turn;
        self.next_turn += 1;
        index
    }

    /// True from the moment a user turn is handed to the LLM until the
    /// assistant's turn completes: the bot is answering.
    pub fn awaiting_reply(&self) -> bool {
        self.awaiting_reply
    }

    pub(crate) fn set_awaiting_reply(&mut self, awaiting: bool) {
        self.awaiting_reply = awaiting;
    }
}

/// A conversation shared by the user and assistant aggregators of one
/// session (Pipecat's `LLMContextAggregatorPair`): cheap to clone, every
/// clone is the same conversation.
///
/// Both aggregators reach it through the session's
/// `SessionResources` under the name
/// their TOML gives (`context = "default"`), so two aggregators built
/// independently for one session find the same object, and two sessions
/// never do. The lock is held only for a push or a snapshot, never across
/// an await.
#[derive(Debug, Clone, Default)]
pub struct SharedConversation(Arc<Mutex<Conversation>>);

impl SharedConversation {
    /// A conversation starting from `context`.
    pub fn new(context: LlmContext) -> Self {
        SharedConversation(Arc::new(Mutex::new(Conversation {
            context,
            ..Conversation::default()
        })))
    }

    /// Locks the conversation.
    pub fn lock(&self) -> MutexGuard<'_, Conversation> {
        // Every method leaves the conversation consistent between calls, so
        // a panic elsewhere cannot leave it half-written.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
