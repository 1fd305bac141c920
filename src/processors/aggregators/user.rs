//! `user_context`: collects what the user says into user turns and hands
//! each complete turn to the LLM.
//!
//! Final transcriptions are gathered per turn (see [`UserTurnTracker`] for
//! when a turn is complete); a complete turn is appended to the shared
//! conversation as a user message, announced with a `TurnCompleted` frame,
//! and handed downstream as `LlmMessages` carrying the whole context. The
//! transcription frames themselves stop here: the turn replaces them. At
//! the session's end, or its cancellation, what was heard still becomes a
//! turn (and is recorded); a cancelled session asks for no reply.
//!
//! It also opens the conversation when the pipeline says the bot speaks
//! first (`[pipeline] first_message` or `llm_opens`): on `ClientConnected`,
//! once per session, it sends the first message down as `Text` (the TTS
//! speaks it, `assistant_context` records what was heard of it as an
//! assistant turn), or hands the LLM the context as it stands, so the LLM
//! writes the first words before the user has said anything.
//!
//! When the user starts speaking while the bot is answering (speaking, or a
//! reply still due) and the session allows interruptions, this processor
//! asks the pipeline for an interruption, so that the reply in flight is
//! cancelled and its audio cut.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::config::{Opening, Seconds};
use crate::frame::{Direction, Frame, FrameBody, StartFrame};
use crate::pipeline::ProcessorFactory;
use crate::pipeline::{BuildError, SessionSetup};
use crate::pipeline::{Processor, ProcessorContext, ProcessorError};

use super::user_turn::UserTurnTracker;
use crate::conversation::{Message, Role, SharedConversation, Turn};

/// `[[processor]] type = "user_context"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserContextConfig {
    /// The conversation shared with the `assistant_context` of the same
    /// name. Default `"default"`.
    pub context: String,
    /// How long to wait, after the user stops, for an interim transcript to
    /// become final before using it as it is, in seconds (0 to 30).
    /// Default 1.
    pub transcript_timeout_secs: Seconds<0, 30>,
    /// Ask for an interruption when the user starts speaking again while
    /// a reply is on its way but not yet heard (if the pipeline allows
    /// interruptions), so a stale reply is dropped. Speech over a bot that
    /// is already speaking is the `vad` processor's call, with its
    /// `[interruption] min_secs` guard, so one barge-in is one interruption.
    /// Default true.
    pub interrupt_bot: bool,
}

impl Default for UserContextConfig {
    fn default() -> Self {
        UserContextConfig {
            context: default_context_name(),
            transcript_timeout_secs: Seconds::from_millis(1_000),
            interrupt_bot: true,
        }
    }
}

pub(crate) fn default_context_name() -> String {
    "default".to_owned()
}

impl ProcessorFactory for UserContextConfig {
    fn build(&self, setup: &SessionSetup) -> Result<Box<dyn Processor>, BuildError> {
        let conversation = setup
            .resources
            .get_or_insert_with(&self.context, SharedConversation::default);
        Ok(Box::new(
            UserContextAggregator::new(
                SharedConversation::clone(&conversation),
                self.transcript_timeout_secs.duration(),
                self.interrupt_bot,
            )
            .with_opening(setup.opening.clone()),
        ))
    }

    fn conversation_name(&self) -> Option<&str> {
        Some(&self.context)
    }
}

/// Turns transcriptions into user turns. See the module docs.
pub struct UserContextAggregator {
    conversation: SharedConversation,
    tracker: UserTurnTracker,
    interrupt_bot: bool,
    allow_interruptions: bool,
    bot_speaking: bool,
    /// How the bot opens the conversation; taken when it does.
    opening: Option<Opening>,
}

impl UserContextAggregator {
    /// An aggregator appending to `conversation`, waiting up to
    /// `transcript_timeout` for interims to finalise.
    pub fn new(
        conversation: SharedConversation,
        transcript_timeout: Duration,
        interrupt_bot: bool,
    ) -> Self {
        UserContextAggregator {
            conversation,
            tracker: UserTurnTracker::new(transcript_timeout),
            interrupt_bot,
            allow_interruptions: true,
            bot_speaking: false,
            opening: None,
        }
    }

