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
//! # Interruption
//!
//! The processor aborts the response task. Tool tasks of cancellable tools
//! are aborted with it; the others run on and still deliver. Every call
//! yields exactly one `FunctionCallResult`: its result, or
//! [`TOOL_CANCELLED`] sent by a guard when the call is dropped unfinished,
//! so the recorded context never holds a call without an answer. Results
//! go through one task for the session (the result hub), which outlives
//! the responses; a running response waits until its results have been
//! pushed, so they come before the next round's text.
//!
//! # Errors
//!
//! A request refused with 429 or 5xx is retried before any of its output
//! is used; a failure after output started is reported (an `Error` frame
//! naming the provider and status) and the response ends there, so nothing
//! is said twice. A malformed event is reported and skipped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::context::{Message, Role, ToolCall};
use crate::frame::{FrameBody, MetricsData};
use crate::processor::ProcessorContext;
use crate::services::http::{next_chunk, send};
use crate::services::report::report;
use crate::services::{Connection, ServiceError, SseDecoder};

use super::openai::{ChatDelta, ChatRequest, ToolChoice};
use super::tool_calls::{AssembledCall, ToolCallAssembler, check_arguments};
use super::tools::{Tool, ToolSpec};

/// The result recorded for a call cancelled by an interruption.
pub const TOOL_CANCELLED: &str = "CANCELLED: the user interrupted before the tool finished";

/// How a provider's chat API is spoken: building a streaming request and
/// parsing the `data` of each event.
pub(crate) trait ChatWire: Send + Sync + std::fmt::Debug {
    /// The provider's name for errors and logs.
    fn provider(&self) -> &'static str;

    /// A streaming request for `messages`.
    fn request(
        &self,
        client: &reqwest::Client,
        request: &ChatRequest<'_>,
        messages: &[Message],
    ) -> reqwest::RequestBuilder;

    /// What one event's data says.
    fn parse(&self, data: &str) -> Result<Vec<ChatDelta>, ServiceError>;
}

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

/// One result on its way to the hub.
struct Delivery {
    call: ToolCall,
    result: String,
    pushed: Option<oneshot::Sender<()>>,
}

/// The sending side of the session's result hub.
#[derive(Clone)]
pub(crate) struct ToolResults {
    tx: mpsc::UnboundedSender<Delivery>,
}

/// Starts the result hub: it pushes each result as a `FunctionCallResult`
/// and ends once every sender is gone.
pub(crate) fn spawn_result_hub(ctx: ProcessorContext) -> (ToolResults, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Delivery>();
    let hub = tokio::spawn(async move {
        while let Some(delivery) = rx.recv().await {
            ctx.push_downstream(FrameBody::FunctionCallResult {
                call: delivery.call,
                result: delivery.result,
            })
            .await;
            if let Some(pushed) = delivery.pushed {
                // The response may be gone (interrupted): nothing waits then.
                let _gone = pushed.send(());
            }
        }
    });
    (ToolResults { tx }, hub)
}

/// Delivers a call's result exactly once: the real one, or
/// [`TOOL_CANCELLED`] if dropped before.
struct PendingResult {
    call: Option<ToolCall>,
    results: ToolResults,
}

impl PendingResult {
    async fn deliver(mut self, result: String) {
        let Some(call) = self.call.take() else {
            return;
        };
        let (pushed, done) = oneshot::channel();
        if self
            .results
            .tx
            .send(Delivery {
                call,
                result,
                pushed: Some(pushed),
            })
            .is_ok()
        {
            // An error means the hub stopped (session over): nothing to wait for.
            let _stopped = done.await;
        }
    }
}

impl Drop for PendingResult {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            tracing::debug!(tool = %call.name, "tool call cancelled");
            // The hub may have stopped with the session: then nobody needs it.
            let _stopped = self.results.tx.send(Delivery {
                call,
                result: TOOL_CANCELLED.to_owned(),
                pushed: None,
            });
        }
    }
}

