//! Assembling streamed tool calls: fragments by index, arguments checked
//! as JSON against the tool's parameter schema.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::conversation::ToolCall;

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

    /// Adds a fragment that names no index: part of the latest call, unless
    /// it starts another (an id other than the latest call's, or a name
    /// when the latest call has one already and no id says otherwise).
    /// Servers that send each call whole in a chunk of its own, or several
    /// in one chunk, without indices (Gemini's OpenAI-compatible endpoint)
    /// would otherwise have every call run into the first.
    pub fn add_unindexed(&mut self, id: Option<&str>, name: Option<&str>, arguments: Option<&str>) {
        let latest = self.calls.last_key_value();
        let starts_another = latest.is_none_or(|(_, partial)| match (id, &partial.id) {
            (Some(id), Some(latest_id)) => id != latest_id,
            (Some(_), None) => !partial.name.is_empty() || !partial.arguments.is_empty(),
            (None, _) => name.is_some() && !partial.name.is_empty(),
        });
        let index = match latest {
            Some((&index, _)) if !starts_another => index,
            Some((&index, _)) => index.saturating_add(1),
            None => 0,
        };
        self.add(index, id, name, arguments);
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

/// Checks `arguments` against a JSON-schema `parameters` object: required
/// properties present, declared primitive types respected. A light check,
/// enough to give the model a precise error instead of running a tool with
/// nonsense.
pub fn check_arguments(parameters: &Value, arguments: &Value) -> Result<(), String> {
    let Some(object) = arguments.as_object() else {
        return Err("the arguments are not a JSON object".to_owned());
    };
    if let Some(required) = parameters.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if !object.contains_key(name) {
                return Err(format!("missing required argument `{name}`"));
            }
        }
    }
    let Some(properties) = parameters.get("properties").and_then(Value::as_object) else {
        return Ok(());
    };
    for (name, value) in object {
        let Some(expected) = properties
            .get(name)
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str)
        else {
            continue;
        };
        let fits = match expected {
            "string" => value.is_string(),
            "number" => value.is_number(),
            "integer" => value.is_i64() || value.is_u64(),
            "boolean" => value.is_boolean(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            "null" => value.is_null(),
            _ => true,
        };
        if !fits {
            return Err(format!("argument `{name}` must be of type {expected}"));
        }
    }
    Ok(())
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
    fn unindexed_fragments_are_told_apart_by_id_and_name() {
        // Gemini's compatible endpoint: each call whole, in its own chunk,
        // no index. Before, both ran into one call, `get_weatherget_weather`.
        let mut calls = ToolCallAssembler::new();
        calls.add_unindexed(Some("a"), Some("get_weather"), Some(r#"{"city":"A"}"#));
        calls.add_unindexed(Some("b"), Some("get_weather"), Some(r#"{"city":"B"}"#));
        // No ids: a name starts a call, arguments without one continue it.
        calls.add_unindexed(None, Some("get_time"), None);
        calls.add_unindexed(None, None, Some(r#"{"tz":"#));
        calls.add_unindexed(None, None, Some(r#""UTC"}"#));
        calls.add_unindexed(None, Some("end_call"), None);
        let calls = calls.finish("r");
        let got: Vec<(&str, &str)> = calls
            .iter()
            .map(|c| (c.call.name.as_str(), c.call.arguments.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("get_weather", r#"{"city":"A"}"#),
                ("get_weather", r#"{"city":"B"}"#),
                ("get_time", r#"{"tz":"UTC"}"#),
                ("end_call", "{}"),
            ]
        );
        assert_eq!(
            (calls[0].call.id.as_str(), calls[1].call.id.as_str()),
            ("a", "b")
        );
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
    fn arguments_are_checked_against_the_schema() {
        let schema = json!({
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"]
        });
        assert_eq!(
            check_arguments(&schema, &json!({"city": "Oslo", "days": 3})),
            Ok(())
        );
        assert!(
            check_arguments(&schema, &json!({"days": 3}))
                .unwrap_err()
                .contains("`city`")
        );
        assert!(
            check_arguments(&schema, &json!({"city": 3}))
                .unwrap_err()
                .contains("string")
        );
        assert!(check_arguments(&schema, &json!({"city": "a", "days": 1.5})).is_err());
        assert_eq!(
            check_arguments(&schema, &json!({"city": "a", "extra": 1})),
            Ok(())
        );
    }
}
