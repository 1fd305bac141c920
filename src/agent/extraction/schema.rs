//! The extraction schema, compiled once at load, and the check of a model's
//! answer against it.
//!
//! Validation is the `jsonschema` crate's (drafts 4 to 2020-12, the draft
//! picked from `$schema`, 2020-12 when absent); the schema itself is checked
//! against its meta-schema when compiled, so a schema that is not valid JSON
//! Schema is an error at load, not at the end of the first call. Built
//! without the crate's network and file resolvers: a `$ref` to anything
//! outside the schema is an error at load too.

use std::sync::Arc;

use serde_json::Value;

use crate::agent::eval::strip_fence;

/// Most validation errors said back to the model on retry (and kept in an
/// unextracted reason): enough to fix an answer, short enough to read.
const MAX_ERRORS_TOLD: usize = 8;

/// A compiled JSON Schema.
#[derive(Clone)]
pub struct ExtractionSchema {
    json: Arc<Value>,
    validator: Arc<jsonschema::Validator>,
}

impl std::fmt::Debug for ExtractionSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtractionSchema")
            .field("json", &self.json)
            .finish_non_exhaustive()
    }
}

impl ExtractionSchema {
    /// Compiles `json`; the error says why it is not a usable JSON Schema.
    pub fn compile(json: Value) -> Result<Self, String> {
        if !json.is_object() {
            return Err("a JSON Schema for an extraction must be an object".into());
        }
        // Checked against the meta-schema: the error's instance is the
        // schema, so its instance path says where in the schema it is.
        let validator = jsonschema::validator_for(&json).map_err(|err| {
            let at = err.instance_path().as_str();
            if at.is_empty() {
                format!("not a valid JSON Schema: {err}")
            } else {
                format!("not a valid JSON Schema: {err} (at {at})")
            }
        })?;
        Ok(ExtractionSchema {
            json: Arc::new(json),
            validator: Arc::new(validator),
        })
    }

    /// The schema as written.
    pub fn json(&self) -> &Value {
        &self.json
    }

    /// The JSON object in `answer` (one Markdown fence around it is
    /// tolerated), if the schema accepts it; else what is wrong.
    pub fn check(&self, answer: &str) -> Result<Value, UnusableAnswer> {
        let data: Value =
            serde_json::from_str(strip_fence(answer.trim())).map_err(|err| UnusableAnswer {
                told: format!("the answer is not JSON ({err})"),
                places: "not JSON".into(),
            })?;
        let mut told = Vec::new();
        let mut places = Vec::new();
        for err in self.validator.iter_errors(&data) {
            let at = err.instance_path().as_str();
            let at = if at.is_empty() { "/" } else { at };
            places.push(format!("{at} ({})", err.kind().keyword()));
            told.push(format!("{at}: {err}"));
        }
        if told.is_empty() {
            return Ok(data);
        }
        let more = told.len().saturating_sub(MAX_ERRORS_TOLD);
        told.truncate(MAX_ERRORS_TOLD);
        let mut told = told.join("; ");
        if more > 0 {
            told.push_str(&format!("; and {more} more"));
        }
        Err(UnusableAnswer {
            told: format!("the answer breaks the schema: {told}"),
            places: places.join(", "),
        })
    }
}

/// Why an answer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnusableAnswer {
    /// In words the model can act on (said back to it, and kept as the
    /// unextracted reason). It may quote the answer's values.
    pub told: String,
    /// Where the answer broke the schema and which keyword, without its
    /// values: what the logs show (answers carry personal data).
    pub places: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> ExtractionSchema {
        ExtractionSchema::compile(json!({
            "type": "object",
            "properties": {"name": {"type": "string"}, "score": {"type": "number", "maximum": 10}},
            "required": ["name", "score"],
            "additionalProperties": false
        }))
        .unwrap()
    }

    #[test]
    fn accepts_a_valid_answer_fenced_or_not() {
        let s = schema();
        assert_eq!(
            s.check(r#"{"name": "Ann", "score": 2}"#).unwrap()["name"],
            "Ann"
        );
        assert!(
            s.check("```json\n{\"name\": \"Ann\", \"score\": 2}\n```")
                .is_ok()
        );
    }

    #[test]
    fn says_where_an_answer_breaks_the_schema() {
        let s = schema();
        let err = s.check(r#"{"name": 3, "score": 11}"#).unwrap_err();
        assert!(
            err.told.starts_with("the answer breaks the schema"),
            "{err:?}"
        );
        assert!(err.told.contains("/name: 3 is not of type"), "{err:?}");
        assert!(err.told.contains("/score"), "{err:?}");
        assert_eq!(err.places, "/name (type), /score (maximum)");
        let err = s.check("Sure! Here it is").unwrap_err();
        assert!(err.told.starts_with("the answer is not JSON"), "{err:?}");
    }

    #[test]
    fn refuses_a_schema_that_is_not_json_schema() {
        let err = ExtractionSchema::compile(json!({"type": "strnig"})).unwrap_err();
        assert!(err.starts_with("not a valid JSON Schema"), "{err}");
        let err =
            ExtractionSchema::compile(json!({"properties": {"a": {"minimum": "x"}}})).unwrap_err();
        assert!(err.contains("not a valid JSON Schema"), "{err}");
        assert!(ExtractionSchema::compile(json!([1])).is_err());
    }
}
