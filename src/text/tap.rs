//! [`TextTap`]: what a text message's pipeline says, seen as it leaves the
//! text path.

use std::sync::Mutex;

use tokio::sync::mpsc;

use super::reply::TextEvent;
use crate::frame::{Direction, FrameBody};
use crate::pipeline::{Observer, PushEvent};

/// Follows the frames the last processor of the text path pushes out (the
/// answer as streamed, tool calls and results), the LLM responses' ends
/// and any error; streams the answer to the caller, if one listens, and
/// keeps its text and whether a response failed.
pub(super) struct TextTap {
    last: String,
    events: Option<mpsc::UnboundedSender<TextEvent>>,
    state: Mutex<Heard>,
}

#[derive(Default)]
pub(super) struct Heard {
    pub(super) text: String,
    /// The first error reported (recoverable ones included), for the log.
    pub(super) error: Option<String>,
    /// An LLM response ended failed: the answer stops where it failed. The
    /// response says so itself; a recoverable error (a skipped malformed
    /// event) does not fail it, wherever it comes.
    pub(super) failed: bool,
}

impl TextTap {
    /// A tap on the frames `last` pushes downstream.
    pub(super) fn new(last: String, events: Option<mpsc::UnboundedSender<TextEvent>>) -> Self {
        TextTap {
            last,
            events,
            state: Mutex::default(),
        }
    }

    /// What was heard.
    pub(super) fn take(&self) -> Heard {
        std::mem::take(&mut *self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn send(&self, event: TextEvent) {
        if let Some(events) = &self.events {
            // The listener may have gone (a closed connection): the answer
            // is still completed and recorded.
            let _gone = events.send(event);
        }
    }
}

impl Observer for TextTap {
    fn on_push(&self, event: &PushEvent<'_>) {
        match &event.frame.body {
            FrameBody::Error(error) => {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                state.error.get_or_insert_with(|| error.message.clone());
                return;
            }
            // Read as the LLM pushes it, whatever processor follows: one
            // that swallowed the end must not hide a failure.
            FrameBody::LlmResponseEnd { failed: true }
                if event.direction == Direction::Downstream =>
            {
                self.state.lock().unwrap_or_else(|e| e.into_inner()).failed = true;
                return;
            }
            _ => {}
        }
        if event.from != self.last || event.direction != Direction::Downstream {
            return;
        }
        match &event.frame.body {
            FrameBody::LlmText(text) => {
                self.state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .text
                    .push_str(text);
                self.send(TextEvent::Delta(text.clone()));
            }
            FrameBody::FunctionCallInProgress(call) => {
                self.send(TextEvent::ToolCall(call.clone()));
            }
            FrameBody::FunctionCallResult { call, result } => self.send(TextEvent::ToolResult {
                call: call.clone(),
                result: result.clone(),
            }),
            _ => {}
        }
    }
}
