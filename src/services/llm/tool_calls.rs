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
    /// The call, arguments as the model wrote them when they are a JSON
    /// object, else `{}`: the call goes into the history and its frames,
    /// and servers that parse every replayed call's arguments (vLLM,
    /// LiteLLM) refuse a request whose history holds one that is not
    /// JSON, so every later turn would fail.
    pub call: ToolCall,
    /// The arguments as a JSON object, or why they are not one.
    pub arguments: Result<Value, BadArguments>,
}

/// Arguments a model wrote that are not a JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct BadArguments {
    /// Why they cannot be used (not JSON, not an object); names none of
    /// the values, so it may be logged.
    pub reason: String,
    /// The arguments as the model wrote them: for the tool's error result
    /// (the model sees its mistake), never for the logs.
    pub written: String,
}

impl BadArguments {
    /// What the model is told: the reason and what it wrote.
    pub fn told(&self) -> String {
        format!(
            "{}; the arguments written were: {}",
            self.reason, self.written
        )
    }
}

#[derive(Debug, Default)]
struct Partial {
    id: Option<String>,
    name: String,
    arguments: String,
}

/// Collects tool-call fragments of one model response, by index.
///
/// The index a server gives is not always a call's own: Ollama's
/// OpenAI-compatible stream (and some gateways) send every call with
/// `"index": 0`, each whole and with an id of its own. So the calls are
/// kept in the order they began, and each index points at the latest call
/// begun under it: a fragment bringing an id other than that call's begins
/// another when it also brings a name, or when that call's arguments are
/// whole JSON already; the fragments after it continue the new one. Other
/// servers (Poolside, older mlx-openai-server, some vLLM parsers) send a
/// new id on later fragments of one call: without a name, and while the
/// arguments are still incomplete, such a fragment continues the call
/// under its first id.
#[derive(Debug, Default)]
pub struct ToolCallAssembler {
    /// The calls, in the order they began.
    calls: Vec<Partial>,
    /// The server's index of each call, beside `calls`.
    indices: Vec<u32>,
    /// Where in `calls` each index's latest call is.
    latest: BTreeMap<u32, usize>,
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
        let id = id.filter(|id| !id.is_empty());
        let slot = match self.latest.get(&index) {
            Some(&slot) if !self.starts_another(slot, id, name) => slot,
            _ => {
                self.calls.push(Partial::default());
                self.indices.push(index);
                let slot = self.calls.len() - 1;
                self.latest.insert(index, slot);
                slot
            }
        };
        let Some(partial) = self.calls.get_mut(slot) else {
            return;
        };
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

    /// Whether a fragment bringing `id` and `name` begins a call other
    /// than the one in `slot`: it does when that call has another id
    /// already, and the fragment brings a name too or the call's arguments
    /// are a whole JSON value already.
    fn starts_another(&self, slot: usize, id: Option<&str>, name: Option<&str>) -> bool {
        let Some(current) = self.calls.get(slot) else {
            return false;
        };
        match (id, current.id.as_deref()) {
            (Some(id), Some(current_id)) if id != current_id => {
                name.is_some_and(|name| !name.is_empty())
                    || serde_json::from_str::<serde::de::IgnoredAny>(&current.arguments).is_ok()
            }
            _ => false,
        }
    }

    /// Adds a fragment that names no index: part of the latest call, unless
    /// it starts another (an id other than the latest call's, or a name
    /// when the latest call has one already and no id says otherwise).
    /// Servers that send each call whole in a chunk of its own, or several
    /// in one chunk, without indices (Gemini's OpenAI-compatible endpoint)
    /// would otherwise have every call run into the first.
    pub fn add_unindexed(&mut self, id: Option<&str>, name: Option<&str>, arguments: Option<&str>) {
        let latest = self.calls.last().zip(self.indices.last());
        let starts_another = latest.is_none_or(|(partial, _)| match (id, &partial.id) {
            (Some(id), Some(latest_id)) => id != latest_id,
            (Some(_), None) => !partial.name.is_empty() || !partial.arguments.is_empty(),
            (None, _) => name.is_some() && !partial.name.is_empty(),
        });
        let index = match latest {
            Some((_, &index)) if !starts_another => index,
            Some(_) => self.indices.iter().max().map_or(0, |i| i.saturating_add(1)),
            None => 0,
        };
        self.add(index, id, name, arguments);
    }

