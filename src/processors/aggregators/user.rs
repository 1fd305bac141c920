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
//! # When the turn ends
//!
//! Without `[processor.turn_end]` (or `preemptive_replies`, or a
//! `turn_analyzer`), the VAD's stop ends the turn, as above. With it, the
//! VAD's stop (set short, e.g. `stop_secs = 0.2`) only says the user went
//! quiet: the decision ([`TurnEnd`]) weighs the silence so far, the
//! transcript (does it end mid-phrase?) and the learned model's
//! probability ([`TurnAnalyzer`], run on the turn's audio at each stop) and
//! the turn ends when it says so, checked at every frame (inbound audio
//! comes every 20 ms). If the user speaks again first, the words heard so
//! far open the turn that continues.
//!
//! With `preemptive_replies`, once the decision allows it the context with
//! the turn so far goes to the LLM as `PreemptiveLlmMessages`, recorded
//! nowhere: the LLM and the TTS work on it while `assistant_context` holds
//! all they produce. The turn so far is its finals, or, while a streaming
//! STT has not finalised the last words yet, the finals and its latest
//! interim: the reply starts before the final comes, and stands if the
//! final has the same words (case and punctuation aside). When the turn
//! ends with the same words, the turn is recorded (as the finals say it)
//! and `PreemptiveReplyConfirmed` releases the prepared reply at once; when
//! the user resumes (or the words change), the reply is discarded: an
//! interruption cancels its work and drops what was held, and
//! `PreemptiveReplyDiscarded` says so. Since the discard is an
//! interruption, replies are prepared only in sessions that allow them.
//! When the input ends during the decision, the turn ends with the words
//! it has: a reply prepared for them is confirmed; one prepared for other
//! words is discarded (no interruption can pass any more, so the turn is
//! recorded but not asked again: its answer would be held with the stale
//! one, and `assistant_context` drops what it holds at the end).
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

use super::turn_analyzer::{TurnAnalyzer, TurnAnalyzerKind, end_of_turn_model};
use super::turn_end_config::TurnEndConfig;
use super::turn_ending::{TurnEnding, same_words};
use super::user_turn::UserTurnTracker;
use crate::conversation::{Message, Role, SharedConversation, Turn};
use crate::vad::{TurnDecision, TurnEnd, TurnEndParams};

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
    /// The learned end-of-turn model weighed in the turn-end decision:
    /// `"none"` (the default).
    pub turn_analyzer: TurnAnalyzerKind,
    /// Prepare the reply while the turn's end is being decided, so it plays
    /// the moment the turn ends (see the module docs). Default false.
    pub preemptive_replies: bool,
    /// `[processor.turn_end]`: the turn-end decision's parameters. Without
    /// it (and without `preemptive_replies` or a `turn_analyzer`) the VAD's
    /// stop ends the turn.
    pub turn_end: Option<TurnEndConfig>,
}

impl Default for UserContextConfig {
    fn default() -> Self {
        UserContextConfig {
            context: default_context_name(),
            transcript_timeout_secs: Seconds::from_millis(1_000),
            interrupt_bot: true,
            turn_analyzer: TurnAnalyzerKind::default(),
            preemptive_replies: false,
            turn_end: None,
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
        let mut aggregator = UserContextAggregator::new(
            SharedConversation::clone(&conversation),
            self.transcript_timeout_secs.duration(),
            self.interrupt_bot,
        )
        .with_opening(setup.opening.clone());
        let model = end_of_turn_model(self.turn_analyzer)?;
        if self.turn_end.is_some() || self.preemptive_replies || model.is_some() {
            let params = self.turn_end.clone().unwrap_or_default().params()?;
            aggregator = aggregator.with_turn_end(params, model, self.preemptive_replies);
        }
        Ok(Box::new(aggregator))
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
    /// The turn-end decision, when the pipeline has one.
    ending: Option<TurnEnding>,
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
            ending: None,
        }
    }

    /// The turn ends when `params` decide, weighing `model` if given; with
    /// `preemptive`, replies are prepared while it is decided.
    pub fn with_turn_end(
        mut self,
        params: TurnEndParams,
        model: Option<Box<dyn crate::vad::EndOfTurnModel>>,
        preemptive: bool,
    ) -> Self {
        self.ending = Some(TurnEnding {
            decision: TurnEnd::new(params, model.is_some()),
            analyzer: model.map(TurnAnalyzer::new),
            preemptive,
            pending: None,
            prepared: None,
            interrupting: false,
            unfinalised_since: None,
        });
        self
    }

