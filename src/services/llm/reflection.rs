//! Reflection: a reviewer checks each draft answer before it goes out.
//!
//! ```toml
//! [processor.reflection]
//! prompt = "Check prices and figures against the tool results."  # optional
//! max_rounds = 2        # reviews of one answer, 1 to 5; default 2
//! # model, base_url, api_key_env: the reviewer's own; default the LLM's
//! # timeout_secs = 10   # each review's limit, retries included; default 10
//! # max_tokens = 300    # cap on the reviewer's answer; default none
//! ```
//!
//! With reflection, the LLM writes its answer (tool rounds included)
//! without pushing any of its text: nothing reaches the TTS or the client
//! while the answer is a draft. The reviewer reads the conversation, the
//! tool calls and results and the draft, and answers a JSON object
//! `{"approved": bool, "critique": string}` (a strict `json_schema`
//! response format, validated anyway). A rejected draft, while reviews are
//! left, is written again with the critique; the answer that goes out is
//! the approved draft, or the last one, unapproved, after `max_rounds`
//! reviews (or when the reviewer cannot be asked or answers nonsense). A
//! rewrite that fails or comes back empty lets the rejected draft out,
//! unapproved. The reviewer never sees a rejected draft as said to the
//! user. The LLM pushes `AnswerReviewed` with the rounds and the verdict,
//! which the assistant turn records, then the text.
//!
//! A rewrite never acts again: the effects of the first draft's tool calls
//! (a booking, a message sent) already happened, and their calls and
//! results stay in the rewrite's context. So a rewrite is offered only the
//! tools without side effects (those [`safe_to_run_early`]), and a call it
//! makes anyway to a tool not offered is answered without running it: from
//! the latest result recorded in this turn when the same tool was called
//! with the same arguments (marked `not_run_again`), else with an error
//! saying the tool is not offered to a corrected answer (see
//! [`answer_unoffered`]). A rewrite offered no tool whose history holds
//! tool calls still lists the persona's tools, with `tool_choice: "none"`:
//! some servers refuse tool calls in a history without tools.
//!
//! [`safe_to_run_early`]: super::tools::Tool::safe_to_run_early
//!
//! The cost is latency: the answer's first word waits for the whole draft
//! and its review (see the README for a measurement). This file is
//! sans-IO: the driver sends the requests it builds.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::Seconds;
use crate::conversation::{Message, Role, ToolCall};
use crate::pipeline::{BuildError, SessionSetup};

use super::side_model::{
    SideModel, default_limit, json_object, json_schema_format, side_max_tokens,
};
use super::tool_calls::AssembledCall;
use super::tools::ToolSpec;

/// The reviewer's instructions when the TOML gives none.
pub const DEFAULT_REVIEW_PROMPT: &str = "\
You review a customer-service agent's draft answer before it is sent. Check \
it against the conversation and, above all, against the results of the tools \
the agent called: every figure, price, name and fact in the draft must agree \
with them. Approve a draft that is correct and answers the customer; \
otherwise say precisely what is wrong.";

/// `[processor.reflection]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReflectionConfig {
    /// The reviewer's instructions (the answer's shape is added).
    #[serde(default)]
    pub prompt: Option<String>,
    /// Reviews of one answer, 1 to 5. Default 2.
    #[serde(default = "default_max_rounds")]
    pub max_rounds: u32,
    /// The reviewer's model; default the LLM's.
    #[serde(default)]
    pub model: Option<String>,
    /// The reviewer's endpoint; default the LLM's.
    #[serde(default)]
    pub base_url: Option<String>,
    /// The variable holding the reviewer endpoint's key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The longest the review request may take, retries included, in
    /// seconds (above 0, at most 120); past it the response goes on
    /// with the draft unreviewed. Default 10.
    #[serde(default = "default_limit")]
    pub timeout_secs: Seconds<1, 120>,
    /// The longest answer of the reviewer, in tokens (1 to 100,000), sent as
    /// `max_tokens`. Default: none (the server's).
    #[serde(default, deserialize_with = "side_max_tokens")]
    pub max_tokens: Option<u32>,
}

fn default_max_rounds() -> u32 {
    2
}

/// What the reviewer said of a draft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Approved,
    Rejected(String),
}

/// The reviewer, ready for a session. See the module docs.
#[derive(Debug)]
pub(crate) struct Reviewer {
    pub(crate) model: SideModel,
    prompt: String,
    pub(crate) max_rounds: u32,
    pub(crate) response_format: Value,
}