/// Aborts a cancellable tool's task when the response is dropped.
struct AbortOnDrop(JoinHandle<Executed>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

enum Running {
    Cancellable(AbortOnDrop),
    Detached(JoinHandle<Executed>),
}

/// A call and what it returned.
struct Executed {
    call: ToolCall,
    result: String,
    ends_call: bool,
}

/// What one round of streaming produced.
struct Round {
    text: String,
    calls: Vec<AssembledCall>,
}

impl Responder {
    /// Answers `messages`: the whole response, from `LlmResponseStart` to
    /// `LlmResponseEnd`, then the end of the call if `end_call` ran.
    pub(crate) async fn respond(
        self: Arc<Self>,
        number: u64,
        messages: Arc<Vec<Message>>,
        results: ToolResults,
        ctx: ProcessorContext,
    ) {
        ctx.push_downstream(FrameBody::LlmResponseStart).await;
        let mut ends_call = false;
        if let Err(error) = self
            .run(number, &messages, &results, &ctx, &mut ends_call)
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
            let executed = self.run_tools(number, streamed.calls, results, ctx).await;
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

    async fn run_tools(
        &self,
        number: u64,
        calls: Vec<AssembledCall>,
        results: &ToolResults,
        ctx: &ProcessorContext,
    ) -> Vec<Executed> {
        for assembled in &calls {
            ctx.push_downstream(FrameBody::FunctionCallInProgress(assembled.call.clone()))
                .await;
        }
        let mut running = Vec::with_capacity(calls.len());
        for assembled in calls {
            let tool = self
                .tools
                .iter()
                .find(|t| t.spec().name == assembled.call.name)
                .cloned();
            let cancellable = tool.as_ref().is_none_or(|t| t.cancel_on_interruption());
            let timeout = tool
                .as_ref()
                .and_then(|t| t.timeout())
                .unwrap_or(self.tool_timeout);
            let pending = PendingResult {
                call: Some(assembled.call.clone()),
                results: results.clone(),
            };
            let task = tokio::spawn(run_tool(tool, assembled, timeout, pending));
            running.push(if cancellable {
                Running::Cancellable(AbortOnDrop(task))
            } else {
                Running::Detached(task)
            });
        }
        let mut executed = Vec::with_capacity(running.len());
        for run in running {
            let joined = match run {
                Running::Cancellable(mut guard) => (&mut guard.0).await,
                Running::Detached(task) => task.await,
            };
            match joined {
                Ok(done) => executed.push(done),
                Err(error) => tracing::error!(response = number, %error, "a tool task failed"),
            }
        }
        executed
    }
}

async fn run_tool(
    tool: Option<Arc<dyn Tool>>,
    assembled: AssembledCall,
    timeout: Duration,
    pending: PendingResult,
) -> Executed {
    let call = assembled.call;
    let outcome = match (tool, assembled.arguments) {
        (None, _) => Err(format!("there is no tool named `{}`", call.name)),
        (Some(_), Err(error)) => Err(error),
        (Some(tool), Ok(arguments)) => match check_arguments(&tool.spec().parameters, &arguments) {
            Err(error) => Err(error),
            Ok(()) => match tokio::time::timeout(timeout, tool.call(arguments)).await {
                Err(_) => Err(format!("the tool gave no result within {timeout:?}")),
                Ok(Err(error)) => Err(error.to_string()),
                Ok(Ok(outcome)) => Ok(outcome),
            },
        },
    };
    let (result, ends_call) = match outcome {
        Ok(outcome) => (outcome.result, outcome.ends_call),
        Err(error) => {
            tracing::warn!(tool = %call.name, %error, "tool call failed");
            (json!({ "error": error }).to_string(), false)
        }
    };
    pending.deliver(result.clone()).await;
    Executed {
        call,
        result,
        ends_call,
    }
}
