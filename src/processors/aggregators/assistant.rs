//! `assistant_context`: records what the bot actually said into the shared
//! conversation.
//!
//! It sits after the TTS, just before the output transport, so it sees the
//! spoken text and audio on their way out and the output's reports coming
//! back (`BotStoppedSpeaking`, `BotInterrupted`). What it records follows
//! the OpenAI message format: a tool call is written as an assistant message
//! with `tool_calls` followed by a tool message per call (saying
//! `IN_PROGRESS` until the result comes, so the context stays valid if the
//! user speaks first); the words the user heard are written as an assistant
//! message when the turn completes (see [`AssistantTurnTracker`]). Each
//! completed turn, and each tool result, is announced with a
//! `TurnCompleted` frame. Every frame is forwarded.
//!
//! A preemptive reply (prepared before the user's turn was confirmed over)
//! is held here, unrecorded and unplayed, until `PreemptiveReplyConfirmed`
//! releases it or an interruption discards it (see [`PreemptiveHold`]).
//!
//! With `false_interruption_timeout_secs`, a barge-in that carried no words
//! resumes the bot (see [`FalseInterruption`]): what the user did not hear,
//! from the interrupted sentence on, goes back up to the TTS as `Text` and
//! is recorded as a turn of its own when heard; the interrupted turn keeps
//! only the words heard.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::frame::{Direction, Frame, FrameBody};
use crate::pipeline::ProcessorFactory;
use crate::pipeline::{BuildError, SessionSetup};
use crate::pipeline::{Processor, ProcessorContext, ProcessorError};

use super::assistant_turn::{AssistantTurnTracker, CompletedTurn};
use super::false_interruption::FalseInterruption;
use super::preemptive_hold::PreemptiveHold;
use super::user::default_context_name;
use crate::config::Seconds;
use crate::conversation::{Message, Role, SharedConversation, Turn};

/// `[[processor]] type = "assistant_context"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssistantContextConfig {
    /// The conversation shared with the `user_context` of the same name.
    /// Default `"default"`.
    #[serde(default = "default_context_name")]
    pub context: String,
    /// After a barge-in, how long to wait, once the user's sound stops, for
    /// words before resuming the bot's interrupted sentence, in seconds
    /// (0 to 30). Default: never resume.
    #[serde(default)]
    pub false_interruption_timeout_secs: Option<Seconds<0, 30>>,
}

impl ProcessorFactory for AssistantContextConfig {
    fn build(&self, setup: &SessionSetup) -> Result<Box<dyn Processor>, BuildError> {
        let conversation = setup
            .resources
            .get_or_insert_with(&self.context, SharedConversation::default);
        let mut aggregator =
            AssistantContextAggregator::new(SharedConversation::clone(&conversation));
        if let Some(timeout) = self.false_interruption_timeout_secs {
            aggregator = aggregator.with_false_interruption(timeout.duration());
        }
        Ok(Box::new(aggregator))
    }
}

/// Records the bot's turns. See the module docs.
pub struct AssistantContextAggregator {
    conversation: SharedConversation,
    tracker: AssistantTurnTracker,
    hold: PreemptiveHold,
    false_interruption: Option<FalseInterruption>,
}

impl AssistantContextAggregator {
    /// An aggregator recording into `conversation`.
    pub fn new(conversation: SharedConversation) -> Self {
        AssistantContextAggregator {
            conversation,
            tracker: AssistantTurnTracker::new(),
            hold: PreemptiveHold::default(),
            false_interruption: None,
        }
    }

    /// A barge-in with no words `timeout` after the user's sound stopped
    /// resumes the bot.
    pub fn with_false_interruption(mut self, timeout: Duration) -> Self {
        self.false_interruption = Some(FalseInterruption::new(timeout));
        self
    }

    /// Follows the user's speech for the false-interruption watch; resumes
    /// the bot when it says so.
    async fn watch_false_interruption(&mut self, body: &FrameBody, ctx: &ProcessorContext) {
        let Some(watch) = &mut self.false_interruption else {
            return;
        };
        match body {
            FrameBody::UserStartedSpeaking { .. } => watch.user_started(),
            FrameBody::UserStoppedSpeaking { end } => watch.user_stopped(*end),
            FrameBody::TurnCompleted(turn) if turn.role == Role::User => watch.words(),
            FrameBody::LlmResponseStart | FrameBody::PreemptiveLlmMessages(_) => watch.words(),
            FrameBody::BotInterrupted { cut, .. } => {
                watch.interrupted(self.tracker.unheard(*cut));
            }
            _ => {}
        }
        if let Some(unheard) = watch.poll(ctx.now()) {
            tracing::debug!("a barge-in without words: the bot resumes");
            ctx.push_upstream(FrameBody::Text(unheard)).await;
        }
    }

    async fn complete(&self, completed: Option<CompletedTurn>, ctx: &ProcessorContext) {
        let Some(completed) = completed else {
            return;
        };
        let turn = {
            let mut conversation = self.conversation.lock();
            conversation.set_awaiting_reply(false);
            if completed.text.is_empty() && completed.tool_calls.is_empty() {
                return;
            }
            if !completed.text.is_empty() {
                conversation
                    .context
                    .push(Message::text(Role::Assistant, completed.text.clone()));
            }
            let mut turn = Turn::completed(
                conversation.take_turn_index(),
                Role::Assistant,
                completed.text,
                ctx.now(),
            );
            turn.interrupted = completed.interrupted;
            turn.tool_calls = completed.tool_calls;
            turn.agent = completed.agent;
            turn.reflection = completed.reflection;
            turn
        };
        tracing::debug!(
            turn = turn.index,
            interrupted = turn.interrupted,
            text = %turn.text,
            "assistant turn"
        );
        ctx.push_downstream(FrameBody::TurnCompleted(Arc::new(turn)))
            .await;
    }
}

