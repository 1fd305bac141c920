//! Running tool calls: a task per call with its timeout, and the session's
//! result hub, through which every call gets exactly one result.
//!
//! Results go through one task for the session (the hub), which outlives
//! the responses: a running response waits until its results have been
//! pushed, so they come before the next round's text; a response aborted
//! by an interruption drops its cancellable tools, whose guards deliver
//! [`TOOL_CANCELLED`] instead, while tools that are not cancellable run on
//! and still deliver.
//!
//! The results of a preemptive response (its tools safe to run early) are
//! the reply's as much as its words: the hub knows, through
//! [`Unconfirmed`], the preemptive response awaiting its confirmation and
//! those discarded unconfirmed. A discarded response's results (real or
//! cancelled) are dropped here, since its `FunctionCallInProgress` may have
//! been dropped as stale by the interruption and nothing downstream would
//! know the result for one of its calls. A pending response's server
//! messages (system frames, which `assistant_context`'s hold lets pass)
//! wait for its confirmation, and go with the discard.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::conversation::ToolCall;
use crate::frame::FrameBody;
use crate::pipeline::ChildTask;
use crate::pipeline::ProcessorContext;

use super::tool_calls::AssembledCall;
use super::tool_schema::validate_arguments;
use super::tools::Tool;

/// The result recorded for a call cancelled by an interruption.
pub const TOOL_CANCELLED: &str = "CANCELLED: the user interrupted before the tool finished";

/// One result on its way to the hub.
struct Delivery {
    /// The number of the response that called the tool.
    response: u64,
    call: ToolCall,
    result: String,
    /// What the tool sends the client app, pushed before the result.
    server_message: Option<Value>,
    pushed: Option<oneshot::Sender<()>>,
}

/// The sending side of the session's result hub.
#[derive(Clone)]
pub(crate) struct ToolResults {
    tx: mpsc::UnboundedSender<Delivery>,
}

/// The most discarded responses remembered: a tool that outlives more
/// replies than that is rare, and its result then recorded as any result
/// of a call recorded nowhere.
const DISCARDED_RESPONSES: usize = 16;

/// The preemptive response awaiting confirmation and those discarded
/// unconfirmed, shared by the LLM processor and its result hub (see the
/// module docs). An async lock: the hub holds it while it pushes, so a
/// result is either pushed before the LLM forwards the discard's
/// interruption (and dropped downstream as stale) or sees the discard.
#[derive(Clone, Default)]
pub(crate) struct Unconfirmed(Arc<tokio::sync::Mutex<UnconfirmedResponses>>);

#[derive(Default)]
struct UnconfirmedResponses {
    /// The preemptive response awaiting its confirmation, and the server
    /// messages its tools sent meanwhile.
    pending: Option<(u64, Vec<Value>)>,
    /// Responses discarded unconfirmed, oldest first.
    discarded: VecDeque<u64>,
}

impl UnconfirmedResponses {
    fn discard_pending(&mut self) {
        if let Some((response, messages)) = self.pending.take() {
            if !messages.is_empty() {
                tracing::debug!(
                    response,
                    "a discarded reply's tool messages to the client: dropped"
                );
            }
            if self.discarded.len() == DISCARDED_RESPONSES {
                self.discarded.pop_front();
            }
            self.discarded.push_back(response);
        }
    }
}

impl Unconfirmed {
    /// Preemptive response `response` starts (after any pending one was
    /// discarded).
    pub(crate) async fn started(&self, response: u64) {
        let mut responses = self.0.lock().await;
        responses.discard_pending();
        responses.pending = Some((response, Vec::new()));
    }

    /// The pending response is confirmed: the server messages it held back.
    pub(crate) async fn confirmed(&self) -> Vec<Value> {
        let mut responses = self.0.lock().await;
        responses
            .pending
            .take()
            .map(|(_, messages)| messages)
            .unwrap_or_default()
    }

    /// The pending response, if any, is discarded unconfirmed: its results
    /// and messages go nowhere.
    pub(crate) async fn discard(&self) {
        self.0.lock().await.discard_pending();
    }
}

