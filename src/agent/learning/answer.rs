//! The model's answer: `{"pairs": [{"objection", "rebuttal", "target"}]}`,
//! checked against its JSON Schema (the extraction's validator), then for
//! what a schema sent in strict mode cannot say: texts not empty nor
//! overlong. The same objection listed twice is kept once; past `max_pairs`
//! the rest is dropped.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::agent::extraction::{ExtractionSchema, UnusableAnswer};
use crate::store::{LearnedPair, tactic_identity};

/// Longest objection, rebuttal or target kept, in characters.
const MAX_TEXT_CHARS: usize = 1_000;

/// The answer's JSON Schema (strict structured outputs: every property
/// required, no others).
pub fn pairs_schema() -> Value {
    let text = json!({"type": "string"});
    json!({
        "type": "object",
        "properties": {
            "pairs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"objection": text, "rebuttal": text, "target": text},
                    "required": ["objection", "rebuttal", "target"],
                    "additionalProperties": false
                }
            }
        },
        "required": ["pairs"],
        "additionalProperties": false
    })
}

/// The compiled schema and the limits of one answer.
#[derive(Debug, Clone)]
pub struct PairsAnswer {
    schema: ExtractionSchema,
    max_pairs: usize,
}

#[derive(Deserialize)]
struct Answer {
    pairs: Vec<LearnedPair>,
}

impl PairsAnswer {
    /// Answers keeping at most `max_pairs` pairs.
    pub fn new(max_pairs: usize) -> Self {
        let schema = match ExtractionSchema::compile(pairs_schema()) {
            Ok(schema) => schema,
            // The schema is a constant, checked by the tests below.
            Err(err) => unreachable!("the pairs schema is valid JSON Schema: {err}"),
        };
        PairsAnswer {
            schema,
            max_pairs: max_pairs.max(1),
        }
    }

    /// The schema sent to the model.
    pub fn schema(&self) -> &Value {
        self.schema.json()
    }

    /// The pairs in `answer` (trimmed, without repeats, at most
    /// `max_pairs`), or what is wrong with it.
    pub fn check(&self, answer: &str) -> Result<Vec<LearnedPair>, UnusableAnswer> {
        let data = self.schema.check(answer)?;
        let answer: Answer = serde_json::from_value(data).map_err(|err| UnusableAnswer {
            told: format!("the answer does not fit the schema ({err})"),
            places: "/pairs".into(),
        })?;
        let mut seen = Vec::new();
        let mut pairs = Vec::new();
        for (i, pair) in answer.pairs.into_iter().enumerate() {
            let pair = LearnedPair {
                objection: pair.objection.trim().to_owned(),
                rebuttal: pair.rebuttal.trim().to_owned(),
                target: pair.target.trim().to_owned(),
            };
            for (name, text) in [
                ("objection", &pair.objection),
                ("rebuttal", &pair.rebuttal),
                ("target", &pair.target),
            ] {
                let place = format!("/pairs/{i}/{name}");
                if text.is_empty() {
                    return Err(UnusableAnswer {
                        told: format!("{place} is empty"),
                        places: place,
                    });
                }
                if text.chars().count() > MAX_TEXT_CHARS {
                    return Err(UnusableAnswer {
                        told: format!("{place} is over {MAX_TEXT_CHARS} characters; be brief"),
                        places: place,
                    });
                }
            }
            let identity = tactic_identity(&pair.objection);
            if !seen.contains(&identity) && pairs.len() < self.max_pairs {
                seen.push(identity);
                pairs.push(pair);
            }
        }
        Ok(pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(objection: &str) -> Value {
        json!({"objection": objection, "rebuttal": "r", "target": "t"})
    }

    #[test]
    fn keeps_distinct_pairs_up_to_the_limit() {
        let answer = PairsAnswer::new(2);
        let text = json!({"pairs": [pair(" Too expensive "), pair("too  EXPENSIVE"), pair("No time"), pair("Busy")]});
        let pairs = answer.check(&text.to_string()).unwrap();
        let objections: Vec<_> = pairs.iter().map(|p| p.objection.as_str()).collect();
        assert_eq!(objections, ["Too expensive", "No time"]);
        assert!(answer.check(r#"{"pairs": []}"#).unwrap().is_empty());
    }

    #[test]
    fn says_what_is_wrong() {
        let answer = PairsAnswer::new(5);
        let err = answer.check("Here are the pairs").unwrap_err();
        assert!(err.told.starts_with("the answer is not JSON"), "{err:?}");
        let err = answer
            .check(r#"{"pairs": [{"objection": "x"}]}"#)
            .unwrap_err();
        assert!(err.told.contains("breaks the schema"), "{err:?}");
        let err = answer
            .check(&json!({"pairs": [pair("ok"), pair("  ")]}).to_string())
            .unwrap_err();
        assert_eq!(err.told, "/pairs/1/objection is empty");
    }
}
