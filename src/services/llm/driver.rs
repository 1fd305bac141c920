//! The LLM driver: one response to a context, as a child task.
//!
//! A response may take several rounds: the model streams text (pushed as
//! `LlmText` at once, so the TTS can start speaking) and tool-call
//! fragments; when a round ends with tool calls, each call is announced
//! (`FunctionCallInProgress`), run in a task of its own with its timeout,
//! and its result pushed (`FunctionCallResult`); the calls and results are
//! appended to the round's messages and the model is asked again, until it
//! answers without tools or the round cap is reached (the last round
//! forbids tools). The whole response is bracketed by `LlmResponseStart`
//! and `LlmResponseEnd`.
//!
//! # Preemptive replies
//!
//! A response to a context sent before the user's turn was confirmed over
//! carries a confirmation to wait on: its tool calls run at once only when
//! every tool called is [`safe_to_run_early`](super::tools::Tool::safe_to_run_early);
//! otherwise they wait for the confirmation, and a discarded reply (its
//! task aborted) never runs them.
//!
//! # Interruption
//!
//! The processor aborts the response task; the tools it started are
//! cancelled or run on as each tool says (see `tool_runs`), and every call
//! still gets exactly one recorded result.
//!
//! # Errors
//!
//! A request refused with 429 or 5xx is retried before any of its output
//! is used; a failure after output started is reported (an `Error` frame
//! naming the provider and status) and the response ends there, so nothing
//! is said twice. A malformed event is reported and skipped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::conversation::{Message, Role};
use crate::frame::{FrameBody, MetricsData};
use crate::pipeline::ProcessorContext;
use crate::services::http::{next_chunk, send};
use crate::services::task::report;
use crate::services::{Connection, ServiceError, SseDecoder};

use super::tool_calls::{AssembledCall, ToolCallAssembler};
use super::tool_runs::{ToolResults, run_tools};
use super::tools::{Tool, ToolSpec};
use super::wire::{ChatDelta, ChatRequest, ChatWire, ToolChoice};

/// Everything a response needs, shared by the responses of a session.
#[derive(Debug)]
pub(crate) struct Responder {
    pub(crate) wire: Box<dyn ChatWire>,
    pub(crate) model: String,
    pub(crate) temperature: Option<f64>,
    pub(crate) max_tokens: Option<u32>,
    pub(crate) system_prompt: Option<String>,
    pub(crate) tools: Vec<Arc<dyn Tool>>,
    pub(crate) specs: Vec<ToolSpec>,
    pub(crate) max_tool_rounds: u32,
    pub(crate) tool_timeout: Duration,
    pub(crate) connection: Connection,
}

/// What one round of streaming produced.
struct Round {
    text: String,
    calls: Vec<AssembledCall>,
}

impl Responder {
    /// Adds `tool` to those the model may call, unless one has its name.
    pub(crate) fn add_tool(&mut self, tool: Arc<dyn Tool>) {
        let spec = tool.spec();
        if self.specs.iter().any(|s| s.name == spec.name) {
            tracing::warn!(tool = %spec.name, "two tools have this name; the later one is left out");
            return;
        }
        self.specs.push(spec.clone());
        self.tools.push(tool);
    }

    /// Answers `messages`: the whole response, from `LlmResponseStart` to
    /// `LlmResponseEnd`, then the end of the call if `end_call` ran.
    pub(crate) async fn respond(
        self: Arc<Self>,
        number: u64,
        messages: Arc<Vec<Message>>,
        mut confirmed: Option<watch::Receiver<bool>>,
        results: ToolResults,
        ctx: ProcessorContext,
    ) {
        ctx.push_downstream(FrameBody::LlmResponseStart).await;
        let mut ends_call = false;
        if let Err(error) = self
            .run(
                number,
                &messages,
                &mut confirmed,
                &results,
                &ctx,
                &mut ends_call,
            )
            .await
        {
            tracing::warn!(provider = self.wire.provider(), error = %error, "LLM response failed");
            report(error.into_processor_error(self.wire.provider()), &ctx).await;
        }
        ctx.push_downstream(FrameBody::LlmResponseEnd).await;
        if ends_call {
            ctx.request_end("end_call").await;
        }
    }

