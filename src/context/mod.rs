//! The conversation: the LLM context in the OpenAI chat format, and the two
//! aggregators that keep it.
//!
//! # Sharing one context per session
//!
//! A pipeline has a `user_context` processor before the LLM and an
//! `assistant_context` processor after the TTS (Pipecat's aggregator pair).
//! Both keep one [`SharedConversation`]: the user aggregator appends user
//! turns and hands a snapshot of the whole context to the LLM
//! (`LlmMessages`); the assistant aggregator appends tool calls, tool
//! results and the words the user actually heard. They find the same object
//! through the session's [`SessionResources`](crate::session::SessionResources)
//! under the name both TOML tables give (`context`, default `"default"`):
//! each session gets its own, and the LLM itself stays stateless (it answers
//! the context it is handed, putting its configured system prompt first if
//! the context has none).
//!
//! # Turns
//!
//! Every completed turn (a user turn handed to the LLM, an assistant turn
//! played or interrupted, a tool result) is pushed downstream as a
//! [`TurnCompleted`](crate::frame::FrameBody::TurnCompleted) system frame
//! carrying a [`Turn`]: role, text, interrupted flag, tool details, an index
//! for idempotent appends and timestamps. Persisting the transcript needs
//! only an observer or a processor that reads these frames.

mod assistant_aggregator;
mod assistant_turn;
mod conversation;
mod llm_context;
mod message;
mod turn;
mod user_aggregator;
mod user_turn;

pub use assistant_aggregator::{AssistantContextAggregator, AssistantContextConfig};
pub use assistant_turn::{AssistantTurnTracker, CompletedTurn, heard_text};
pub use conversation::{Conversation, SharedConversation};
pub use llm_context::{LlmContext, TOOL_IN_PROGRESS};
pub use message::{Message, Role, ToolCall};
pub use turn::Turn;
pub use user_aggregator::{UserContextAggregator, UserContextConfig};
pub use user_turn::UserTurnTracker;
