//! The model that judges a call: an OpenAI-compatible chat completion that
//! must answer with one JSON object.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::http::{ApiEndpoint, JsonClient};
use crate::services::ServiceError;
use crate::store::{CallRecord, Interaction};

/// The judge's instructions when the TOML gives none.
pub const DEFAULT_JUDGE_PROMPT: &str = "\
You evaluate a recorded phone call between a voice agent (\"assistant\") and \
a customer (\"user\"). Decide whether the agent reached the goal of the call \
(for a sales call: the customer agreed to buy, book or take the next step).

Answer with one JSON object and nothing else:
{\"outcome\": \"success\" or \"failure\", \"score\": a number from 0 to 1 for \
how well the agent did, \"tactics\": [short phrases, one per tactic the agent \
used, e.g. \"anchor on ROI\"], \"reason\": one short sentence}";

/// A chat model asked for one answer (no streaming, no tools).
#[async_trait]
pub trait JudgeModel: Send + Sync {
    /// The model's name, recorded with each evaluation.
    fn model(&self) -> &str;

    /// The answer's text to `messages` (`(role, content)` pairs: `system`,
    /// `user`, `assistant`).
    async fn complete(&self, messages: &[(&str, String)]) -> Result<String, ServiceError>;
}

/// [`JudgeModel`] over `POST {base_url}/chat/completions`.
#[derive(Debug, Clone)]
pub struct OpenAiJudge {
    client: JsonClient,
    model: String,
    response_format: Option<serde_json::Value>,
}

impl OpenAiJudge {
    /// A judge using `model` at `endpoint`. With `json_mode`, requests carry
    /// `response_format: {"type": "json_object"}` (OpenAI, vLLM, llama.cpp
    /// support it; turn it off for servers that reject it).
    pub fn new(endpoint: ApiEndpoint, model: &str, json_mode: bool) -> Self {
        let format = json_mode.then(|| json!({"type": "json_object"}));
        OpenAiJudge::with_response_format(endpoint, model, format)
    }

    /// A model whose requests carry `response_format` as given (e.g. a
    /// `json_schema` format), or none.
    pub fn with_response_format(
        endpoint: ApiEndpoint,
        model: &str,
        response_format: Option<serde_json::Value>,
    ) -> Self {
        OpenAiJudge {
            client: JsonClient::new(endpoint),
            model: model.to_owned(),
            response_format,
        }
    }
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    message: AnswerMessage,
}

#[derive(Deserialize)]
struct AnswerMessage {
    #[serde(default)]
    content: Option<String>,
}

#[async_trait]
impl JudgeModel for OpenAiJudge {
    fn model(&self) -> &str {
        &self.model
    }

    async fn complete(&self, messages: &[(&str, String)]) -> Result<String, ServiceError> {
        let messages: Vec<_> = messages
            .iter()
            .map(|(role, content)| json!({"role": role, "content": content}))
            .collect();
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "temperature": 0,
            "stream": false,
        });
        if let Some(format) = &self.response_format {
            body["response_format"] = format.clone();
        }
        let completion: Completion = self.client.post("chat/completions", &body).await?;
        completion
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .ok_or_else(|| {
                ServiceError::Protocol("chat/completions: no choices[0].message.content".into())
            })
    }
}

/// The transcript as the judge reads it.
pub fn render_transcript(call: &CallRecord, turns: &[Interaction]) -> String {
    let mut text = format!("Call {} over {}", call.call_id, call.transport);
    if let Some(industry) = &call.segment.industry {
        text.push_str(&format!(", industry {industry}"));
    }
    if let Some(country) = &call.segment.country {
        text.push_str(&format!(", country {country}"));
    }
    if let Some(reason) = &call.end_reason {
        text.push_str(&format!(", ended by {reason}"));
    }
    text.push_str(".\n\n");
    for turn in turns {
        let role = turn.speaker();
        if !turn.text.is_empty() {
            text.push_str(&format!("{role}: {}", turn.text));
            if turn.interrupted {
                text.push_str(" [cut off by the user]");
            }
            text.push('\n');
        }
        for call in &turn.tool_calls {
            text.push_str(&format!("{role} calls {}({})\n", call.name, call.arguments));
        }
    }
    text
}
