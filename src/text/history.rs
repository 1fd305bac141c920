//! [`context_of`]: a stored transcript back into an LLM context, and
//! [`latest`]: the part of it that fits the history budget; without I/O.

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

/// The latest messages of `context` that fit in `max_messages` messages
/// and `max_chars` characters (text, tool names and arguments), the
/// system prompt (if any) always kept and not counted. The cut is made
/// before a user message where one fits, else before any message but a
/// tool result, so an assistant's tool calls never lose their results;
/// when not even the last exchange fits, no history is kept.
pub fn latest(context: &LlmContext, max_messages: usize, max_chars: usize) -> LlmContext {
    let messages = context.messages();
    let first = usize::from(messages.first().is_some_and(|m| m.role == Role::System));
    let body = &messages[first..];
    // chars[i]: the characters of body[i..].
    let mut chars = vec![0usize; body.len() + 1];
    for (i, message) in body.iter().enumerate().rev() {
        chars[i] = chars[i + 1] + size_of(message);
    }
    let fits = |i: usize| body.len() - i <= max_messages && chars[i] <= max_chars;
    let start = (0..body.len())
        .find(|&i| fits(i) && body[i].role == Role::User)
        .or_else(|| (0..body.len()).find(|&i| fits(i) && body[i].role != Role::Tool))
        .unwrap_or(body.len());
    if start == 0 {
        return context.clone();
    }
    tracing::debug!(
        dropped = start,
        kept = body.len() - start,
        "older history left out of the model's context"
    );
    let mut bounded = LlmContext::new();
    for message in messages[..first].iter().chain(&body[start..]) {
        bounded.push(message.clone());
    }
    bounded
}

/// A message's size against the character budget.
fn size_of(message: &Message) -> usize {
    let text = message.content.as_deref().map_or(0, |c| c.chars().count());
    let calls: usize = message
        .tool_calls
        .iter()
        .map(|c| c.name.chars().count() + c.arguments.chars().count())
        .sum();
    text + calls
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

    fn exchange(context: &mut LlmContext, n: usize, with_tool: bool) {
        context.push(Message::text(Role::User, format!("question {n}")));
        if with_tool {
            context.add_tool_call(ToolCall {
                id: format!("c{n}"),
                name: "price".into(),
                arguments: "{}".into(),
            });
            context.set_tool_result(&format!("c{n}"), "42");
        }
        context.push(Message::text(Role::Assistant, format!("answer {n}")));
    }

    #[test]
    fn only_the_latest_exchanges_within_the_budget_are_kept() {
        let mut context = LlmContext::with_system_prompt("be brief");
        for n in 0..10 {
            exchange(&mut context, n, n % 2 == 0);
        }
        // 10 exchanges: 5 of 2 messages, 5 of 4.
        assert_eq!(context.messages().len(), 31);
        let kept = latest(&context, 7, 10_000);
        let messages = kept.messages();
        assert_eq!(messages[0].content.as_deref(), Some("be brief"));
        // The last exchange (2 messages) and the one before (4) fit; the
        // third from the end would start inside a tool round.
        assert_eq!(messages.len(), 1 + 6, "{messages:?}");
        assert_eq!(messages[1].content.as_deref(), Some("question 8"));
        assert_eq!(messages[1].role, Role::User);
        // By characters: "question 9" + "answer 9" = 18.
        let kept = latest(&context, 100, 18);
        assert_eq!(kept.messages().len(), 3);
        assert_eq!(kept.messages()[1].content.as_deref(), Some("question 9"));
        // Everything fits: unchanged.
        assert_eq!(latest(&context, 100, 100_000), context);
    }

    #[test]
    fn a_cut_never_separates_tool_calls_from_their_results() {
        let mut context = LlmContext::new();
        exchange(&mut context, 0, true);
        // Only the tool round and the answer could fit by count: the cut is
        // before the assistant's calls, never between a call and its result.
        let kept = latest(&context, 3, 10_000);
        let messages = kept.messages();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert_eq!(messages[0].tool_calls.len(), 1);
        assert_eq!(messages[1].role, Role::Tool);
        let kept = latest(&context, 2, 10_000);
        assert_eq!(kept.messages().len(), 1);
        assert_eq!(kept.messages()[0].content.as_deref(), Some("answer 0"));
    }
}
