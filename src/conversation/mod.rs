//! The conversation: what the LLM reads and what persistence keeps.
//!
//! A leaf of the crate (it imports nothing of voxpipe's), so that frames,
//! services and the store can all speak of the same messages and turns.
//!
//! - [`Message`], [`Role`], [`ToolCall`]: one message in the OpenAI
//!   chat-completions shape.
//! - [`LlmContext`]: the messages of one conversation, as the LLM reads them.
//! - [`SharedConversation`]: the one context the two aggregators of a
//!   session share (Pipecat's aggregator pair).
//! - [`Turn`]: one completed turn (a user's words, what the bot actually
//!   said, a tool's result), as the aggregators announce it and the store
//!   keeps it.

mod llm_context;
mod message;
mod shared;
mod turn;

pub use llm_context::{LlmContext, TOOL_IN_PROGRESS};
pub use message::{Message, Role, ToolCall};
pub use shared::{Conversation, SharedConversation};
pub use turn::{Reflection, Turn};