/// The reasons a transport gives when the session ends because the far
/// end went away or can no longer hear (see the transports' `request_end`).
const FAR_END_GONE: [&str; 8] = [
    "hangup",
    "disconnected",
    "peer_failed",
    "idle_timeout",
    "socket_error",
    "message_too_large",
    "protocol_error",
    "disconnect_bot",
];

/// When the far end went away, if it has: the session time its transport
/// asked for the end at. Nothing played after it was heard.
fn far_end_gone_at(ctx: &ProcessorContext) -> Option<Duration> {
    let (reason, at) = ctx.end_requested()?;
    FAR_END_GONE
        .contains(&reason.as_str())
        .then(|| at.min(ctx.now()))
}

#[async_trait]
impl Processor for AssistantContextAggregator {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        self.watch_false_interruption(&frame.body, ctx).await;
        match &frame.body {
            FrameBody::PreemptiveLlmMessages(_) => self.hold.start(),
            FrameBody::PreemptiveReplyConfirmed => {
                for held in self.hold.release() {
                    self.record(held, Direction::Downstream, ctx).await;
                }
            }
            _ => {}
        }
        if let Some(frame) = self.hold.pass(frame, direction) {
            self.record(frame, direction, ctx).await;
        }
        Ok(())
    }

    async fn on_interruption(&mut self, _ctx: &ProcessorContext) {
        self.hold.discard();
        self.tracker.interrupted();
    }

    async fn on_end(&mut self, ctx: &ProcessorContext) -> Result<(), ProcessorError> {
        // A reply still held was never confirmed (`user_context` confirms
        // before the end, or discards): it is never played or recorded.
        if self.hold.discard() > 0 {
            tracing::debug!("an unconfirmed preemptive reply dropped at the session's end");
        }
        // The output plays out what is queued, but not to a far end that
        // is gone: then only what played was heard.
        let completed = match far_end_gone_at(ctx) {
            Some(at) => self.tracker.far_end_gone(at),
            None => self.tracker.finish(),
        };
        self.complete(completed, ctx).await;
        Ok(())
    }

    async fn on_cancel(&mut self, ctx: &ProcessorContext) {
        // Cancelled: nothing queued plays any more.
        let completed = self.tracker.far_end_gone(ctx.now());
        self.complete(completed, ctx).await;
    }
}

impl AssistantContextAggregator {
    /// Records what `frame` says of the bot's turn and forwards it.
    async fn record(&mut self, frame: Frame, direction: Direction, ctx: &ProcessorContext) {
        // Read only for the frames it decides (the outcome's lock is not
        // taken for every audio frame that passes).
        let gone_at = match &frame.body {
            FrameBody::LlmResponseStart
            | FrameBody::BotStartedSpeaking
            | FrameBody::BotStoppedSpeaking => far_end_gone_at(ctx),
            _ => None,
        };
        let completed = match &frame.body {
            // The far end is gone: the open turn was heard up to then, and
            // what plays or starts after it is heard by no one.
            FrameBody::LlmResponseStart | FrameBody::BotStoppedSpeaking
                if let Some(at) = gone_at =>
            {
                self.tracker.far_end_gone(at)
            }
            FrameBody::BotStartedSpeaking if gone_at.is_some() => None,
            FrameBody::LlmResponseStart => self.tracker.response_started(ctx.now()),
            FrameBody::LlmResponseEnd { .. } => self.tracker.response_ended(),
            FrameBody::TtsStarted => {
                self.tracker.tts_started(ctx.now());
                None
            }
            FrameBody::TtsStopped => self.tracker.tts_stopped(),
            FrameBody::LlmText(text) => {
                self.tracker.llm_text(text);
                None
            }
            FrameBody::AgentSelected { agent, .. } => {
                self.tracker.agent_selected(agent);
                None
            }
            FrameBody::AnswerReviewed(reflection) => {
                self.tracker.reviewed(*reflection);
                None
            }
            FrameBody::TtsText(spoken) => {
                self.tracker.spoken(spoken.clone());
                None
            }
            FrameBody::OutputAudio(audio) if direction == Direction::Downstream => {
                self.tracker.audio(audio.duration());
                None
            }
            FrameBody::FunctionCallInProgress(call) => {
                self.conversation.lock().context.add_tool_call(call.clone());
                self.tracker.tool_call(call.clone());
                None
            }
            FrameBody::FunctionCallResult { call, result } => {
                let turn = {
                    let mut conversation = self.conversation.lock();
                    if !conversation
                        .context
                        .set_tool_result(&call.id, result.clone())
                    {
                        // A result for a call recorded nowhere still belongs
                        // to the context, after its call.
                        conversation.context.add_tool_call(call.clone());
                        conversation
                            .context
                            .set_tool_result(&call.id, result.clone());
                    }
                    let mut turn = Turn::completed(
                        conversation.take_turn_index(),
                        Role::Tool,
                        result.clone(),
                        ctx.now(),
                    );
                    turn.tool_calls = vec![call.clone()];
                    turn
                };
                ctx.push_downstream(FrameBody::TurnCompleted(Arc::new(turn)))
                    .await;
                None
            }
            FrameBody::BotStartedSpeaking => {
                self.tracker.bot_started_speaking(ctx.now());
                None
            }
            FrameBody::BotStoppedSpeaking => self.tracker.bot_stopped_speaking(ctx.now()),
            FrameBody::BotInterrupted { cut, .. } => self.tracker.bot_interrupted(*cut),
            _ => None,
        };
        ctx.push(frame, direction).await;
        self.complete(completed, ctx).await;
    }
}
