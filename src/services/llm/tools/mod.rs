//! Tools the LLM can call: the [`Tool`] trait, the built-in `end_call`,
//! HTTP tools declared in TOML, and a [`ToolRegistry`] open to tools added
//! in code.
//!
//! To add a tool in code, implement [`Tool`], register it in a
//! [`ToolRegistry`] (starting from [`ToolRegistry::builtin`]) and put the
//! registry in the session's resources under [`ToolRegistry::RESOURCE`]
//! before the session is built; the LLM's `tools = [...]` then names it.

mod end_call;
mod http;
mod registry;
mod tool;

pub use end_call::EndCall;
pub use http::{HttpTool, HttpToolConfig};
pub use registry::ToolRegistry;
pub use tool::{Tool, ToolError, ToolOutcome, ToolSpec};
