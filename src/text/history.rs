//! [`context_of`]: a stored transcript back into an LLM context, without
//! I/O.

use crate::conversation::{LlmContext, Message, Role};
use crate::store::Interaction;

/// The LLM context a conversation's stored turns make: user and assistant
/// words as messages, each tool call with its result where the assistant
/// aggregator would have put them.
pub fn context_of(turns: &[Interaction]) -> LlmContext {
    let mut context = LlmContext::new();
    for turn in turns {
        match turn.role {
            Role::User => context.push(Message::text(Role::User, turn.text.clone())),
            Role::Tool => {
                for call in &turn.tool_calls {
                    if !context.set_tool_result(&call.id, turn.text.clone()) {
                        context.add_tool_call(call.clone());
                        context.set_tool_result(&call.id, turn.text.clone());
                    }
                }
            }
            Role::Assistant => {
                if !turn.text.is_empty() {
                    context.push(Message::text(Role::Assistant, turn.text.clone()));
                }
            }
            Role::System => {}
        }
    }
    context
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::ToolCall;

    fn turn(role: Role, text: &str, tool_calls: Vec<ToolCall>) -> Interaction {
        Interaction {
            index: 0,
            role,
            text: text.into(),
            timestamp: String::new(),
            session_ms: 0,
            interrupted: false,
            tool_calls,
            latency_ms: None,
            agent: None,
            reflection: None,
        }
    }

    #[test]
    fn tool_calls_come_back_before_the_answer_that_used_them() {
        let call = ToolCall {
            id: "c1".into(),
            name: "price".into(),
            arguments: "{}".into(),
        };
        let turns = [
            turn(Role::User, "how much?", vec![]),
            turn(Role::Tool, "42", vec![call.clone()]),
            turn(Role::Assistant, "It is 42.", vec![call.clone()]),
        ];
        let context = context_of(&turns);
        let messages = context.messages();
        assert_eq!(messages.len(), 4);
        assert_eq!(messages[0].content.as_deref(), Some("how much?"));
        assert_eq!(messages[1].tool_calls, vec![call]);
        assert_eq!(messages[2].tool_call_id.as_deref(), Some("c1"));
        assert_eq!(messages[2].content.as_deref(), Some("42"));
        assert_eq!(messages[3].content.as_deref(), Some("It is 42."));
    }
}
