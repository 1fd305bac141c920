//! Assembling streamed tool calls: fragments by index, arguments parsed as
//! a JSON object (checked against the tool's schema in `tool_schema`).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::conversation::ToolCall;

/// The id of round `round` of response `number`, from which the calls of
/// a provider that gives no call ids get theirs. A random part makes it
/// unique beyond the processor: a text conversation builds a new LLM
/// processor for each message (its responses numbered from 0 again) and
/// reads back the history whose call ids must not collide.
pub(crate) fn round_id(number: u64, round: u32) -> String {
    format!("{:08x}_{number}_{round}", crate::random::random_u32())
}

/// A tool call as it stands once the stream has ended.
#[derive(Debug, Clone, PartialEq)]
pub struct AssembledCall {
    /// The call, arguments as the model wrote them.
    pub call: ToolCall,
    /// The arguments as a JSON object, or why they are not one.
    pub arguments: Result<Value, String>,
}

#[derive(Debug, Default)]
struct Partial {
    id: Option<String>,
    name: String,
    arguments: String,
}

/// Collects tool-call fragments of one model response, by index.
#[derive(Debug, Default)]
pub struct ToolCallAssembler {
    calls: BTreeMap<u32, Partial>,
}

impl ToolCallAssembler {
    /// An empty assembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one fragment of call `index`.
    pub fn add(
        &mut self,
        index: u32,
        id: Option<&str>,
        name: Option<&str>,
        arguments: Option<&str>,
    ) {
        let partial = self.calls.entry(index).or_default();
        if let Some(id) = id {
            partial.id.get_or_insert_with(|| id.to_owned());
        }
        if let Some(name) = name {
            partial.name.push_str(name);
        }
        if let Some(arguments) = arguments {
            partial.arguments.push_str(arguments);
        }
    }

    /// Whether any call has begun.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// The calls, in index order. A call without an id gets one made from
    /// `response_id` and its index; empty arguments mean `{}`.
    pub fn finish(self, response_id: &str) -> Vec<AssembledCall> {
        self.calls
            .into_iter()
            .map(|(index, partial)| {
                let arguments = if partial.arguments.trim().is_empty() {
                    "{}".to_owned()
                } else {
                    partial.arguments
                };
                let parsed = match serde_json::from_str::<Value>(&arguments) {
                    Ok(value @ Value::Object(_)) => Ok(value),
                    Ok(_) => Err("the arguments are not a JSON object".to_owned()),
                    Err(e) => Err(format!("the arguments are not valid JSON: {e}")),
                };
                AssembledCall {
                    call: ToolCall {
                        id: partial
                            .id
                            .unwrap_or_else(|| format!("call_{response_id}_{index}")),
                        name: partial.name,
                        arguments,
                    },
                    arguments: parsed,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fragments_by_index_make_whole_calls() {
        let mut calls = ToolCallAssembler::new();
        calls.add(0, Some("call_a"), Some("get_weather"), None);
        calls.add(1, Some("call_b"), Some("get_time"), Some(""));
        calls.add(0, None, None, Some("{\"ci"));
        calls.add(1, None, None, Some("{\"tz\": \"UTC\"}"));
        calls.add(0, None, None, Some("ty\": \"Par"));
        calls.add(0, Some("ignored"), None, Some("is\"}"));
        let calls = calls.finish("r");
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].call.id, "call_a");
        assert_eq!(calls[0].call.name, "get_weather");
        assert_eq!(calls[0].call.arguments, r#"{"city": "Paris"}"#);
        assert_eq!(calls[0].arguments, Ok(json!({"city": "Paris"})));
        assert_eq!(calls[1].arguments, Ok(json!({"tz": "UTC"})));
    }

    #[test]
    fn missing_ids_and_arguments_get_defaults_and_bad_json_is_reported() {
        let mut calls = ToolCallAssembler::new();
        calls.add(0, None, Some("end_call"), None);
        calls.add(1, None, Some("x"), Some("{\"a\": "));
        calls.add(2, None, Some("y"), Some("[1]"));
        let calls = calls.finish("r7");
        assert_eq!(calls[0].call.id, "call_r7_0");
        assert_eq!(calls[0].arguments, Ok(json!({})));
        assert!(
            calls[1]
                .arguments
                .as_ref()
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(
            calls[2]
                .arguments
                .as_ref()
                .unwrap_err()
                .contains("not a JSON object")
        );
    }

    #[test]
    fn generated_ids_differ_between_processors_numbering_alike() {
        let ids: Vec<String> = (0..2)
            .map(|_| {
                let mut calls = ToolCallAssembler::new();
                calls.add(0, None, Some("price"), Some("{}"));
                calls.finish(&round_id(1, 0)).remove(0).call.id
            })
            .collect();
        assert!(
            ids[0].starts_with("call_") && ids[0].ends_with("_1_0_0"),
            "{ids:?}"
        );
        assert_ne!(ids[0], ids[1]);
    }
}
