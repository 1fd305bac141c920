//! [`LlmService`]: the LLM processor. It answers each `LlmMessages` with a
//! response task (see the driver) and forwards every other frame. A new
//! context while an answer is in flight replaces that answer, unless the
//! session does not allow interruptions: then it waits for it. When it
//! starts, it adds the tools of its MCP servers to those of its config.
//!
//! A `PreemptiveLlmMessages` context is answered the same way, at once,
//! but its tools with side effects wait for `PreemptiveReplyConfirmed`
//! (a discarded reply never runs them); the frame goes on ahead of the
//! reply, so `assistant_context` holds what follows. The results of the
//! tools it may run early are dropped if it is discarded (an interruption
//! or a new context before the confirmation), and the messages those tools
//! send the client app wait for the confirmation (see `tool_runs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::frame::{Direction, Frame, FrameBody, StartFrame};
use crate::pipeline::ChildTask;
use crate::pipeline::{Processor, ProcessorContext, ProcessorError};

use super::driver::Responder;
use super::tool_runs::{ToolResults, Unconfirmed, spawn_result_hub};
use super::tools::ClientToolCalls;
use super::tools::mcp::{McpServer, session_tools};

/// The LLM processor. See the module docs of [`crate::services::llm`].
pub struct LlmService {
    responder: Arc<Responder>,
    responses: u64,
    response: ChildTask,
    allow_interruptions: bool,
    results: Option<(ToolResults, ChildTask)>,
    client_calls: Option<Arc<ClientToolCalls>>,
    mcp_servers: Vec<Arc<McpServer>>,
    /// Set once a session of this config has checked its agents' tools
    /// against the MCP servers' (see `add_mcp_tools`).
    agent_tools_checked: Arc<AtomicBool>,
    /// Set when the preemptive reply in flight is confirmed.
    confirmation: Option<watch::Sender<bool>>,
    /// What the result hub does with a preemptive reply's tool results.
    unconfirmed: Unconfirmed,
}

impl LlmService {
    pub(crate) fn new(
        responder: Responder,
        mcp_servers: Vec<Arc<McpServer>>,
        agent_tools_checked: Arc<AtomicBool>,
    ) -> Self {
        LlmService {
            responder: Arc::new(responder),
            responses: 0,
            response: ChildTask::new("the LLM response task"),
            allow_interruptions: true,
            results: None,
            client_calls: None,
            mcp_servers,
            agent_tools_checked,
            confirmation: None,
            unconfirmed: Unconfirmed::default(),
        }
    }

    /// Adds the tools of the MCP servers, listed together. A server that
    /// cannot list them costs the session its tools only.
    async fn add_mcp_tools(&mut self) {
        if self.mcp_servers.is_empty() {
            return;
        }
        // Each server waits at most its `connect_timeout`, all at once:
        // the start is held no longer than the slowest allows.
        let call_timeout = self.responder.tool_timeout;
        let listed = futures_util::future::join_all(
            self.mcp_servers
                .iter()
                .map(|server| session_tools(server, call_timeout)),
        )
        .await;
        let Some(responder) = Arc::get_mut(&mut self.responder) else {
            // Unreachable: no response runs before the session starts.
            tracing::error!("the LLM answered before it started; its MCP tools are left out");
            return;
        };
        let mut all_listed = true;
        for tools in listed {
            match tools {
                Ok(tools) => tools.into_iter().for_each(|tool| responder.add_tool(tool)),
                Err(error) => {
                    all_listed = false;
                    tracing::warn!(
                        %error,
                        "the session goes without this MCP server's tools"
                    );
                }
            }
        }
        // The build could not tell an agent's tool from an MCP server's
        // before they were listed; now it can. Once per config, after a
        // start where every server listed its tools.
        if all_listed && !self.agent_tools_checked.swap(true, Ordering::Relaxed) {
            for (agent, tool) in unknown_agent_tools(responder) {
                tracing::warn!(
                    %agent,
                    %tool,
                    "an agent names a tool that neither the config nor any MCP server offers"
                );
            }
        }
    }

    /// Hands the client's tool results (`ClientToolResult` frames) to
    /// `calls`, where the session's client tools wait for them.
    pub(crate) fn with_client_tool_calls(mut self, calls: Arc<ClientToolCalls>) -> Self {
        self.client_calls = Some(calls);
        self
    }
}