    /// The tracker handed `text` as the turn so far: handed on, or kept
    /// for the decision.
    async fn take(&mut self, text: Option<String>, ctx: &ProcessorContext) {
        let Some(text) = text else {
            return;
        };
        let saw_vad = self.tracker.saw_vad();
        let speaking = self.tracker.is_speaking();
        let Some(ending) = self.ending.as_mut().filter(|_| saw_vad) else {
            self.hand(Some(text), ctx).await;
            return;
        };
        let text = match ending.pending.take() {
            Some(before) => format!("{before} {text}"),
            None => text,
        };
        if !speaking && !ending.decision.in_pause() {
            // Words come after the turn ended (a late final): nothing is
            // left to decide, they are answered at once.
            ending.decision.reset();
            self.hand(Some(text), ctx).await;
            return;
        }
        if ending.set_pending(text) {
            // The reply prepared for other words goes.
            self.discard(ctx).await;
        }
    }

    /// Throws the prepared reply away: an interruption cancels its work.
    async fn discard(&mut self, ctx: &ProcessorContext) {
        let Some(ending) = self.ending.as_mut().filter(|e| e.prepared.is_some()) else {
            return;
        };
        ending.prepared = None;
        ending.interrupting = true;
        tracing::debug!("preemptive reply discarded");
        ctx.push_downstream(FrameBody::PreemptiveReplyDiscarded)
            .await;
        ctx.request_interruption().await;
    }

    /// The user speaks again before the turn ended: it goes on.
    async fn resume(&mut self, ctx: &ProcessorContext) {
        let Some(ending) = self.ending.as_mut() else {
            return;
        };
        ending.decision.user_spoke();
        ending.unfinalised_since = None;
        if let Some(text) = ending.pending.take() {
            self.tracker.resume_with(text);
        }
        self.discard(ctx).await;
    }

    /// Acts on the decision at `now`: ends the turn, or prepares its reply.
    async fn decide(&mut self, now: Duration, ctx: &ProcessorContext) {
        let allow_interruptions = self.allow_interruptions;
        let Some(ending) = self.ending.as_mut() else {
            return;
        };
        if let Some(probability) = ending.analyzer.as_mut().and_then(TurnAnalyzer::poll) {
            ending.decision.model_says(probability);
        }
        if ending.interrupting {
            return;
        }
        // Without the finals, the words so far (an interim among them) may
        // prepare a reply, never end the turn: what is recorded is final.
        let provisional = match &ending.pending {
            Some(_) => None,
            None if ending.preemptive && allow_interruptions && ending.prepared.is_none() => {
                let Some(words) = self.tracker.words_so_far() else {
                    return;
                };
                ending.decision.transcript(&words);
                Some(words)
            }
            None => return,
        };
        let mut decision = ending.decision.decide(now);
        if !self.tracker.has_interim() {
            ending.unfinalised_since = None;
        }
        if decision == TurnDecision::End
            && let Some(since) = ending.unfinalised_since
        {
            if now < since + self.tracker.timeout() {
                decision = TurnDecision::Prepare;
            } else if let Some(words) = self.tracker.take_interim() {
                // The final never came: the interim stands in for it.
                ending.unfinalised_since = None;
                let pending = ending.pending.take().unwrap_or_default();
                if ending.set_pending(format!("{pending} {words}")) {
                    // The reply prepared without those words goes; the
                    // turn ends once the discard has passed.
                    self.discard(ctx).await;
                    return;
                }
            }
        }
        match (decision, provisional) {
            (TurnDecision::Wait, _) => {}
            (TurnDecision::End, None) => self.end_turn(ctx).await,
            (TurnDecision::Prepare, None) => {
                let words = ending.pending.clone().unwrap_or_default();
                self.prepare(words, allow_interruptions, ctx).await;
            }
            (TurnDecision::Prepare | TurnDecision::End, Some(words)) => {
                self.prepare(words, allow_interruptions, ctx).await;
            }
        }
    }

    /// Sends the context with `words` as the user's turn to the LLM as a
    /// preemptive reply, once per pause.
    async fn prepare(&mut self, words: String, allow_interruptions: bool, ctx: &ProcessorContext) {
        let Some(ending) = self.ending.as_mut() else {
            return;
        };
        if !ending.preemptive || !allow_interruptions || ending.prepared.is_some() {
            return;
        }
        let mut messages = self.conversation.lock().context.snapshot().to_vec();
        messages.push(Message::text(Role::User, words.clone()));
        ending.prepared = Some(words);
        tracing::debug!("preparing a preemptive reply");
        ctx.push_downstream(FrameBody::PreemptiveLlmMessages(Arc::new(messages)))
            .await;
    }