impl Reviewer {
    pub(crate) fn build(
        setup: &SessionSetup,
        config: &ReflectionConfig,
    ) -> Result<Self, BuildError> {
        if !(1..=5).contains(&config.max_rounds) {
            return Err(BuildError::Invalid(format!(
                "reflection.max_rounds must be between 1 and 5, not {}",
                config.max_rounds
            )));
        }
        Ok(Reviewer {
            model: SideModel::build(
                setup,
                "reflection",
                config.model.as_deref(),
                config.base_url.as_deref(),
                config.api_key_env.as_deref(),
            )?
            .bounded(config.timeout_secs, config.max_tokens),
            prompt: config
                .prompt
                .clone()
                .unwrap_or_else(|| DEFAULT_REVIEW_PROMPT.to_owned()),
            max_rounds: config.max_rounds,
            response_format: json_schema_format(
                "review",
                json!({
                    "type": "object",
                    "properties": {
                        "approved": {"type": "boolean"},
                        "critique": {"type": "string"}
                    },
                    "required": ["approved", "critique"],
                    "additionalProperties": false
                }),
            ),
        })
    }

    /// The review request of `draft`, the answer to `conversation` (the
    /// messages the model read, its tool calls and their results), leaving
    /// out the messages at `rejected` (earlier drafts the reviewer stopped:
    /// the user never saw them).
    pub(crate) fn review(
        &self,
        conversation: &[Message],
        rejected: &[usize],
        draft: &str,
    ) -> Vec<Message> {
        let instructions = format!(
            "{}\n\nAnswer with one JSON object and nothing else: \
             {{\"approved\": true or false, \"critique\": \"what is wrong and how to fix it, \
             or an empty string\"}}.",
            self.prompt
        );
        let mut text = String::from("The conversation so far:\n");
        let shown = conversation
            .iter()
            .enumerate()
            .filter(|(i, m)| m.role != Role::System && !rejected.contains(i))
            .map(|(_, m)| m);
        for message in shown {
            let content = message.content.as_deref().unwrap_or_default();
            match message.role {
                Role::Tool => text.push_str(&format!("tool result: {content}\n")),
                role => {
                    let who = if role == Role::User { "user" } else { "agent" };
                    if !content.trim().is_empty() {
                        text.push_str(&format!("{who}: {content}\n"));
                    }
                    for call in &message.tool_calls {
                        text.push_str(&format!("{who} calls {}({})\n", call.name, call.arguments));
                    }
                }
            }
        }
        text.push_str(&format!("\nThe agent's draft answer:\n{draft}"));
        vec![
            Message::text(Role::System, instructions),
            Message::text(Role::User, text),
        ]
    }

    /// What the reviewer's `answer` says, or `None` when it is not a
    /// verdict.
    pub(crate) fn verdict(answer: &str) -> Option<Verdict> {
        let object = json_object(answer)?;
        let approved = object.get("approved")?.as_bool()?;
        let critique = object
            .get("critique")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim();
        Some(if approved {
            Verdict::Approved
        } else if critique.is_empty() {
            Verdict::Rejected("The reviewer rejected the draft without saying why.".into())
        } else {
            Verdict::Rejected(critique.to_owned())
        })
    }
}

/// The messages that ask for a draft again: the rejected draft, then the
/// critique.
pub(crate) fn rewrite_request(draft: &str, critique: &str) -> [Message; 2] {
    [
        Message::text(Role::Assistant, draft),
        Message::text(
            Role::System,
            format!(
                "A reviewer stopped that draft before the user saw it: {critique}\n\
                 Write your answer to the user again, corrected. The user has not seen the draft."
            ),
        ),
    ]
}

/// Splits a rewrite's `calls` into those to run (their tool is `offered`)
/// and those answered without running, each with its result: the one
/// recorded in `turn` (this response's messages so far) for the same tool
/// and arguments, marked as not run again; else an error saying the tool
/// is not offered to a corrected answer (it is `withheld`), or that there
/// is no such tool. Why: a production agent must not book or send twice
/// because a reviewer disliked the wording; answering a repeat from the
/// record (rather than with a bare refusal) lets the rewrite state what
/// happened instead of apologising for a failure that did not occur.
pub(crate) fn answer_unoffered(
    offered: &[ToolSpec],
    withheld: &[ToolSpec],
    calls: Vec<AssembledCall>,
    turn: &[Message],
) -> (Vec<AssembledCall>, Vec<(ToolCall, String)>) {
    let mut run = Vec::with_capacity(calls.len());
    let mut answered = Vec::new();
    for assembled in calls {
        let name = &assembled.call.name;
        if offered.iter().any(|s| &s.name == name) {
            run.push(assembled);
            continue;
        }
        let result = match recorded_result(turn, &assembled) {
            Some(recorded) => {
                tracing::debug!(tool = %name, "a rewrite repeated a call: answered from its recorded result, not run again");
                let recorded = serde_json::from_str::<Value>(recorded)
                    .unwrap_or_else(|_| Value::String(recorded.to_owned()));
                json!({
                    NOT_RUN_AGAIN: true,
                    "result_of_the_earlier_identical_call": recorded,
                })
            }
            None if withheld.iter().any(|s| &s.name == name) => {
                tracing::warn!(tool = %name, "a rewrite called a tool it was not offered: not run");
                json!({
                    "error": format!(
                        "not run: `{name}` is not offered to a corrected answer; \
                         answer from the tool results above"
                    ),
                    NOT_RUN: true,
                })
            }
            None => {
                tracing::warn!(tool = %name, "a rewrite called an unknown tool: not run");
                json!({
                    "error": format!(
                        "not run: there is no tool named `{name}`; \
                         answer from the tool results above"
                    ),
                    NOT_RUN: true,
                })
            }
        };
        answered.push((assembled.call, result.to_string()));
    }
    (run, answered)
}

