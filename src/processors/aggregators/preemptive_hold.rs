//! [`PreemptiveHold`]: what a preemptive reply produces, held back until
//! the user's turn is confirmed over.
//!
//! `assistant_context` starts holding when the reply starts
//! (`PreemptiveLlmMessages` passes) and keeps every downstream data and
//! control frame from then on (text, audio, tool calls and results, the
//! response's brackets) out of the conversation and away from the output.
//! The confirmation releases them, in order, to be recorded and played at
//! once; an interruption (the discard) drops them. System frames (metrics,
//! the user's audio) pass: they are not the reply.

use crate::frame::{Direction, Frame, FrameBody, FrameKind};

/// Frames of a reply not yet confirmed. See the module docs.
#[derive(Debug, Default)]
pub(super) struct PreemptiveHold {
    held: Option<Vec<Frame>>,
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

    /// The reply is discarded: nothing of it goes on.
    pub(super) fn discard(&mut self) {
        self.held = None;
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
}
