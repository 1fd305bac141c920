//! Tools the LLM can call: the [`Tool`] trait, the built-ins `end_call`
//! and `loan_payment`, HTTP tools, client tools (run by the client app),
//! document search (BM25 over markdown) and CSV lookup declared in TOML,
//! tools of MCP servers declared in TOML ([`mcp`]), and a [`ToolRegistry`]
//! open to tools added in code.
//!
//! To add a tool in code, implement [`Tool`], register it in a
//! [`ToolRegistry`] (starting from [`ToolRegistry::builtin`]) and put the
//! registry in the session's resources under [`ToolRegistry::RESOURCE`]
//! before the session is built; the LLM's `tools = [...]` then names it.

mod client;
mod documents;
mod end_call;
mod http;
mod loan_payment;
pub mod mcp;
mod registry;
mod table;
mod tool;
pub(crate) mod words;

pub use client::{ClientTool, ClientToolCalls, ClientToolConfig};
pub use documents::{DocumentIndex, DocumentTool, DocumentToolConfig};
pub use end_call::EndCall;
pub use http::{HttpTool, HttpToolConfig};
pub use loan_payment::{LoanPayment, LoanPaymentTool, loan_payment};
pub use registry::ToolRegistry;
pub use table::{CsvTool, CsvToolConfig, Table};
pub use tool::{Tool, ToolError, ToolOutcome, ToolSpec};