/// The key marking a rewrite's call answered from the record.
const NOT_RUN_AGAIN: &str = "not_run_again";
/// The key marking a rewrite's call refused.
const NOT_RUN: &str = "not_run";

/// The result recorded in `turn` for a call of the same tool with the same
/// arguments (as JSON values: spacing and key order do not matter): the
/// latest one that is not an error, else the latest (a call repeated after
/// a failure and a success was answered by the success).
fn recorded_result<'t>(turn: &'t [Message], repeat: &AssembledCall) -> Option<&'t str> {
    let arguments = repeat.arguments.as_ref().ok()?;
    let results: Vec<&str> = turn
        .iter()
        .flat_map(|m| &m.tool_calls)
        .filter(|earlier| {
            earlier.name == repeat.call.name
                && serde_json::from_str::<Value>(&earlier.arguments)
                    .ok()
                    .as_ref()
                    == Some(arguments)
        })
        .filter_map(|earlier| {
            turn.iter()
                .rev()
                .find(|m| m.role == Role::Tool && m.tool_call_id.as_deref() == Some(&earlier.id))?
                .content
                .as_deref()
        })
        .filter(|result| !not_a_run(result))
        .collect();
    results
        .iter()
        .rev()
        .find(|result| !is_error(result))
        .or(results.last())
        .copied()
}

/// Whether a tool result reports a failure: a JSON object with `error`.
fn is_error(result: &str) -> bool {
    serde_json::from_str::<Value>(result).is_ok_and(|v| v.get("error").is_some())
}