/// The (agent, tool) pairs where the agent names a tool the LLM does not
/// have.
fn unknown_agent_tools(responder: &Responder) -> Vec<(Arc<str>, String)> {
    let Some(router) = &responder.router else {
        return Vec::new();
    };
    router
        .agents
        .iter()
        .flat_map(|agent| {
            agent
                .tools
                .iter()
                .filter(|tool| !responder.specs.iter().any(|s| s.name == **tool))
                .map(|tool| (Arc::clone(&agent.name), tool.clone()))
        })
        .collect()
}

#[async_trait]
impl Processor for LlmService {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        if let (
            FrameBody::ClientToolResult {
                tool_call_id,
                result,
            },
            Some(calls),
        ) = (&frame.body, &self.client_calls)
        {
            calls.deliver(tool_call_id, result.clone());
        }
        // Discarded with no interruption behind it (the session ending on
        // other words): the reply is stopped here, and tools waiting for
        // the confirmation see its sender gone and never run; else End
        // would wait on them for ever. (With an interruption, as usual,
        // this only comes first.)
        if matches!(frame.body, FrameBody::PreemptiveReplyDiscarded)
            && self.confirmation.take().is_some()
        {
            self.unconfirmed.discard().await;
            self.response.stop().await;
        }
        if matches!(frame.body, FrameBody::PreemptiveReplyConfirmed)
            && let Some(confirmation) = self.confirmation.take()
        {
            confirmation.send_replace(true);
            for data in self.unconfirmed.confirmed().await {
                ctx.push_downstream(FrameBody::ServerMessage(Arc::new(data)))
                    .await;
            }
        }
        let (messages, preemptive) = match frame.body {
            FrameBody::LlmMessages(messages) => (messages, false),
            FrameBody::PreemptiveLlmMessages(messages) => (messages, true),
            _ => {
                ctx.push(frame, direction).await;
                return Ok(());
            }
        };
        if self.allow_interruptions {
            // A new context supersedes the answer to the old one: cut
            // short on purpose, not failed.
            if self.response.stop().await {
                ctx.push_downstream(FrameBody::LlmResponseEnd { failed: false })
                    .await;
            }
        } else {
            // The bot may not be cut off: the answer in flight finishes first.
            self.response.finish().await?;
        }
        // A reply still unconfirmed is replaced: discarded.
        self.unconfirmed.discard().await;
        let results = match &self.results {
            Some((results, _)) => results.clone(),
            None => {
                let (results, hub) = spawn_result_hub(ctx.clone(), self.unconfirmed.clone());
                self.results = Some((results.clone(), hub));
                results
            }
        };
        let confirmed = if preemptive {
            ctx.push_downstream(FrameBody::PreemptiveLlmMessages(Arc::clone(&messages)))
                .await;
            let (confirmation, confirmed) = watch::channel(false);
            self.confirmation = Some(confirmation);
            Some(confirmed)
        } else {
            self.confirmation = None;
            None
        };
        self.responses += 1;
        if preemptive {
            self.unconfirmed.started(self.responses).await;
        }
        self.response.start(Arc::clone(&self.responder).respond(
            self.responses,
            messages,
            confirmed,
            results,
            ctx.clone(),
        ));
        Ok(())
    }

    async fn on_start(
        &mut self,
        start: &StartFrame,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        self.allow_interruptions = start.allow_interruptions;
        self.add_mcp_tools().await;
        self.results = Some(spawn_result_hub(ctx.clone(), self.unconfirmed.clone()));
        Ok(())
    }

    async fn on_interruption(&mut self, _ctx: &ProcessorContext) {
        // Before the tools are cancelled: their cancellations go nowhere.
        self.unconfirmed.discard().await;
        self.response.stop().await;
    }

    async fn on_end(&mut self, _ctx: &ProcessorContext) -> Result<(), ProcessorError> {
        // Finish the answer (and its goodbye) before End goes on.
        self.response.finish().await?;
        if let Some((results, mut hub)) = self.results.take() {
            // The hub ends when the last sender is gone: tools still running
            // (not cancelled by an interruption) deliver first.
            drop(results);
            hub.finish().await?;
        }
        Ok(())
    }

    async fn on_cancel(&mut self, _ctx: &ProcessorContext) {
        self.response.stop().await;
        // Dropping the hub's slot aborts it.
        self.results = None;
    }
}
