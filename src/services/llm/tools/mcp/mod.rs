//! Tools from MCP servers (Model Context Protocol), declared in TOML next
//! to `http_tools`:
//!
//! ```toml
//! [[processor.mcp_servers]]
//! name = "files"
//! command = "npx"
//! args = ["-y", "@modelcontextprotocol/server-filesystem", "/srv/docs"]
//! tools = ["read_text_file"]      # default: every tool the server lists
//! tool_prefix = "files_"          # default: none
//! timeout_secs = 5                # default: the LLM's tool_timeout_secs
//!
//! [[processor.mcp_servers]]
//! name = "crm"
//! url = "https://crm.example.com/mcp"
//! bearer_token_env = "CRM_TOKEN"
//! ```
//!
//! The protocol is the official Rust SDK's (`rmcp`): its child-process
//! transport (stdio) and its streamable HTTP client, over the process's
//! one HTTP client.
//!
//! # One connection per process, shared by the sessions
//!
//! The factory of a pipeline (its `[[processor]]` config) lives as long as
//! the process serves it, and it keeps one connection per server: opened in
//! the background when the factory first builds the LLM (`voxpipe serve`
//! does so at start, to check secrets; `voxpipe check` never builds), and
//! reused by every session. Starting an
//! `npx`-launched server takes seconds and a process of its own; a call
//! center would otherwise pay that on every call, and run one server
//! process per live call. MCP requests carry their own ids, so concurrent
//! calls from many sessions share a connection safely. The cost is that a
//! server with per-connection state sees every session as one client; a
//! server that needs a session per call is not served by this design.
//!
//! # Tools at session start
//!
//! When the LLM starts (its `on_start`), it asks each server for its tools:
//! the list is kept per connection and asked again after a reconnect, or
//! when the server announces `notifications/tools/list_changed`. Each tool
//! becomes an ordinary tool of the LLM (name, description, input schema),
//! so it is run as any other: its arguments checked against its schema, the
//! per-tool timeout, cancellation by an interruption (the dropped request
//! sends `notifications/cancelled`), the result pushed back to the model.
//! A server that cannot be reached at session start costs that session its
//! tools, not the session: a warning is logged and the model goes without.
//! Sessions starting together share one listing, and a start waits at most
//! the server's `connect_timeout`: the listing goes on in the background,
//! for the next session. A tool whose input schema does not compile is left
//! out (its arguments could not be checked).
//!
//! # Failures cost calls, not sessions
//!
//! - A hung server costs the call its timeout; three calls in a row that
//!   time out, or a tool list that does not come within `connect_timeout`,
//!   close the connection (killing a child) and count as a failed start.
//! - A crashed server (a child that exited, a connection that closed)
//!   costs the calls in flight, which fail as tool errors; the next request
//!   finds the connection closed and opens it again (restarting the child).
//!   A server that fails to start is not tried again for a backoff that
//!   doubles from one second to 30 s (`restarts.rs`), so a broken server is
//!   not respawned for every call; an answer forgets its failures. A start
//!   the caller gave up on (a tool timeout shorter than the handshake) runs
//!   on in its own task, and its failure counts.
//! - A result marked `isError`, a JSON-RPC error and an answer that is not
//!   a result are tool errors with the server's reason (at most 300
//!   characters, the server's URL taken out), logged. Lines on a
//!   child's stdout that are not JSON-RPC are skipped by rmcp (and logged).
//! - A child gets only `HOME`, `LOGNAME`, `PATH`, `SHELL`, `TERM` and `USER`
//!   of voxpipe's environment (as the official TypeScript SDK does), plus
//!   `env` and the variables `pass_env` names: the LLM's keys are not handed
//!   to a third-party server. Its stderr goes to the log at debug level,
//!   read as bytes to its end (a line that is not UTF-8 is decoded lossily).

mod config;
mod connection;
mod connector;
mod restarts;
mod result;
mod tool;

pub use config::{McpServerConfig, McpTransportConfig};
pub use connection::McpServer;
pub(crate) use tool::session_tools;