/// Whether a tool result is a rewrite's call answered without running
/// (from the record, or refused): not a result of its own.
fn not_a_run(result: &str) -> bool {
    serde_json::from_str::<Value>(result)
        .is_ok_and(|v| v.get(NOT_RUN_AGAIN).is_some() || v.get(NOT_RUN).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_validated() {
        assert_eq!(
            Reviewer::verdict(r#"{"approved": true, "critique": ""}"#),
            Some(Verdict::Approved)
        );
        assert_eq!(
            Reviewer::verdict(r#"{"approved": false, "critique": " The price is 24.50. "}"#),
            Some(Verdict::Rejected("The price is 24.50.".into()))
        );
        assert!(matches!(
            Reviewer::verdict(r#"{"approved": false}"#),
            Some(Verdict::Rejected(_))
        ));
        assert_eq!(Reviewer::verdict(r#"{"approved": "yes"}"#), None);
        assert_eq!(Reviewer::verdict("looks good"), None);
    }

    #[test]
    fn the_review_shows_tool_calls_results_and_the_draft() {
        let reviewer = Reviewer::build(
            &SessionSetup::new("test", 16_000),
            &ReflectionConfig {
                prompt: None,
                max_rounds: 2,
                model: None,
                base_url: None,
                api_key_env: None,
                timeout_secs: default_limit(),
                max_tokens: None,
            },
        )
        .unwrap();
        let call = ToolCall {
            id: "c1".into(),
            name: "search_catalogue".into(),
            arguments: r#"{"query":"toaster"}"#.into(),
        };
        let conversation = vec![
            Message::text(Role::System, "be nice"),
            Message::text(Role::User, "price of the toaster?"),
            Message::tool_calls(None, vec![call]),
            Message::tool_result("c1", r#"{"price":"24.50"}"#),
        ];
        let request = reviewer.review(&conversation, &[], "It costs 19 euros.");
        let text = request[1].content.as_deref().unwrap();
        assert!(!text.contains("be nice"));
        assert!(text.contains("user: price of the toaster?"));
        assert!(text.contains(r#"agent calls search_catalogue({"query":"toaster"})"#));
        assert!(text.contains(r#"tool result: {"price":"24.50"}"#));
        assert!(text.ends_with("It costs 19 euros."));
        assert_eq!(reviewer.response_format["json_schema"]["strict"], true);

        // A rejected draft asked again is not shown as said to the user.
        let mut again = conversation.clone();
        let at = again.len();
        again.extend(rewrite_request("It costs 19 euros.", "wrong price"));
        let request = reviewer.review(&again, &[at], "It costs 24.50 euros.");
        let text = request[1].content.as_deref().unwrap();
        assert!(!text.contains("agent: It costs 19 euros."), "{text}");
        assert!(text.ends_with("It costs 24.50 euros."));
    }

    fn call(id: &str, name: &str, arguments: Value) -> AssembledCall {
        AssembledCall {
            call: ToolCall {
                id: id.into(),
                name: name.into(),
                arguments: arguments.to_string(),
            },
            arguments: Ok(arguments),
        }
    }

    fn spec(name: &str) -> ToolSpec {
        ToolSpec {
            name: name.into(),
            description: String::new(),
            parameters: json!({"type": "object"}),
        }
    }

    #[test]
    fn a_repeat_is_answered_with_the_latest_earlier_result_that_is_not_an_error() {
        let booking = json!({"day": "friday"});
        let turn = vec![
            Message::tool_calls(None, vec![call("c1", "book", booking.clone()).call]),
            Message::tool_result("c1", r#"{"error": "timed out"}"#),
            Message::tool_calls(None, vec![call("c2", "book", booking.clone()).call]),
            Message::tool_result("c2", r#"{"booked": "B-2"}"#),
            Message::tool_calls(None, vec![call("c3", "book", booking.clone()).call]),
            Message::tool_result("c3", r#"{"error": "already booked"}"#),
        ];
        let withheld = [spec("book")];
        let (run, answered) =
            answer_unoffered(&[], &withheld, vec![call("r1", "book", booking)], &turn);
        assert!(run.is_empty());
        let answer: Value = serde_json::from_str(&answered[0].1).unwrap();
        assert_eq!(
            answer,
            json!({
                "not_run_again": true,
                "result_of_the_earlier_identical_call": {"booked": "B-2"},
            })
        );
    }

    #[test]
    fn an_unoffered_call_without_a_record_is_told_why_it_was_not_run() {
        let withheld = [spec("book")];
        let offered = [spec("search")];
        let calls = vec![
            call("r1", "book", json!({"day": "monday"})),
            call("r2", "crm_lookup", json!({})),
            call("r3", "search", json!({})),
        ];
        let (run, answered) = answer_unoffered(&offered, &withheld, calls, &[]);
        assert_eq!(run.len(), 1);
        assert_eq!(run[0].call.name, "search");
        let error = |i: usize| {
            serde_json::from_str::<Value>(&answered[i].1).unwrap()["error"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert!(
            error(0).contains("`book` is not offered to a corrected answer"),
            "{}",
            error(0)
        );
        assert!(
            error(1).contains("no tool named `crm_lookup`"),
            "{}",
            error(1)
        );
        assert!(!error(1).contains("side effects"));
        // A refusal is no record: a later repeat is refused again, not
        // answered with the refusal as an earlier result.
        let turn = vec![
            Message::tool_calls(
                None,
                vec![call("r1", "book", json!({"day": "monday"})).call],
            ),
            Message::tool_result("r1", answered[0].1.clone()),
        ];
        let (_, again) = answer_unoffered(
            &offered,
            &withheld,
            vec![call("r4", "book", json!({"day": "monday"}))],
            &turn,
        );
        assert!(!again[0].1.contains("not_run_again"), "{}", again[0].1);
    }

    #[test]
    fn the_reviewers_requests_are_bounded_as_configured() {
        let setup = SessionSetup::new("test", 16_000);
        let mut config: ReflectionConfig = toml::from_str("").unwrap();
        let reviewer = Reviewer::build(&setup, &config).unwrap();
        assert_eq!(reviewer.model.limit, std::time::Duration::from_secs(10));
        assert_eq!(reviewer.model.max_tokens, None);
        config.timeout_secs = Seconds::new(2.5).unwrap();
        config.max_tokens = Some(200);
        let reviewer = Reviewer::build(&setup, &config).unwrap();
        assert_eq!(
            reviewer.model.limit,
            std::time::Duration::from_millis(2_500)
        );
        assert_eq!(reviewer.model.max_tokens, Some(200));
    }

    #[test]
    fn bad_settings_are_refused() {
        let config = ReflectionConfig {
            prompt: None,
            max_rounds: 0,
            model: None,
            base_url: None,
            api_key_env: None,
            timeout_secs: default_limit(),
            max_tokens: None,
        };
        let setup = SessionSetup::new("test", 16_000);
        let error = Reviewer::build(&setup, &config).unwrap_err().to_string();
        assert!(error.contains("reflection.max_rounds"), "{error}");
        let keyed = ReflectionConfig {
            max_rounds: 1,
            api_key_env: Some("X".into()),
            ..config
        };
        let error = Reviewer::build(&setup, &keyed).unwrap_err().to_string();
        assert!(
            error.contains("reflection.api_key_env needs reflection.base_url"),
            "{error}"
        );
    }
}
