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
    /// event) does not fail it, wherever it comes. A response that started
    /// and never ended (its task panicked) failed too: see [`TextTap::take`].
    pub(super) failed: bool,
    /// The processor that pushed the first `LlmResponseStart` (the LLM),
    /// whose responses are followed.
    llm: Option<String>,
    /// Its responses started and not yet ended.
    open: usize,
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

    /// What was heard, once the run is over: a response still open then
    /// never ended (its task died partway), and failed.
    pub(super) fn take(&self) -> Heard {
        let mut heard = std::mem::take(&mut *self.state.lock().unwrap_or_else(|e| e.into_inner()));
        if heard.open > 0 {
            heard.failed = true;
            heard
                .error
                .get_or_insert_with(|| "the model's response never ended".to_owned());
        }
        heard
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
            // Counted as the LLM (the first to push a start) pushes them.
            FrameBody::LlmResponseStart if event.direction == Direction::Downstream => {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let llm = state.llm.get_or_insert_with(|| event.from.to_owned());
                if llm == event.from {
                    state.open += 1;
                }
            }
            FrameBody::LlmResponseEnd { failed } if event.direction == Direction::Downstream => {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if state.llm.as_deref() == Some(event.from) {
                    state.open = state.open.saturating_sub(1);
                }
                if *failed {
                    state.failed = true;
                    return;
                }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::frame::Frame;

    fn push(tap: &TextTap, from: &str, body: FrameBody) {
        tap.on_push(&PushEvent {
            from,
            frame: &Frame::new(body),
            direction: Direction::Downstream,
            at: Duration::ZERO,
        });
    }

    /// The LLM's frames, forwarded by the processor after it (`out`).
    fn through(tap: &TextTap, body: FrameBody) {
        push(tap, "llm", body.clone());
        push(tap, "out", body);
    }

    fn tap() -> TextTap {
        TextTap::new("out".to_owned(), None)
    }

    #[test]
    fn a_response_that_ended_is_not_failed() {
        let tap = tap();
        through(&tap, FrameBody::LlmResponseStart);
        through(&tap, FrameBody::LlmText("Hello".into()));
        through(&tap, FrameBody::LlmResponseEnd { failed: false });
        let heard = tap.take();
        assert_eq!(heard.text, "Hello");
        assert!(!heard.failed);
        assert_eq!(heard.error, None);
    }

    #[test]
    fn a_response_that_started_and_never_ended_failed() {
        let tap = tap();
        through(&tap, FrameBody::LlmResponseStart);
        through(&tap, FrameBody::LlmText("Half an ans".into()));
        // Its task panicked: no end comes.
        let heard = tap.take();
        assert_eq!(heard.text, "Half an ans");
        assert!(heard.failed);
        assert!(heard.error.is_some());
    }

    #[test]
    fn an_end_swallowed_downstream_neither_fails_nor_hides_a_failure() {
        let tap = tap();
        through(&tap, FrameBody::LlmResponseStart);
        push(&tap, "llm", FrameBody::LlmResponseEnd { failed: false });
        assert!(!tap.take().failed);

        through(&tap, FrameBody::LlmResponseStart);
        push(&tap, "llm", FrameBody::LlmResponseEnd { failed: true });
        assert!(tap.take().failed);
    }
}