    /// Whether any call has begun.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// The calls, in index order (calls sharing an index in the order
    /// they began). A call without an id gets one made from `response_id`
    /// and its index; empty arguments mean `{}`, and arguments that are
    /// not a JSON object become `{}` in the call (see [`AssembledCall`]).
    pub fn finish(self, response_id: &str) -> Vec<AssembledCall> {
        let mut calls: Vec<(u32, Partial)> = self.indices.into_iter().zip(self.calls).collect();
        // Stable: calls sharing an index keep the order they began in.
        calls.sort_by_key(|(index, _)| *index);
        calls
            .into_iter()
            .map(|(index, partial)| {
                let written = partial.arguments;
                let blank = written.trim().is_empty();
                let parsed = if blank {
                    Ok(Value::Object(serde_json::Map::new()))
                } else {
                    match serde_json::from_str::<Value>(&written) {
                        Ok(value @ Value::Object(_)) => Ok(value),
                        Ok(_) => Err("the arguments are not a JSON object".to_owned()),
                        Err(e) => Err(format!("the arguments are not valid JSON: {e}")),
                    }
                };
                let (arguments, parsed) = match parsed {
                    Ok(value) if !blank => (written, Ok(value)),
                    Ok(value) => ("{}".to_owned(), Ok(value)),
                    Err(reason) => ("{}".to_owned(), Err(BadArguments { reason, written })),
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
        // Some servers repeat the call's id on every fragment.
        calls.add(0, Some("call_a"), None, Some("is\"}"));
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
        let bad = calls[1].arguments.as_ref().unwrap_err();
        assert!(bad.reason.contains("not valid JSON"), "{}", bad.reason);
        assert_eq!(bad.written, "{\"a\": ");
        assert!(bad.told().ends_with("written were: {\"a\": "));
        let bad = calls[2].arguments.as_ref().unwrap_err();
        assert!(bad.reason.contains("not a JSON object"), "{}", bad.reason);
        assert_eq!(bad.written, "[1]");
    }

    #[test]
    fn arguments_that_are_not_a_json_object_become_an_empty_object_in_the_call() {
        // The call goes into the history, replayed to servers that parse
        // its arguments: only the tool's error result carries what was
        // written.
        let mut calls = ToolCallAssembler::new();
        calls.add(0, Some("a"), Some("x"), Some("{\"city\": \"Par"));
        calls.add(1, Some("b"), Some("y"), Some("\"Paris\""));
        calls.add(2, Some("c"), Some("z"), Some(" "));
        for assembled in calls.finish("r") {
            let arguments: Value = serde_json::from_str(&assembled.call.arguments).unwrap();
            assert_eq!(arguments, json!({}), "{assembled:?}");
        }
    }

    #[test]
    fn calls_sharing_an_index_are_told_apart_by_their_ids() {
        // Ollama's OpenAI-compatible stream: every call whole, each with
        // `"index": 0` and an id of its own. Before, both ran into one
        // call, `get_weatherget_weather` with `{"city":"A"}{"city":"B"}`.
        let mut calls = ToolCallAssembler::new();
        calls.add(
            0,
            Some("call_a"),
            Some("get_weather"),
            Some(r#"{"city":"A"}"#),
        );
        calls.add(
            0,
            Some("call_b"),
            Some("get_weather"),
            Some(r#"{"city":"B"#),
        );
        // A fragment without an id continues the latest call of its index.
        calls.add(0, None, None, Some(r#""}"#));
        calls.add(0, Some(""), None, Some(""));
        calls.add(1, Some("call_c"), Some("get_time"), Some("{}"));
        let calls = calls.finish("r");
        let got: Vec<(&str, &str, &str)> = calls
            .iter()
            .map(|c| {
                (
                    c.call.id.as_str(),
                    c.call.name.as_str(),
                    c.call.arguments.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("call_a", "get_weather", r#"{"city":"A"}"#),
                ("call_b", "get_weather", r#"{"city":"B"}"#),
                ("call_c", "get_time", "{}"),
            ]
        );
        assert_eq!(calls[1].arguments, Ok(json!({"city": "B"})));
    }

    #[test]
    fn a_new_id_on_a_later_fragment_of_one_call_continues_it() {
        // Poolside, mlx-openai-server before its PR #216, a vLLM streaming
        // parser: every fragment of one call brings an id of its own.
        let mut calls = ToolCallAssembler::new();
        calls.add(0, Some("call_1"), Some("get_weather"), Some(""));
        calls.add(0, Some("call_2"), None, Some(r#"{"city""#));
        calls.add(0, Some("call_3"), None, Some(r#": "Paris"}"#));
        let calls = calls.finish("r");
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0].call.id, "call_1");
        assert_eq!(calls[0].call.name, "get_weather");
        assert_eq!(calls[0].arguments, Ok(json!({"city": "Paris"})));

        // Once the arguments are whole, another id begins another call,
        // even without a name.
        let mut calls = ToolCallAssembler::new();
        calls.add(0, Some("a"), Some("x"), Some("{}"));
        calls.add(0, Some("b"), None, Some("{}"));
        assert_eq!(calls.finish("r").len(), 2);
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
