//! [`LlmContext`]: the conversation as the LLM reads it.

use std::sync::Arc;

use super::message::{Message, Role, ToolCall};

/// What a tool message says while its tool is still running. The OpenAI
/// format needs an answer for every call before the next user message, so
/// the answer is written at once and replaced when the result comes.
pub const TOOL_IN_PROGRESS: &str = "IN_PROGRESS";

/// The messages of one conversation, in the OpenAI chat format, system
/// prompt (if any) first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LlmContext {
    messages: Vec<Message>,
}

impl LlmContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// A context that starts with `prompt` as its system message.
    pub fn with_system_prompt(prompt: impl Into<String>) -> Self {
        let mut context = Self::new();
        context.set_system_prompt(prompt);
        context
    }

    /// Sets the system prompt: replaces the first message if it is a system
    /// message, else puts one first.
    pub fn set_system_prompt(&mut self, prompt: impl Into<String>) {
        let message = Message::text(Role::System, prompt);
        match self.messages.first_mut() {
            Some(first) if first.role == Role::System => *first = message,
            _ => self.messages.insert(0, message),
        }
    }

    /// The system prompt, if the context has one.
    pub fn system_prompt(&self) -> Option<&str> {
        self.messages
            .first()
            .filter(|m| m.role == Role::System)
            .and_then(|m| m.content.as_deref())
    }

    /// Every message, in order.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Appends a message.
    pub fn push(&mut self, message: Message) {
        self.messages.push(message);
    }

    /// An immutable copy to hand to the LLM in a frame.
    pub fn snapshot(&self) -> Arc<Vec<Message>> {
        Arc::new(self.messages.clone())
    }

    /// Records a call the model made. Calls of one model round share one
    /// assistant message: the call joins the last assistant message with
    /// tool calls if only tool messages follow it, else opens a new one. Its
    /// tool message says [`TOOL_IN_PROGRESS`] until
    /// [`set_tool_result`](Self::set_tool_result).
    pub fn add_tool_call(&mut self, call: ToolCall) {
        let open_round = self
            .messages
            .iter()
            .rposition(|m| m.role != Role::Tool)
            .filter(|&i| {
                let m = &self.messages[i];
                m.role == Role::Assistant && !m.tool_calls.is_empty()
            });
        let result = Message::tool_result(call.id.clone(), TOOL_IN_PROGRESS);
        match open_round {
            Some(i) => self.messages[i].tool_calls.push(call),
            None => self.messages.push(Message::tool_calls(None, vec![call])),
        }
        self.messages.push(result);
    }

    /// Sets the answer to the call `call_id`; false if no such call is
    /// recorded.
    pub fn set_tool_result(&mut self, call_id: &str, content: impl Into<String>) -> bool {
        match self
            .messages
            .iter_mut()
            .rev()
            .find(|m| m.role == Role::Tool && m.tool_call_id.as_deref() == Some(call_id))
        {
            Some(message) => {
                message.content = Some(content.into());
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: "lookup".into(),
            arguments: "{}".into(),
        }
    }

    #[test]
    fn the_system_prompt_stays_first() {
        let mut context = LlmContext::new();
        context.push(Message::text(Role::User, "hi"));
        context.set_system_prompt("be brief");
        context.set_system_prompt("be briefer");
        assert_eq!(context.messages().len(), 2);
        assert_eq!(context.system_prompt(), Some("be briefer"));
    }

    #[test]
    fn calls_of_one_round_share_an_assistant_message_and_every_call_has_an_answer() {
        let mut context = LlmContext::new();
        context.push(Message::text(Role::User, "two lookups"));
        context.add_tool_call(call("a"));
        context.add_tool_call(call("b"));
        assert!(context.set_tool_result("b", "B"));
        assert!(!context.set_tool_result("zzz", "?"));
        let m = context.messages();
        assert_eq!(m.len(), 4);
        assert_eq!(m[1].tool_calls.len(), 2);
        assert_eq!(m[2].tool_call_id.as_deref(), Some("a"));
        assert_eq!(m[2].content.as_deref(), Some(TOOL_IN_PROGRESS));
        assert_eq!(m[3].content.as_deref(), Some("B"));
        // A call after a text answer opens a new round.
        context.push(Message::text(Role::Assistant, "done"));
        context.add_tool_call(call("c"));
        assert_eq!(context.messages().len(), 7);
        assert_eq!(context.messages()[5].tool_calls.len(), 1);
    }
}