/// Starts the result hub: it pushes each result as a `FunctionCallResult`
/// (except those of discarded responses, see the module docs) and ends
/// once every sender is gone.
pub(crate) fn spawn_result_hub(
    ctx: ProcessorContext,
    unconfirmed: Unconfirmed,
) -> (ToolResults, ChildTask) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Delivery>();
    let hub = ChildTask::spawn("the tool result hub", async move {
        while let Some(delivery) = rx.recv().await {
            let mut responses = unconfirmed.0.lock().await;
            if responses.discarded.contains(&delivery.response) {
                tracing::debug!(
                    tool = %delivery.call.name,
                    "the result of a discarded reply's tool call: dropped"
                );
            } else {
                let mut server_message = delivery.server_message;
                if let Some((_, held)) = responses
                    .pending
                    .as_mut()
                    .filter(|(pending, _)| *pending == delivery.response)
                {
                    held.extend(server_message.take());
                }
                if let Some(data) = server_message {
                    ctx.push_downstream(FrameBody::ServerMessage(Arc::new(data)))
                        .await;
                }
                ctx.push_downstream(FrameBody::FunctionCallResult {
                    call: delivery.call,
                    result: delivery.result,
                })
                .await;
            }
            drop(responses);
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
    response: u64,
    call: Option<ToolCall>,
    results: ToolResults,
}

impl PendingResult {
    async fn deliver(mut self, result: String, server_message: Option<Value>) {
        let Some(call) = self.call.take() else {
            return;
        };
        let (pushed, done) = oneshot::channel();
        if self
            .results
            .tx
            .send(Delivery {
                response: self.response,
                call,
                result,
                server_message,
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
                response: self.response,
                call,
                result: TOOL_CANCELLED.to_owned(),
                server_message: None,
                pushed: None,
            });
        }
    }
}

/// A tool's task: aborted with the response (its slot aborts on drop), or
/// left to run on and deliver.
enum Running {
    Cancellable(ChildTask<Executed>),
    Detached(JoinHandle<Executed>),
}

/// A call and what it returned.
pub(crate) struct Executed {
    pub(crate) call: ToolCall,
    pub(crate) result: String,
    pub(crate) ends_call: bool,
}

/// Announces `calls`, runs each in a task of its own with its timeout, and
/// waits for their results (each pushed by the hub before it is returned).
pub(crate) async fn run_tools(
    tools: &[Arc<dyn Tool>],
    tool_timeout: Duration,
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
        let tool = tools
            .iter()
            .find(|t| t.spec().name == assembled.call.name)
            .cloned();
        let cancellable = tool.as_ref().is_none_or(|t| t.cancel_on_interruption());
        let timeout = tool
            .as_ref()
            .and_then(|t| t.timeout())
            .unwrap_or(tool_timeout);
        let pending = PendingResult {
            response: number,
            call: Some(assembled.call.clone()),
            results: results.clone(),
        };
        let work = run_tool(tool, assembled, timeout, pending);
        running.push(if cancellable {
            Running::Cancellable(ChildTask::spawn("a tool call", work))
        } else {
            Running::Detached(tokio::spawn(work))
        });
    }
    let mut executed = Vec::with_capacity(running.len());
    for run in running {
        let joined = match run {
            Running::Cancellable(mut task) => task.finish().await.map_err(|e| e.to_string()),
            Running::Detached(task) => task.await.map(Some).map_err(|e| e.to_string()),
        };
        match joined {
            Ok(Some(done)) => executed.push(done),
            Ok(None) => {}
            Err(error) => tracing::error!(response = number, %error, "a tool task failed"),
        }
    }
    executed
}

async fn run_tool(
    tool: Option<Arc<dyn Tool>>,
    assembled: AssembledCall,
    timeout: Duration,
    pending: PendingResult,
) -> Executed {
    let call = assembled.call;
    // An error and whether it may be logged as it is.
    let outcome = match (tool, assembled.arguments) {
        (None, _) => Err((format!("there is no tool named `{}`", call.name), true)),
        (Some(_), Err(bad)) => {
            // The model is told what it wrote; the logs only why it is refused.
            tracing::warn!(tool = %call.name, reason = %bad.reason, "tool arguments refused");
            Err((bad.told(), false))
        }
        (Some(tool), Ok(arguments)) => {
            match validate_arguments(&tool.spec().parameters, &arguments) {
                Err(bad) => {
                    // The model is told the values; the logs are not.
                    tracing::warn!(tool = %call.name, places = %bad.places, "tool arguments refused by the tool's schema");
                    Err((bad.told, false))
                }
                Ok(()) => {
                    match tokio::time::timeout(timeout, tool.call_with_id(&call.id, arguments))
                        .await
                    {
                        Err(_) => {
                            Err((format!("the tool gave no result within {timeout:?}"), true))
                        }
                        Ok(Err(error)) => Err((error.to_string(), true)),
                        Ok(Ok(outcome)) => Ok(outcome),
                    }
                }
            }
        }
    };
    let (result, ends_call, server_message) = match outcome {
        Ok(outcome) => (outcome.result, outcome.ends_call, outcome.server_message),
        Err((error, loggable)) => {
            if loggable {
                tracing::warn!(tool = %call.name, %error, "tool call failed");
            }
            (json!({ "error": error }).to_string(), false, None)
        }
    };
    pending.deliver(result.clone(), server_message).await;
    Executed {
        call,
        result,
        ends_call,
    }
}
