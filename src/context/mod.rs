//! The conversation: LLM context messages in the OpenAI chat format.

mod message;

pub use message::{Message, Role, ToolCall};
