//! One completed turn of the transcript: an item of `call:{id}:interactions`.

use serde::{Deserialize, Serialize};

use super::message::{Message, Role, ToolCall};

/// A completed turn, as persisted.
///
/// `index` is the turn's position in the transcript (0-based); the store
/// appends a turn only at its own index, which makes every append
/// idempotent: a retry after a lost reply never writes a turn twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    /// Position in the transcript, from 0.
    pub index: u64,
    /// `user`, `assistant` or `tool`.
    pub role: Role,
    /// What was said (for the assistant: only what the user heard).
    pub text: String,
    /// When the turn completed (RFC 3339).
    pub timestamp: String,
    /// Session time of completion, in milliseconds.
    pub session_ms: u64,
    /// True when the user cut the assistant off.
    #[serde(default)]
    pub interrupted: bool,
    /// Tools the assistant called in this turn.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a tool turn: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Interaction {
    /// Who spoke, as written in the JSON: `user`, `assistant`, `tool`.
    pub fn speaker(&self) -> &'static str {
        match self.role {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::System => "system",
        }
    }

    /// The turn as an LLM context message.
    pub fn to_message(&self) -> Message {
        Message {
            role: self.role,
            content: (!self.text.is_empty() || self.tool_calls.is_empty())
                .then(|| self.text.clone()),
            tool_calls: self.tool_calls.clone(),
            tool_call_id: self.tool_call_id.clone(),
        }
    }
}

/// A completed turn before the session's writer numbers and stamps it.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletedTurn {
    /// The message the turn added to the LLM context.
    pub message: Message,
    /// True when the user cut the assistant off.
    pub interrupted: bool,
    /// Session time of completion, in milliseconds.
    pub session_ms: u64,
}

impl CompletedTurn {
    /// A turn of `role` saying `text`.
    pub fn text(role: Role, text: impl Into<String>, session_ms: u64) -> Self {
        CompletedTurn {
            message: Message::text(role, text),
            interrupted: false,
            session_ms,
        }
    }

    /// The stored form, at position `index`, completed at `timestamp`.
    pub fn into_interaction(self, index: u64, timestamp: String) -> Interaction {
        Interaction {
            index,
            role: self.message.role,
            text: self.message.content.unwrap_or_default(),
            timestamp,
            session_ms: self.session_ms,
            interrupted: self.interrupted,
            tool_calls: self.message.tool_calls,
            tool_call_id: self.message.tool_call_id,
        }
    }
}
