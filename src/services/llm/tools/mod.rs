//! Tools the LLM can call: the [`Tool`] trait, the built-in `end_call`,
//! HTTP tools and client tools (run by the client app) declared in TOML,
//! tools of MCP servers declared in TOML ([`mcp`]), and a [`ToolRegistry`]
//! open to tools added in code.
//!
//! To add a tool in code, implement [`Tool`], register it in a
//! [`ToolRegistry`] (starting from [`ToolRegistry::builtin`]) and put the
//! registry in the session's resources under [`ToolRegistry::RESOURCE`]
//! before the session is built; the LLM's `tools = [...]` then names it.

mod client;
mod end_call;
mod http;
pub mod mcp;
mod registry;
mod tool;

pub use client::{ClientTool, ClientToolCalls, ClientToolConfig};
pub use end_call::EndCall;
pub use http::{HttpTool, HttpToolConfig};
pub use registry::ToolRegistry;
pub use tool::{Tool, ToolError, ToolOutcome, ToolSpec};
