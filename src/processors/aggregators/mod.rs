//! The context aggregators (Pipecat's aggregator pair): `user_context`
//! before the LLM and `assistant_context` after the TTS.
//!
//! Both keep one [`SharedConversation`](crate::conversation::SharedConversation),
//! found through the session's resources under the name both TOML tables
//! give (`context`, default `"default"`): each session gets its own, and
//! the LLM itself stays stateless (it answers the context it is handed,
//! putting its configured system prompt first if the context has none).
//! The user aggregator appends user turns and hands a snapshot of the whole
//! context to the LLM (`LlmMessages`); the assistant aggregator appends tool
//! calls, tool results and the words the user actually heard.
//!
//! Every completed turn (a user turn handed to the LLM, an assistant turn
//! played or interrupted, a tool result) is pushed downstream as a
//! `TurnCompleted` system frame carrying a
//! [`Turn`](crate::conversation::Turn): role, text, interrupted flag, tool
//! details, an index for idempotent appends and timestamps. Whoever keeps
//! the conversation (the agent layer's session memory) observes them.

mod assistant;
mod assistant_turn;
mod false_interruption;
mod preemptive_hold;
mod turn_analyzer;
mod turn_end_config;
mod turn_ending;
mod user;
mod user_turn;

pub use assistant::{AssistantContextAggregator, AssistantContextConfig};
pub use assistant_turn::{AssistantTurnTracker, CompletedTurn, heard_text};
pub use turn_analyzer::{TurnAnalyzerKind, end_of_turn_model};
pub use turn_end_config::TurnEndConfig;
pub use user::{UserContextAggregator, UserContextConfig};
pub use user_turn::UserTurnTracker;
