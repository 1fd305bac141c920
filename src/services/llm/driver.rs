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
//! and `LlmResponseEnd`, which says whether the response failed.
//!
//! With specialist agents (see `router`), the response is first routed:
//! `AgentSelected` follows `LlmResponseStart`, and the chosen agent's
//! prompt, tools and model answer. With reflection (see `reflection`), no
//! text is pushed while the answer is a draft: each draft is reviewed,
//! `AnswerReviewed` says the verdict, and then the answer's text goes out
//! in one piece; a rewrite runs no tool with side effects (see
//! `reflection`).
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
//! is used, and so is a stream that fails before its content (an error
//! event, a reset connection: see `round`), unless its error event refuses
//! the request as it stands (too long a context, an invalid request): that
//! fails at once with the provider's message; a failure after output started
//! is reported (an `Error` frame naming the provider and status) and the
//! response ends there, so nothing is said twice: its `LlmResponseEnd`
//! says `failed`. Nothing after a stream's `[DONE]` is read. A malformed event is
//! reported and skipped; the response goes on and has not failed.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::conversation::{Message, Reflection, Role};
use crate::frame::FrameBody;
use crate::pipeline::ProcessorContext;
use crate::services::task::report;
use crate::services::{Connection, ServiceError};

use super::reflection::{Reviewer, Verdict, answer_unoffered, rewrite_request};
use super::round::Ask;
use super::router::{Agent, RoutedBy, Router};
use super::tool_calls::{AssembledCall, round_id};
use super::tool_runs::{ToolResults, run_tools};
use super::tools::{Tool, ToolSpec};
use super::wire::{ChatRequest, ChatWire, ToolChoice};

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
    /// The specialist agents, when configured.
    pub(crate) router: Option<Router>,
    /// The reviewer of drafts, when reflection is configured.
    pub(crate) reviewer: Option<Reviewer>,
}

/// Who answers a response: the LLM itself, or a specialist agent.
struct Persona<'a> {
    model: &'a str,
    tools: Cow<'a, [Arc<dyn Tool>]>,
    specs: Cow<'a, [ToolSpec]>,
    /// Its tools' specs not offered (a rewrite's tools with side effects):
    /// a call to one is answered without running (see `reflection`).
    withheld: Cow<'a, [ToolSpec]>,
}

impl Persona<'_> {
    /// The same persona offering only its tools without side effects:
    /// what a reflection rewrite may call (see `reflection`).
    fn without_side_effects(&self) -> Persona<'_> {
        let (tools, withheld): (Vec<_>, Vec<_>) = self
            .tools
            .iter()
            .cloned()
            .partition(|t: &Arc<dyn Tool>| t.safe_to_run_early());
        Persona {
            model: self.model,
            specs: Cow::Owned(tools.iter().map(|t| t.spec().clone()).collect()),
            tools: Cow::Owned(tools),
            withheld: Cow::Owned(withheld.iter().map(|t| t.spec().clone()).collect()),
        }
    }
}

impl Persona<'_> {
    /// The tools a request for `messages` lists, and its choice: those
    /// offered; or, when none is but some are withheld and the history
    /// holds tool calls, the withheld ones with `tool_choice: "none"`, as
    /// servers validating the history against the tools (LiteLLM before
    /// Anthropic) refuse a request with tool calls and no tools.
    fn listed(&self, messages: &[Message], choice: ToolChoice) -> (&[ToolSpec], ToolChoice) {
        if self.specs.is_empty()
            && !self.withheld.is_empty()
            && messages.iter().any(|m| !m.tool_calls.is_empty())
        {
            (&self.withheld, ToolChoice::None)
        } else {
            (&self.specs, choice)
        }
    }
}

/// What an answer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drafting {
    /// The answer itself, its text pushed as it streams.
    Spoken,
    /// A draft for the reviewer, nothing pushed.
    Draft,
    /// A draft written again after a rejection: tools the persona does not
    /// offer are answered without running (see `reflection`); the turn's
    /// own messages start at `turn`.
    Rewrite { turn: usize },
}

