//! [`TextTap`]: what a text message's pipeline says, seen as it leaves the
//! text path.

use std::sync::Mutex;

use tokio::sync::mpsc;

use super::reply::TextEvent;
use crate::frame::{Direction, FrameBody};
use crate::pipeline::{Observer, PushEvent};

/// Follows the frames the last processor of the text path pushes out (the
/// answer as streamed, tool calls and results) and any error; streams
/// them to the caller, if one listens, and keeps the answer's text.
pub(super) struct TextTap {
    last: String,
    events: Option<mpsc::UnboundedSender<TextEvent>>,
    state: Mutex<Heard>,
}

#[derive(Default)]
pub(super) struct Heard {
    pub(super) text: String,
    /// The first error reported.
    pub(super) error: Option<String>,
    /// An error came after the last text or tool call: the answer was cut
    /// off there (a failed round), not merely past a skipped event.
    pub(super) cut_off: bool,
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
        if let FrameBody::Error(error) = &event.frame.body {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.error.get_or_insert_with(|| error.message.clone());
            state.cut_off = true;
            return;
        }
        if event.from != self.last || event.direction != Direction::Downstream {
            return;
        }
        match &event.frame.body {
            FrameBody::LlmText(text) => {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                state.text.push_str(text);
                state.cut_off = false;
                drop(state);
                self.send(TextEvent::Delta(text.clone()));
            }
            FrameBody::FunctionCallInProgress(call) => {
                self.state.lock().unwrap_or_else(|e| e.into_inner()).cut_off = false;
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
