//! [`Turn`]: one completed turn of the conversation, as persistence sees it.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::message::{Role, ToolCall};

/// A completed turn: a user's words handed to the LLM, what the bot actually
/// said (cut where it was interrupted), or a tool's result.
///
/// The aggregators push one `TurnCompleted`
/// frame per turn as it completes, so a store can append it at once (an
/// observer or a processor sees the frame; the aggregators need not know).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Turn {
    /// Position in the session's transcript, from 0, increasing by one per
    /// turn: a key for idempotent appends.
    pub index: u64,
    /// `user`, `assistant` or `tool`.
    pub role: Role,
    /// What was said (for a tool turn: the result).
    pub text: String,
    /// The user interrupted the bot during this turn; `text` is what was
    /// heard before.
    pub interrupted: bool,
    /// For an assistant turn, the tools it called; for a tool turn, the call
    /// it answers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Session time at which the turn completed, in milliseconds.
    pub at_ms: u64,
    /// Wall-clock time at which the turn completed, in Unix milliseconds.
    pub unix_ms: u64,
    /// For an assistant turn that answered the user: the voice-to-voice
    /// latency, from the end of the user's speech to the bot's first audio
    /// leaving (the `turn_latency` event's `total_ms`), when measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// For an assistant turn of a pipeline with specialist agents: the
    /// agent that answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// For an assistant turn of an LLM with reflection: how its answer was
    /// reviewed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reflection: Option<Reflection>,
}

/// How a reviewer judged an answer before it went out (the LLM's
/// `[processor.reflection]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reflection {
    /// Reviews made: 1 when the first draft was approved.
    pub rounds: u32,
    /// The reviewer approved the answer that went out; false when it never
    /// did within `max_rounds` (or could not be asked): the last draft went
    /// out unapproved.
    pub approved: bool,
}

impl Turn {
    /// A turn completed now (wall clock) at session time `at`.
    pub(crate) fn completed(index: u64, role: Role, text: String, at: Duration) -> Self {
        Turn {
            index,
            role,
            text,
            interrupted: false,
            tool_calls: Vec::new(),
            at_ms: at.as_millis() as u64,
            unix_ms: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            latency_ms: None,
            agent: None,
            reflection: None,
        }
    }
}
