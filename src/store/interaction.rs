//! One item of `call:{id}:interactions`: a completed [`Turn`] as stored.

use serde::{Deserialize, Serialize};

use super::time::rfc3339;
use crate::conversation::{Reflection, Role, ToolCall, Turn};

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
    /// What was said (for the assistant: only what the user heard; for a
    /// tool: its result).
    pub text: String,
    /// When the turn completed (RFC 3339).
    pub timestamp: String,
    /// Session time of completion, in milliseconds.
    pub session_ms: u64,
    /// True when the user cut the assistant off.
    #[serde(default)]
    pub interrupted: bool,
    /// For an assistant turn, the tools it called; for a tool turn, the call
    /// it answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For an assistant turn that answered the user: the voice-to-voice
    /// latency in milliseconds (end of the user's speech to the bot's first
    /// audio leaving), when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// For an assistant turn of a pipeline with specialist agents: the
    /// agent that answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// For an assistant turn whose answer a reviewer checked: the rounds
    /// and whether it approved (`false`: the last draft went out unapproved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reflection: Option<Reflection>,
}

impl Interaction {
    /// The same turn as `other`, wherever each is stored: every field
    /// but the position (two tool results can share their words and their
    /// millisecond, not their call).
    pub fn is_same_turn(&self, other: &Interaction) -> bool {
        let Interaction {
            index: _,
            role,
            text,
            timestamp,
            session_ms,
            interrupted,
            tool_calls,
            latency_ms,
            agent,
            reflection,
        } = self;
        *role == other.role
            && *text == other.text
            && *timestamp == other.timestamp
            && *session_ms == other.session_ms
            && *interrupted == other.interrupted
            && *tool_calls == other.tool_calls
            && *latency_ms == other.latency_ms
            && *agent == other.agent
            && *reflection == other.reflection
    }

    /// `turn` stored at position `index`.
    pub fn from_turn(turn: &Turn, index: u64) -> Self {
        Interaction {
            index,
            role: turn.role,
            text: turn.text.clone(),
            timestamp: rfc3339(turn.unix_ms),
            session_ms: turn.at_ms,
            interrupted: turn.interrupted,
            tool_calls: turn.tool_calls.clone(),
            latency_ms: turn.latency_ms,
            agent: turn.agent.clone(),
            reflection: turn.reflection,
        }
    }

    /// Who spoke, as written in the JSON: `user`, `assistant`, `tool`.
    pub fn speaker(&self) -> &'static str {
        match self.role {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::System => "system",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool_result(call: &str) -> Interaction {
        Interaction {
            index: 3,
            role: Role::Tool,
            text: "TOOL_CANCELLED".to_owned(),
            timestamp: "2026-12-07T12:00:00.000Z".to_owned(),
            session_ms: 1_000,
            interrupted: false,
            tool_calls: vec![ToolCall {
                id: call.to_owned(),
                name: "lookup".to_owned(),
                arguments: "{}".to_owned(),
            }],
            latency_ms: None,
            agent: None,
            reflection: None,
        }
    }

    #[test]
    fn the_same_turn_is_every_field_but_its_position() {
        let first = tool_result("call-1");
        let mut moved = first.clone();
        moved.index = 9;
        assert!(first.is_same_turn(&moved));
        // Two results of one millisecond, with the same words, of two calls.
        assert!(!first.is_same_turn(&tool_result("call-2")));
    }
}