    /// The aggregator opens the conversation with `opening` when the
    /// client connects.
    pub fn with_opening(mut self, opening: Option<Opening>) -> Self {
        self.opening = opening;
        self
    }

    /// Opens the conversation, once: the first message to the TTS, or the
    /// context to the LLM.
    async fn open(&mut self, ctx: &ProcessorContext) {
        match self.opening.take() {
            None => {}
            Some(Opening::Message(text)) => {
                tracing::debug!("the bot opens the conversation");
                ctx.push_downstream(FrameBody::Text(text.to_string())).await;
            }
            Some(Opening::Llm) => {
                tracing::debug!("the LLM opens the conversation");
                let messages = {
                    let mut conversation = self.conversation.lock();
                    conversation.set_awaiting_reply(true);
                    conversation.context.snapshot()
                };
                ctx.push_downstream(FrameBody::LlmMessages(messages)).await;
            }
        }
    }

    /// Completes a turn and asks the LLM for the reply.
    async fn hand(&self, text: Option<String>, ctx: &ProcessorContext) {
        if let Some(messages) = self.complete(text, ctx).await {
            ctx.push_downstream(FrameBody::LlmMessages(messages)).await;
        }
    }

    /// Appends the turn to the conversation and announces it (which is what
    /// records it); returns the context for the LLM.
    async fn complete(
        &self,
        text: Option<String>,
        ctx: &ProcessorContext,
    ) -> Option<Arc<Vec<Message>>> {
        let text = text?;
        let (messages, turn) = {
            let mut conversation = self.conversation.lock();
            conversation
                .context
                .push(Message::text(Role::User, text.clone()));
            let index = conversation.take_turn_index();
            conversation.set_awaiting_reply(true);
            (
                conversation.context.snapshot(),
                Turn::completed(index, Role::User, text, ctx.now()),
            )
        };
        tracing::debug!(turn = turn.index, text = %turn.text, "user turn");
        ctx.push_downstream(FrameBody::TurnCompleted(Arc::new(turn)))
            .await;
        Some(messages)
    }

    /// A reply is coming that the user has not started hearing.
    fn reply_pending(&self) -> bool {
        !self.bot_speaking && self.conversation.lock().awaiting_reply()
    }
}

#[async_trait]
impl Processor for UserContextAggregator {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        let now = ctx.now();
        match &frame.body {
            FrameBody::Transcription(t) => {
                let turn = self.tracker.final_transcript(&t.text);
                self.hand(turn, ctx).await;
                return Ok(());
            }
            FrameBody::InterimTranscription(t) => {
                self.tracker.interim_transcript(&t.text);
                return Ok(());
            }
            FrameBody::UserStartedSpeaking { .. } => {
                if self.interrupt_bot && self.allow_interruptions && self.reply_pending() {
                    ctx.request_interruption().await;
                }
                self.tracker.user_started();
            }
            FrameBody::UserStoppedSpeaking { .. } => {
                let turn = self.tracker.user_stopped(now);
                self.hand(turn, ctx).await;
            }
            FrameBody::BotStartedSpeaking => self.bot_speaking = true,
            FrameBody::BotStoppedSpeaking => self.bot_speaking = false,
            FrameBody::ClientConnected => {
                ctx.push(frame, direction).await;
                self.open(ctx).await;
                return Ok(());
            }
            _ => {}
        }
        ctx.push(frame, direction).await;
        // The wait for a late transcript runs on the session clock and is
        // checked as frames pass: inbound audio comes every 20 ms.
        let turn = self.tracker.poll(now);
        self.hand(turn, ctx).await;
        Ok(())
    }

    async fn on_start(
        &mut self,
        start: &StartFrame,
        _ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        self.allow_interruptions = start.allow_interruptions;
        Ok(())
    }

    async fn on_end(&mut self, ctx: &ProcessorContext) -> Result<(), ProcessorError> {
        let turn = self.tracker.finish();
        self.hand(turn, ctx).await;
        Ok(())
    }

    async fn on_cancel(&mut self, ctx: &ProcessorContext) {
        // What the user said still belongs to the transcript (as the
        // assistant's cut answer does); no reply is asked for.
        let turn = self.tracker.finish();
        self.complete(turn, ctx).await;
    }
}
