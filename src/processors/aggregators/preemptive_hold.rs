//! [`PreemptiveHold`]: what a preemptive reply produces, held back until
//! the user's turn is confirmed over.
//!
//! `assistant_context` starts holding when the reply starts
//! (`PreemptiveLlmMessages` passes) and keeps every downstream data and
//! control frame from then on (text, audio, tool calls and results, the
//! response's brackets) out of the conversation and away from the output.
//! The confirmation releases them, in order, to be recorded and played at
//! once; an interruption (the discard) drops them, as does the session's
//! end for a reply never confirmed. System frames (metrics, the user's
//! audio) pass: they are not the reply.
//!
//! A tool the discarded reply called (one safe to run early) may still
//! answer after the discard: a tool that outlives interruptions, or the
//! cancellation result of one that does not. Its call was never recorded,
//! so its result would be recorded on its own. The LLM drops the results
//! of a discarded response (its call's `FunctionCallInProgress` may have
//! been dropped as stale before reaching the hold); the hold too remembers
//! the discarded calls it held and drops their results.

use std::collections::VecDeque;

use crate::frame::{Direction, Frame, FrameBody, FrameKind};

/// The most discarded calls remembered: a few replies' worth. A result
/// that comes after more calls than that were discarded is recorded, as
/// any result of a call recorded nowhere.
const DISCARDED_CALLS: usize = 64;

/// Frames of a reply not yet confirmed. See the module docs.
#[derive(Debug, Default)]
pub(super) struct PreemptiveHold {
    held: Option<Vec<Frame>>,
    /// Ids of the calls of discarded replies, oldest first.
    discarded_calls: VecDeque<String>,
}

impl PreemptiveHold {
    /// A preemptive reply starts: hold what follows.
    pub(super) fn start(&mut self) {
        if let Some(stale) = self.held.replace(Vec::new())
            && !stale.is_empty()
        {
            tracing::debug!(frames = stale.len(), "an unconfirmed reply was replaced");
        }
    }

    /// `frame`, unless it is held.
    pub(super) fn pass(&mut self, frame: Frame, direction: Direction) -> Option<Frame> {
        if let FrameBody::FunctionCallResult { call, .. } = &frame.body
            && let Some(at) = self.discarded_calls.iter().position(|id| *id == call.id)
        {
            self.discarded_calls.remove(at);
            tracing::debug!("the result of a discarded reply's tool call: dropped");
            return None;
        }
        let Some(held) = &mut self.held else {
            return Some(frame);
        };
        let holds = direction == Direction::Downstream
            && frame.body.kind() != FrameKind::System
            && !matches!(frame.body, FrameBody::End { .. });
        if holds {
            held.push(frame);
            None
        } else {
            Some(frame)
        }
    }

    /// The turn is confirmed over: the held frames, in order, to go on.
    pub(super) fn release(&mut self) -> Vec<Frame> {
        self.held.take().unwrap_or_default()
    }

    /// The reply is discarded: nothing of it goes on. Returns how many
    /// frames were dropped.
    pub(super) fn discard(&mut self) -> usize {
        let held = self.held.take().unwrap_or_default();
        // Calls whose result is held too have answered: nothing to wait for.
        let answered: Vec<&str> = held
            .iter()
            .filter_map(|frame| match &frame.body {
                FrameBody::FunctionCallResult { call, .. } => Some(call.id.as_str()),
                _ => None,
            })
            .collect();
        for frame in &held {
            if let FrameBody::FunctionCallInProgress(call) = &frame.body
                && !answered.contains(&call.id.as_str())
            {
                if self.discarded_calls.len() == DISCARDED_CALLS {
                    self.discarded_calls.pop_front();
                }
                self.discarded_calls.push_back(call.id.clone());
            }
        }
        held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_reply_until_released_and_drops_it_when_discarded() {
        let mut hold = PreemptiveHold::default();
        let text = || Frame::new(FrameBody::LlmText("Hi".into()));
        assert!(hold.pass(text(), Direction::Downstream).is_some(), "idle");
        hold.start();
        assert!(hold.pass(text(), Direction::Downstream).is_none());
        assert!(
            hold.pass(Frame::new(FrameBody::TtsStopped), Direction::Downstream)
                .is_none()
        );
        assert!(
            hold.pass(
                Frame::new(FrameBody::BotStoppedSpeaking),
                Direction::Upstream
            )
            .is_some()
        );
        let released = hold.release();
        assert_eq!(released.len(), 2);
        assert!(matches!(released[0].body, FrameBody::LlmText(_)));
        assert!(
            hold.pass(text(), Direction::Downstream).is_some(),
            "released"
        );

        hold.start();
        assert!(hold.pass(text(), Direction::Downstream).is_none());
        hold.discard();
        assert!(hold.release().is_empty());
        assert!(hold.pass(text(), Direction::Downstream).is_some());
    }

    #[test]
    fn results_of_a_discarded_replys_tool_calls_are_dropped_once() {
        let call = |id: &str| crate::conversation::ToolCall {
            id: id.into(),
            name: "lookup".into(),
            arguments: "{}".into(),
        };
        let result = |id: &str| {
            Frame::new(FrameBody::FunctionCallResult {
                call: call(id),
                result: "cancelled".into(),
            })
        };
        let mut hold = PreemptiveHold::default();
        hold.start();
        let in_progress = Frame::new(FrameBody::FunctionCallInProgress(call("a")));
        assert!(hold.pass(in_progress, Direction::Downstream).is_none());
        hold.discard();
        assert!(hold.pass(result("a"), Direction::Downstream).is_none());
        // Only that call's, and only once.
        assert!(hold.pass(result("b"), Direction::Downstream).is_some());
        assert!(hold.pass(result("a"), Direction::Downstream).is_some());

        // A call answered before the discard leaves nothing to wait for.
        hold.start();
        let in_progress = Frame::new(FrameBody::FunctionCallInProgress(call("d")));
        assert!(hold.pass(in_progress, Direction::Downstream).is_none());
        assert!(hold.pass(result("d"), Direction::Downstream).is_none());
        hold.discard();
        assert!(hold.pass(result("d"), Direction::Downstream).is_some());

        // Dropped too while the next reply is held, not released with it.
        hold.start();
        let in_progress = Frame::new(FrameBody::FunctionCallInProgress(call("c")));
        assert!(hold.pass(in_progress, Direction::Downstream).is_none());
        hold.discard();
        hold.start();
        assert!(hold.pass(result("c"), Direction::Downstream).is_none());
        assert!(hold.release().is_empty());
    }
}
