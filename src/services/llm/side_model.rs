//! A model the LLM consults besides the one that answers (the router's
//! classifier, the reviewer): by default the LLM's own endpoint and model,
//! or its own `model`, and `base_url` with `api_key_env`. Each of its
//! requests is bounded: `timeout_secs` (retries included) and, when set,
//! `max_tokens`, keys of the section (`[processor.router]`,
//! `[processor.reflection]`) checked as the file is read.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use crate::config::Seconds;
use crate::pipeline::{BuildError, SessionSetup};
use crate::services::ApiKey;
use crate::services::url::check_http_url;

use super::openai::OpenAiChat;
use super::wire::ChatWire;

/// Where a side request goes. See the module docs.
#[derive(Debug)]
pub(crate) struct SideModel {
    /// Its own endpoint; `None`: the LLM's.
    pub(crate) wire: Option<Box<dyn ChatWire>>,
    /// Its own model; `None`: the LLM's.
    pub(crate) model: Option<String>,
    /// The longest a request may take, retries included.
    pub(crate) limit: Duration,
    /// The longest answer, in tokens (`max_tokens`); `None`: the server's.
    pub(crate) max_tokens: Option<u32>,
    /// Set once the server refused `max_tokens`: later requests go
    /// without it rather than paying the refused round trip each turn.
    pub(crate) refuses_max_tokens: AtomicBool,
    /// Set once the server refused the temperature (reasoning models).
    pub(crate) refuses_temperature: AtomicBool,
}

/// The longest a side request takes by default, retries included: the
/// reply waits on it.
pub(crate) fn default_limit() -> Seconds<1, 120> {
    Seconds::from_millis(10_000)
}

/// The most tokens a side answer may be given.
const MAX_SIDE_TOKENS: u32 = 100_000;

/// A section's `max_tokens`: a whole number from 1 to [`MAX_SIDE_TOKENS`];
/// out of range, an error the file reader reports with file, line and key.
pub(crate) fn side_max_tokens<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u32>, D::Error> {
    // Read signed, so that a negative number gets the range too.
    let n = i64::deserialize(deserializer)?;
    match u32::try_from(n) {
        Ok(tokens) if (1..=MAX_SIDE_TOKENS).contains(&tokens) => Ok(Some(tokens)),
        _ => Err(serde::de::Error::custom(format!(
            "expected a whole number from 1 to {MAX_SIDE_TOKENS}, not {n}"
        ))),
    }
}

impl SideModel {
    /// The side model a section's `model`, `base_url` and `api_key_env`
    /// describe; `section` names it in errors.
    pub(crate) fn build(
        setup: &SessionSetup,
        section: &str,
        model: Option<&str>,
        base_url: Option<&str>,
        api_key_env: Option<&str>,
    ) -> Result<Self, BuildError> {
        let wire: Option<Box<dyn ChatWire>> = match base_url {
            Some(url) => {
                check_http_url(&format!("{section}.base_url"), url)?;
                let key = ApiKey::from_env(setup, &format!("{section}.api_key_env"), api_key_env)?;
                Some(Box::new(OpenAiChat::new(url, key)))
            }
            None if api_key_env.is_some() => {
                return Err(BuildError::Invalid(format!(
                    "{section}.api_key_env needs {section}.base_url (without it, the LLM's endpoint and key are used)"
                )));
            }
            None => None,
        };
        Ok(SideModel {
            wire,
            model: model.map(str::to_owned),
            limit: default_limit().duration(),
            max_tokens: None,
            refuses_max_tokens: AtomicBool::new(false),
            refuses_temperature: AtomicBool::new(false),
        })
    }

    /// The same, its requests bounded by `limit` and `max_tokens`.
    pub(crate) fn bounded(self, limit: Seconds<1, 120>, max_tokens: Option<u32>) -> Self {
        SideModel {
            limit: limit.duration(),
            max_tokens,
            ..self
        }
    }
}

/// A strict `json_schema` response format named `name`.
pub(crate) fn json_schema_format(name: &str, schema: Value) -> Value {
    json!({
        "type": "json_schema",
        "json_schema": {"name": name, "strict": true, "schema": schema}
    })
}

/// The JSON object in a model's answer: the whole answer, or the part
/// between its first `{` and last `}` (a model without structured outputs
/// may wrap it in prose or a code fence).
pub(crate) fn json_object(answer: &str) -> Option<serde_json::Map<String, Value>> {
    let answer = answer.trim();
    let parsed = serde_json::from_str::<Value>(answer).ok().or_else(|| {
        let start = answer.find('{')?;
        let end = answer.rfind('}')?;
        serde_json::from_str(answer.get(start..=end)?).ok()
    })?;
    match parsed {
        Value::Object(object) => Some(object),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_found_bare_or_wrapped() {
        assert_eq!(json_object(r#" {"a": 1} "#).unwrap()["a"], 1);
        assert_eq!(
            json_object("Sure:\n```json\n{\"a\": 2}\n```").unwrap()["a"],
            2
        );
        assert!(json_object("[1]").is_none());
        assert!(json_object("no json").is_none());
        assert!(json_object("} {").is_none());
    }
}