    /// The turn is over: recorded, and answered (its prepared reply
    /// released, or the LLM asked).
    async fn end_turn(&mut self, ctx: &ProcessorContext) {
        let Some(ending) = self.ending.as_mut() else {
            return;
        };
        let text = ending.pending.take();
        let prepared = ending.prepared.take().is_some();
        ending.unfinalised_since = None;
        ending.decision.reset();
        if let Some(analyzer) = &mut ending.analyzer {
            analyzer.clear();
        }
        if prepared {
            self.complete(text, ctx).await;
            ctx.push_downstream(FrameBody::PreemptiveReplyConfirmed)
                .await;
        } else {
            self.hand(text, ctx).await;
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
                self.take(turn, ctx).await;
                self.decide(now, ctx).await;
                return Ok(());
            }
            FrameBody::InterimTranscription(t) => {
                // It may come after the stop, and be the words to prepare.
                self.tracker.interim_transcript(&t.text);
                if let Some(ending) = &mut self.ending
                    && ending.pending.is_some()
                    && self.tracker.has_interim()
                {
                    ending.unfinalised_since.get_or_insert(now);
                }
                self.decide(now, ctx).await;
                return Ok(());
            }
            FrameBody::UserStartedSpeaking { start } => {
                if self.interrupt_bot && self.allow_interruptions && self.reply_pending() {
                    ctx.request_interruption().await;
                }
                let no_words_yet = !self.tracker.has_words()
                    && self.ending.as_ref().is_none_or(|e| e.pending.is_none());
                if let Some(analyzer) = self.ending.as_mut().and_then(|e| e.analyzer.as_mut()) {
                    analyzer.speech_started(now, *start, no_words_yet);
                }
                self.tracker.user_started();
                self.resume(ctx).await;
            }
            FrameBody::UserStoppedSpeaking { end } => {
                if let Some(ending) = &mut self.ending {
                    ending.decision.user_quiet(*end);
                    if let Some(analyzer) = &mut ending.analyzer {
                        analyzer.analyse();
                    }
                }
                let turn = self.tracker.user_stopped(now);
                self.take(turn, ctx).await;
            }
            FrameBody::InputAudio(audio) => {
                if let Some(analyzer) = self.ending.as_mut().and_then(|e| e.analyzer.as_mut()) {
                    analyzer.hear(audio);
                }
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
        self.take(turn, ctx).await;
        self.decide(now, ctx).await;
        Ok(())
    }

    async fn on_interruption(&mut self, ctx: &ProcessorContext) {
        let mut cancelled = false;
        if let Some(ending) = &mut self.ending {
            ending.interrupting = false;
            // Whatever interrupted (the discard, typed text, a second
            // request), it cancels a reply prepared before it passed here:
            // the turn's end must ask again, not confirm a reply that is
            // gone and leave the turn unanswered.
            cancelled = ending.prepared.take().is_some();
        }
        if cancelled {
            tracing::debug!("an interruption cancelled the prepared reply");
            // Said, as a discard is, for events, metrics and clients.
            ctx.push_downstream(FrameBody::PreemptiveReplyDiscarded)
                .await;
        }
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
        let Some(ending) = self
            .ending
            .as_mut()
            .filter(|e| e.pending.is_some() || e.prepared.is_some())
        else {
            self.hand(turn, ctx).await;
            return Ok(());
        };
        // The input ended during the decision: the turn is over with the
        // words it has. No interruption can pass any more, so a prepared
        // reply is confirmed or discarded here, never left held.
        let text = match (ending.pending.take(), turn) {
            (Some(before), Some(after)) => Some(format!("{before} {after}")),
            (before, after) => before.or(after),
        };
        let prepared = ending.prepared.take();
        ending.unfinalised_since = None;
        ending.decision.reset();
        match prepared {
            None => self.hand(text, ctx).await,
            Some(words) if text.as_deref().is_some_and(|t| same_words(&words, t)) => {
                self.complete(text, ctx).await;
                ctx.push_downstream(FrameBody::PreemptiveReplyConfirmed)
                    .await;
            }
            Some(_) => {
                // Prepared for other words. Recorded, but not asked again:
                // without an interruption to drop the stale reply, the new
                // one would be held with it, and `assistant_context` drops
                // what it still holds at the end.
                tracing::debug!("preemptive reply discarded at the session's end");
                ctx.push_downstream(FrameBody::PreemptiveReplyDiscarded)
                    .await;
                self.complete(text, ctx).await;
            }
        }
        Ok(())
    }

    async fn on_cancel(&mut self, ctx: &ProcessorContext) {
        // What the user said still belongs to the transcript (as the
        // assistant's cut answer does); no reply is asked for.
        let pending = self.ending.as_mut().and_then(|e| e.pending.take());
        let turn = match (pending, self.tracker.finish()) {
            (Some(before), Some(after)) => Some(format!("{before} {after}")),
            (before, after) => before.or(after),
        };
        self.complete(turn, ctx).await;
    }
}
