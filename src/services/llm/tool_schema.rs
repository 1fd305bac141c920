//! A tool call's arguments checked against the tool's JSON Schema.
//!
//! Validation is the `jsonschema` crate's (the draft picked from
//! `$schema`, 2020-12 when absent), built without its network and file
//! resolvers. A tool's schema is compiled once and kept, keyed by its
//! text, in a process-wide table: a text conversation builds its tools
//! anew for every message, and their schemas are the same each time. The
//! table holds at most [`MAX_SCHEMAS`] schemas (it starts again when full;
//! only a process whose MCP servers keep changing their tools would).
//!
//! A schema that does not compile is refused when the tool is made: an
//! HTTP or client tool, or one of the registry's, fails the build; an MCP
//! tool is left out. Should a call still reach one, it is refused, never
//! run unchecked.
//!
//! What is wrong is told to the model with the values it wrote (so it can
//! fix them); the logs get only where and which keyword, since arguments
//! carry personal data.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

/// Most schemas kept compiled.
const MAX_SCHEMAS: usize = 1_024;
/// Most validation errors told to the model.
const MAX_ERRORS_TOLD: usize = 8;

/// Arguments the tool's schema refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadArguments {
    /// For the model: what is wrong, values included.
    pub(crate) told: String,
    /// For the logs: where and which keyword, no values.
    pub(crate) places: String,
}

/// A schema as compiled, or why it could not be.
type Compiled = Result<Arc<jsonschema::Validator>, String>;

fn compiled(parameters: &Value) -> Compiled {
    static SCHEMAS: OnceLock<Mutex<HashMap<String, Compiled>>> = OnceLock::new();
    let key = parameters.to_string();
    let schemas = SCHEMAS.get_or_init(Mutex::default);
    if let Some(found) = schemas.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return found.clone();
    }
    let made = jsonschema::validator_for(parameters)
        .map(Arc::new)
        .map_err(|err| err.to_string());
    let mut schemas = schemas.lock().unwrap_or_else(|e| e.into_inner());
    if schemas.len() >= MAX_SCHEMAS {
        schemas.clear();
    }
    schemas.insert(key, made.clone());
    made
}

/// Whether `parameters` compiles as a JSON Schema; the error says why not.
/// (It is kept compiled for the calls.)
pub(crate) fn check_schema(parameters: &Value) -> Result<(), String> {
    compiled(parameters).map(|_| ())
}

/// Checks `arguments` against the tool's `parameters` schema.
pub(crate) fn validate_arguments(
    parameters: &Value,
    arguments: &Value,
) -> Result<(), BadArguments> {
    if !arguments.is_object() {
        return Err(BadArguments {
            told: "the arguments are not a JSON object".to_owned(),
            places: "/ (type)".to_owned(),
        });
    }
    let validator = compiled(parameters).map_err(|error| {
        tracing::warn!(%error, "a tool's parameters are not a valid JSON Schema; the call is refused");
        BadArguments {
            told: "the tool's parameters are not a valid JSON Schema, so it cannot be called"
                .to_owned(),
            places: "/ (schema)".to_owned(),
        }
    })?;
    let mut told = Vec::new();
    let mut places = Vec::new();
    for err in validator.iter_errors(arguments) {
        let at = err.instance_path().as_str();
        let at = if at.is_empty() { "/" } else { at };
        places.push(format!("{at} ({})", err.kind().keyword()));
        told.push(format!("{at}: {err}"));
    }
    if told.is_empty() {
        return Ok(());
    }
    let more = told.len().saturating_sub(MAX_ERRORS_TOLD);
    told.truncate(MAX_ERRORS_TOLD);
    let mut told = told.join("; ");
    if more > 0 {
        told.push_str(&format!("; and {more} more"));
    }
    Err(BadArguments {
        told: format!("the arguments do not match the tool's schema: {told}"),
        places: places.join(", "),
    })
}

/// Checks `arguments` against a JSON-schema `parameters` object (the whole
/// schema: types, enums, nested objects, `additionalProperties`, ...); the
/// error says what is wrong, for the model.
pub fn check_arguments(parameters: &Value, arguments: &Value) -> Result<(), String> {
    validate_arguments(parameters, arguments).map_err(|bad| bad.told)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "unit": {"enum": ["c", "f"]},
                "note": {"type": ["string", "null"]},
                "place": {
                    "type": "object",
                    "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90}},
                    "required": ["lat"]
                }
            },
            "required": ["city"],
            "additionalProperties": false
        })
    }

    #[test]
    fn good_arguments_pass() {
        let ok = json!({"city": "Oslo", "days": 3, "unit": "c", "note": null,
                        "place": {"lat": 59.9}});
        assert_eq!(check_arguments(&schema(), &ok), Ok(()));
        let note = json!({"city": "Oslo", "note": "windy"});
        assert_eq!(check_arguments(&schema(), &note), Ok(()));
    }

    #[test]
    fn the_whole_schema_is_checked() {
        let refused = |arguments: Value| check_arguments(&schema(), &arguments).unwrap_err();
        assert!(refused(json!({"days": 3})).contains("\"city\" is a required property"));
        assert!(refused(json!({"city": 3})).contains("/city"));
        assert!(refused(json!({"city": "a", "days": 1.5})).contains("/days"));
        let error = refused(json!({"city": "a", "unit": "kelvin"}));
        assert!(
            error.contains("/unit") && error.contains("kelvin"),
            "{error}"
        );
        let error = refused(json!({"city": "a", "place": {"lat": 200}}));
        assert!(error.contains("/place/lat"), "{error}");
        let error = refused(json!({"city": "a", "place": {}}));
        assert!(error.contains("/place") && error.contains("lat"), "{error}");
        let error = refused(json!({"city": "a", "extra": 1}));
        assert!(error.contains("extra"), "{error}");
        let error = refused(json!({"city": "a", "note": 4}));
        assert!(error.contains("/note"), "{error}");
        assert!(refused(json!([1])).contains("not a JSON object"));
    }

    #[test]
    fn the_logs_get_places_without_values() {
        let bad = validate_arguments(
            &schema(),
            &json!({"city": "+15551234567", "unit": "kelvin"}),
        )
        .unwrap_err();
        assert_eq!(bad.places, "/unit (enum)");
        assert!(!bad.places.contains("kelvin"));
    }

    #[test]
    fn an_invalid_schema_is_reported_and_its_calls_refused() {
        let broken = json!({"type": "object", "properties": {"a": {"type": "nonsense"}}});
        assert!(check_schema(&broken).is_err());
        assert_eq!(check_schema(&schema()), Ok(()));
        let refused = check_arguments(&broken, &json!({"a": 1})).unwrap_err();
        assert!(refused.contains("not a valid JSON Schema"), "{refused}");
        assert!(check_arguments(&broken, &json!("x")).is_err());
    }
}