    async fn run(
        &self,
        number: u64,
        context: &[Message],
        confirmed: &mut Option<watch::Receiver<bool>>,
        results: &ToolResults,
        ctx: &ProcessorContext,
        ends_call: &mut bool,
    ) -> Result<(), ServiceError> {
        let mut messages = Vec::with_capacity(context.len() + 1);
        if let Some(prompt) = &self.system_prompt
            && context.first().is_none_or(|m| m.role != Role::System)
        {
            messages.push(Message::text(Role::System, prompt.clone()));
        }
        messages.extend_from_slice(context);
        let mut first_token = Some(Instant::now());
        for round in 0..=self.max_tool_rounds {
            let last = round == self.max_tool_rounds || *ends_call;
            let choice = if last {
                ToolChoice::None
            } else {
                ToolChoice::Auto
            };
            let id = format!("{number}_{round}");
            let streamed = self
                .stream_round(&id, &messages, choice, ctx, &mut first_token)
                .await?;
            if streamed.calls.is_empty() {
                break;
            }
            if last {
                tracing::warn!(
                    calls = streamed.calls.len(),
                    "the model called tools when told not to; the calls are ignored"
                );
                break;
            }
            if let Some(confirmation) = confirmed.as_mut()
                && !self.all_safe_to_run_early(&streamed.calls)
            {
                tracing::debug!("a preemptive reply's tools wait for the end of the turn");
                if confirmation.wait_for(|confirmed| *confirmed).await.is_err() {
                    // Superseded without a confirmation: never run.
                    return Ok(());
                }
            }
            let executed = run_tools(
                &self.tools,
                self.tool_timeout,
                number,
                streamed.calls,
                results,
                ctx,
            )
            .await;
            let text = streamed.text.trim();
            messages.push(Message::tool_calls(
                (!text.is_empty()).then(|| text.to_owned()),
                executed.iter().map(|e| e.call.clone()).collect(),
            ));
            for e in &executed {
                messages.push(Message::tool_result(e.call.id.clone(), e.result.clone()));
            }
            if executed.iter().any(|e| e.ends_call) {
                *ends_call = true;
                if !text.is_empty() {
                    // The goodbye was said with the call.
                    break;
                }
            }
        }
        Ok(())
    }

    /// Whether every tool `calls` name may run before the turn is over.
    fn all_safe_to_run_early(&self, calls: &[AssembledCall]) -> bool {
        calls.iter().all(|assembled| {
            self.tools
                .iter()
                .find(|t| t.spec().name == assembled.call.name)
                .is_some_and(|t| t.safe_to_run_early())
        })
    }

    async fn stream_round(
        &self,
        id: &str,
        messages: &[Message],
        tool_choice: ToolChoice,
        ctx: &ProcessorContext,
        first_token: &mut Option<Instant>,
    ) -> Result<Round, ServiceError> {
        let request = ChatRequest {
            model: &self.model,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            tools: &self.specs,
            tool_choice,
        };
        let provider = self.wire.provider();
        let response = send(
            |client| self.wire.request(client, &request, messages),
            &self.connection,
            provider,
        )
        .await?;
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if !content_type.starts_with("text/event-stream") {
            return Err(ServiceError::Protocol(format!(
                "expected an event stream (text/event-stream), got `{content_type}`"
            )));
        }
        let mut stream = response.bytes_stream();
        let mut events = SseDecoder::new();
        let mut calls = ToolCallAssembler::new();
        let mut text = String::new();
        let mut finished = false;
        loop {
            let chunk = next_chunk(&mut stream, self.connection.read_timeout).await?;
            match &chunk {
                Some(bytes) => events.handle_bytes(bytes),
                None => events.finish(),
            }
            while let Some(event) = events.poll_event() {
                let deltas = match event.map_err(|e| ServiceError::Protocol(e.to_string())) {
                    Ok(event) => self.wire.parse(&event.data),
                    Err(error) => Err(error),
                };
                let deltas = match deltas {
                    Ok(deltas) => deltas,
                    Err(error @ ServiceError::Protocol(_)) => {
                        tracing::warn!(provider, error = %error, "skipping a malformed event");
                        report(error.into_processor_error(provider), ctx).await;
                        continue;
                    }
                    Err(error) => return Err(error),
                };
                for delta in deltas {
                    if matches!(delta, ChatDelta::Text(_) | ChatDelta::ToolCall { .. })
                        && let Some(start) = first_token.take()
                    {
                        ctx.push_downstream(FrameBody::Metrics(MetricsData::Ttfb {
                            processor: ctx.name().to_owned(),
                            value_ms: start.elapsed().as_secs_f64() * 1000.0,
                        }))
                        .await;
                    }
                    match delta {
                        ChatDelta::Text(piece) => {
                            text.push_str(&piece);
                            ctx.push_downstream(FrameBody::LlmText(piece)).await;
                        }
                        ChatDelta::ToolCall {
                            index,
                            id,
                            name,
                            arguments,
                        } => calls.add(index, id.as_deref(), name.as_deref(), arguments.as_deref()),
                        ChatDelta::Finish(reason) => {
                            if reason == "length" {
                                tracing::warn!(provider, "the answer was cut at max_tokens");
                            }
                            finished = true;
                        }
                        ChatDelta::Done => finished = true,
                    }
                }
            }
            if chunk.is_none() {
                break;
            }
        }
        if !finished {
            return Err(ServiceError::Closed {
                code: None,
                reason: "the stream ended without a finish reason or [DONE]".to_owned(),
            });
        }
        Ok(Round {
            text,
            calls: calls.finish(id),
        })
    }
}