/// The response in progress: its number, the session's result hub, the
/// processor, and what it has done so far.
struct Progress<'a> {
    number: u64,
    results: &'a ToolResults,
    ctx: &'a ProcessorContext,
    ends_call: bool,
    first_token: Option<Instant>,
    /// For a preemptive reply: becomes true when the user's turn is
    /// confirmed over (see "Preemptive replies").
    confirmed: Option<watch::Receiver<bool>>,
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
        confirmed: Option<watch::Receiver<bool>>,
        results: ToolResults,
        ctx: ProcessorContext,
    ) {
        ctx.push_downstream(FrameBody::LlmResponseStart).await;
        let mut progress = Progress {
            number,
            results: &results,
            ctx: &ctx,
            ends_call: false,
            first_token: Some(Instant::now()),
            confirmed,
        };
        let outcome = self.run(&messages, &mut progress).await;
        let failed = outcome.is_err();
        if let Err(error) = outcome {
            tracing::warn!(provider = self.wire.provider(), error = %error, "LLM response failed");
            report(error.into_processor_error(self.wire.provider()), &ctx).await;
        }
        ctx.push_downstream(FrameBody::LlmResponseEnd { failed })
            .await;
        if progress.ends_call {
            ctx.request_end("end_call").await;
        }
    }

    async fn run(
        &self,
        context: &[Message],
        progress: &mut Progress<'_>,
    ) -> Result<(), ServiceError> {
        let agent = match &self.router {
            Some(router) => Some(self.route(router, context, progress.ctx).await),
            None => None,
        };
        let mut messages = Vec::with_capacity(context.len() + 2);
        let has_system = context.first().is_some_and(|m| m.role == Role::System);
        let prompt = match (&self.system_prompt, agent) {
            (Some(shared), Some(agent)) if !has_system => {
                Some(format!("{shared}\n\n{}", agent.system_prompt))
            }
            (_, Some(agent)) => Some(agent.system_prompt.clone()),
            (Some(shared), None) if !has_system => Some(shared.clone()),
            (_, None) => None,
        };
        match prompt {
            // The context's own system message stays first; the agent's follows.
            Some(prompt) if has_system => {
                messages.push(context[0].clone());
                messages.push(Message::text(Role::System, prompt));
                messages.extend_from_slice(&context[1..]);
            }
            Some(prompt) => {
                messages.push(Message::text(Role::System, prompt));
                messages.extend_from_slice(context);
            }
            None => messages.extend_from_slice(context),
        }
        let persona = match agent {
            None => Persona {
                model: &self.model,
                tools: Cow::Borrowed(&self.tools),
                specs: Cow::Borrowed(&self.specs),
                withheld: Cow::Borrowed(&[]),
            },
            Some(agent) => {
                let tools: Vec<Arc<dyn Tool>> = self
                    .tools
                    .iter()
                    .filter(|t| agent.tools.contains(&t.spec().name))
                    .cloned()
                    .collect();
                Persona {
                    model: agent.model.as_deref().unwrap_or(&self.model),
                    specs: Cow::Owned(tools.iter().map(|t| t.spec().clone()).collect()),
                    tools: Cow::Owned(tools),
                    withheld: Cow::Borrowed(&[]),
                }
            }
        };
        match &self.reviewer {
            None => self
                .answer(&persona, &mut messages, Drafting::Spoken, progress)
                .await
                .map(drop),
            Some(reviewer) => {
                self.reflect(reviewer, &persona, &mut messages, progress)
                    .await
            }
        }
    }

    /// The agent for this response, announced with `AgentSelected`.
    async fn route<'r>(
        &self,
        router: &'r Router,
        context: &[Message],
        ctx: &ProcessorContext,
    ) -> &'r Agent {
        let (index, by) = match router.by_keywords(context) {
            Some(index) => (index, RoutedBy::Keywords),
            None => match &router.classifier {
                None => (router.default_agent(), RoutedBy::Default),
                Some(classifier) => {
                    let request = router.classification(context);
                    match self
                        .ask_side(classifier, &request, &router.response_format, ctx)
                        .await
                    {
                        Ok(answer) => match router.named_in(&answer) {
                            Some(index) => (index, RoutedBy::Llm),
                            None => {
                                tracing::info!(
                                    answer = %answer.chars().take(200).collect::<String>(),
                                    "the router named no agent; the default agent answers"
                                );
                                (router.default_agent(), RoutedBy::Default)
                            }
                        },
                        Err(error) => {
                            tracing::warn!(%error, "the router could not be asked; the default agent answers");
                            (router.default_agent(), RoutedBy::Default)
                        }
                    }
                }
            },
        };
        let agent = &router.agents[index];
        tracing::debug!(agent = %agent.name, by = by.as_str(), "agent selected");
        ctx.push_downstream(FrameBody::AgentSelected {
            agent: Arc::clone(&agent.name),
            by: by.as_str(),
        })
        .await;
        agent
    }

    /// Drafts, reviews and drafts again (see `reflection`); then pushes the
    /// verdict and the answer.
    async fn reflect(
        &self,
        reviewer: &Reviewer,
        persona: &Persona<'_>,
        messages: &mut Vec<Message>,
        progress: &mut Progress<'_>,
    ) -> Result<(), ServiceError> {
        let mut rounds = 0;
        // The last rejected draft: it goes out (unapproved) if its rewrite
        // fails or comes back empty, rather than nothing.
        let mut rejected: Option<String> = None;
        // Where the rejected drafts sit in `messages`: never shown to the
        // reviewer as things said to the user.
        let mut hidden = Vec::new();
        // The tools already run this turn are recorded from here on.
        let turn = messages.len();
        let rewriter = persona.without_side_effects();
        let (draft, approved) = loop {
            let (drafter, drafting) = match rejected {
                None => (persona, Drafting::Draft),
                Some(_) => (&rewriter, Drafting::Rewrite { turn }),
            };
            let draft = match self.answer(drafter, messages, drafting, progress).await {
                Ok(draft) => draft,
                Err(error) => match rejected.take() {
                    Some(kept) => {
                        tracing::warn!(%error, "the rewrite failed; the rejected draft goes out unapproved");
                        break (kept, false);
                    }
                    None => return Err(error),
                },
            };
            if draft.trim().is_empty() {
                match rejected.take() {
                    Some(kept) => {
                        tracing::warn!(
                            "the rewrite is empty; the rejected draft goes out unapproved"
                        );
                        break (kept, false);
                    }
                    // Nothing to say, nothing to review (e.g. only tools called).
                    None => return Ok(()),
                }
            }
            rounds += 1;
            let request = reviewer.review(messages, &hidden, &draft);
            let verdict = match self
                .ask_side(
                    &reviewer.model,
                    &request,
                    &reviewer.response_format,
                    progress.ctx,
                )
                .await
            {
                Ok(answer) => Reviewer::verdict(&answer).unwrap_or_else(|| {
                    tracing::warn!(
                        "the reviewer's answer is not a verdict; the draft goes out unapproved"
                    );
                    Verdict::Rejected(String::new())
                }),
                Err(error) => {
                    tracing::warn!(%error, "the reviewer could not be asked; the draft goes out unapproved");
                    Verdict::Rejected(String::new())
                }
            };
            match verdict {
                Verdict::Approved => break (draft, true),
                Verdict::Rejected(critique)
                    if !critique.is_empty() && rounds < reviewer.max_rounds =>
                {
                    tracing::debug!(round = rounds, %critique, "draft rejected");
                    hidden.push(messages.len());
                    messages.extend(rewrite_request(&draft, &critique));
                    rejected = Some(draft);
                }
                Verdict::Rejected(_) => break (draft, false),
            }
        };
        let ctx = progress.ctx;
        ctx.push_downstream(FrameBody::AnswerReviewed(Reflection { rounds, approved }))
            .await;
        ctx.push_downstream(FrameBody::LlmText(draft)).await;
        Ok(())
    }

    /// One answer of `persona`, tool rounds included; its text is pushed as
    /// it streams when spoken, and returned.
    async fn answer(
        &self,
        persona: &Persona<'_>,
        messages: &mut Vec<Message>,
        drafting: Drafting,
        progress: &mut Progress<'_>,
    ) -> Result<String, ServiceError> {
        let speak = drafting == Drafting::Spoken;
        let ctx = progress.ctx;
        let mut said = String::new();
        for round in 0..=self.max_tool_rounds {
            let last = round == self.max_tool_rounds || progress.ends_call;
            let choice = if last {
                ToolChoice::None
            } else {
                ToolChoice::Auto
            };
            let id = round_id(progress.number, round);
            let (tools, choice) = persona.listed(messages, choice);
            let ask = Ask {
                wire: &*self.wire,
                request: ChatRequest {
                    model: persona.model,
                    temperature: self.temperature,
                    max_tokens: self.max_tokens,
                    tools,
                    tool_choice: choice,
                    response_format: None,
                },
                speak,
            };
            let streamed = ask
                .stream(
                    &self.connection,
                    &id,
                    messages,
                    ctx,
                    &mut progress.first_token,
                )
                .await?;
            let text = streamed.text.trim();
            if !text.is_empty() {
                if !said.is_empty() {
                    said.push(' ');
                }
                said.push_str(text);
            }
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
            let (calls, answered) = match drafting {
                Drafting::Rewrite { turn } => answer_unoffered(
                    &persona.specs,
                    &persona.withheld,
                    streamed.calls,
                    &messages[turn..],
                ),
                _ => (streamed.calls, Vec::new()),
            };
            if let Some(confirmation) = progress.confirmed.as_mut()
                && !self.all_safe_to_run_early(&calls)
            {
                tracing::debug!("a preemptive reply's tools wait for the end of the turn");
                if confirmation.wait_for(|confirmed| *confirmed).await.is_err() {
                    // Superseded without a confirmation: never run, and
                    // nothing more to say.
                    return Ok(String::new());
                }
            }
            let executed = run_tools(
                &persona.tools,
                self.tool_timeout,
                progress.number,
                calls,
                progress.results,
                ctx,
            )
            .await;
            messages.push(Message::tool_calls(
                (!text.is_empty()).then(|| text.to_owned()),
                executed
                    .iter()
                    .map(|e| e.call.clone())
                    .chain(answered.iter().map(|(call, _)| call.clone()))
                    .collect(),
            ));
            for e in &executed {
                messages.push(Message::tool_result(e.call.id.clone(), e.result.clone()));
            }
            for (call, result) in answered {
                messages.push(Message::tool_result(call.id, result));
            }
            if executed.iter().any(|e| e.ends_call) {
                progress.ends_call = true;
                if !text.is_empty() {
                    // The goodbye was said with the call.
                    break;
                }
            }
        }
        Ok(said)
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
}
