//! What a text message's run tells its caller.

use crate::conversation::ToolCall;

/// What happens while a message is answered, in order: for streaming
/// (the chat API's server-sent events, the terminal chat).
#[derive(Debug, Clone, PartialEq)]
pub enum TextEvent {
    /// Answer text as the model streams it.
    Delta(String),
    /// The model called a tool.
    ToolCall(ToolCall),
    /// A tool answered.
    ToolResult {
        /// The call.
        call: ToolCall,
        /// Its result.
        result: String,
    },
    /// The answer is complete (the last event).
    Done(Reply),
}

/// A message's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The conversation's call id (`call:{id}`).
    pub call_id: String,
    /// The answer's text (when the model failed: the apology, after
    /// whatever it had said before failing).
    pub text: String,
    /// The model could not answer, or failed partway; `text` ends with the
    /// apology.
    pub failed: bool,
}
