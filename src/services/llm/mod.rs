//! The LLM service: streaming chat completions with tools.
//!
//! `[[processor]] type = "llm", provider = "openai"` answers each
//! `LlmMessages` frame (a whole context, from the user aggregator) with a
//! response: `LlmResponseStart`, the text as it streams (`LlmText`), tool
//! calls and their results (`FunctionCallInProgress`,
//! `FunctionCallResult`), `LlmResponseEnd`, and the time to the first token
//! as a `Ttfb` metric. The processor puts its `system_prompt` first when the
//! context has no system message. See the driver for rounds, interruption
//! and errors, and [`tools`] for the tools. `[[processor.agents]]` with
//! `[processor.router]` make it a router of specialist agents
//! ([`AgentConfig`], [`RouterConfig`]); `[processor.reflection]` has a
//! reviewer check each answer before it goes out ([`ReflectionConfig`]).

mod config;
mod driver;
mod openai;
mod reflection;
mod round;
mod router;
mod service;
mod side_model;
mod side_request;
mod tool_calls;
mod tool_runs;
mod tool_schema;
pub mod tools;
mod wire;

pub use config::OpenAiLlmConfig;
pub use openai::{parse_event_data, request_body};
pub use reflection::{DEFAULT_REVIEW_PROMPT, ReflectionConfig};
pub use router::{AgentConfig, DEFAULT_ROUTER_PROMPT, RouterConfig};
pub use service::LlmService;
pub use tool_calls::{AssembledCall, BadArguments, ToolCallAssembler};
pub use tool_runs::TOOL_CANCELLED;
pub use tool_schema::check_arguments;
pub use wire::{ChatDelta, ChatRequest, ToolChoice};
