//! A model the LLM consults besides the one that answers (the router's
//! classifier, the reviewer): by default the LLM's own endpoint and model,
//! or its own `model`, and `base_url` with `api_key_env`.

use serde_json::{Value, json};

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
        })
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
