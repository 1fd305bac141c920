//! The conversation and its memory.
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
//! for idempotent appends and timestamps.
//!
//! # Memory
//!
//! - What is kept of a call ([`CallRecord`], [`Interaction`]) and where: the
//!   [stores](store), Redis or embedded, with the key schema of DESIGN.md.
//! - How it gets there without holding up the conversation: the session's
//!   [`SessionMemory`] observes each `TurnCompleted` frame and hands the
//!   turn to one [writer](writer) per session.
//! - What the next session starts from: the [`SessionPrompt`] (segment
//!   prompts and the refinement loop's tactics), which becomes the LLM's
//!   system prompt.
//! - The [skills](skills) behind the `search_context` tool.
//! - [`ContextRuntime`] ties them together for a process.

mod assistant_aggregator;
mod assistant_turn;
mod call;
mod config;
mod conversation;
mod interaction;
mod llm_context;
mod memory;
mod message;
mod prompt;
mod runtime;
pub mod skills;
pub mod store;
mod tactics;
pub mod time;
mod turn;
mod user_aggregator;
mod user_turn;
pub mod writer;

pub use assistant_aggregator::{AssistantContextAggregator, AssistantContextConfig};
pub use assistant_turn::{AssistantTurnTracker, CompletedTurn, heard_text};
pub use call::{CallChange, CallRecord, CallStatus, Evaluation, Outcome, Segment};
pub use config::{ContextSection, SkillsSection, StoreKind};
pub use conversation::{Conversation, SharedConversation};
pub use interaction::Interaction;
pub use llm_context::{LlmContext, TOOL_IN_PROGRESS};
pub use memory::SessionMemory;
pub use message::{Message, Role, ToolCall};
pub use prompt::{PromptKey, SessionPrompt};
pub use runtime::{ContextError, ContextRuntime, RuntimeParts, worker_name};
pub use tactics::{TacticsList, merge_tactics, tactic_identity};
pub use turn::Turn;
pub use user_aggregator::{UserContextAggregator, UserContextConfig};
pub use user_turn::UserTurnTracker;
pub use writer::{TurnRecorder, WriteReport, WriterStatus};
