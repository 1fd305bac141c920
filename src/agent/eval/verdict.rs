//! The judge's answer, checked strictly: one JSON object with `outcome`
//! (`success` or `failure`), `score` (0 to 1), `tactics` (strings) and
//! `reason` (a string). Anything else is malformed, and the evaluator asks
//! again, telling the model what was wrong.

use serde::Deserialize;

use crate::store::{MAX_TACTICS_PER_CALL, Outcome, bounded_tactics};

/// A well-formed judgement.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Success or failure.
    pub outcome: Outcome,
    /// 0 to 1.
    pub score: f64,
    /// One line each (control characters removed, at most
    /// [`crate::store::MAX_TACTIC_CHARS`] characters), without repeats, at
    /// most [`MAX_TACTICS_PER_CALL`].
    pub tactics: Vec<String>,
    /// At most 500 characters.
    pub reason: String,
}

/// Why an answer is not a verdict (said back to the model on retry).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedVerdict(pub String);

#[derive(Deserialize)]
struct Raw {
    outcome: String,
    score: f64,
    tactics: Vec<String>,
    reason: String,
}

const MAX_REASON_CHARS: usize = 500;

impl Verdict {
    /// Reads the model's answer. A single Markdown code fence around the
    /// object is tolerated (models add one even in JSON mode); nothing else.
    pub fn parse(answer: &str) -> Result<Verdict, MalformedVerdict> {
        let json = strip_fence(answer.trim());
        let raw: Raw = serde_json::from_str(json).map_err(|err| {
            MalformedVerdict(format!(
                "not the JSON object asked for ({err}); answer with exactly \
                 {{\"outcome\": \"success\"|\"failure\", \"score\": 0..1, \"tactics\": [..], \"reason\": \"..\"}}"
            ))
        })?;
        let outcome = match raw.outcome.trim().to_ascii_lowercase().as_str() {
            "success" => Outcome::Success,
            "failure" => Outcome::Failure,
            other => {
                return Err(MalformedVerdict(format!(
                    "`outcome` is {other:?}; it must be \"success\" or \"failure\""
                )));
            }
        };
        if !(0.0..=1.0).contains(&raw.score) {
            return Err(MalformedVerdict(format!(
                "`score` is {}; it must be between 0 and 1",
                raw.score
            )));
        }
        Ok(Verdict {
            outcome,
            score: raw.score,
            tactics: bounded_tactics(&raw.tactics, MAX_TACTICS_PER_CALL),
            reason: raw.reason.trim().chars().take(MAX_REASON_CHARS).collect(),
        })
    }
}

/// `text` without one Markdown code fence around it, if it has one.
pub(crate) fn strip_fence(text: &str) -> &str {
    let Some(body) = text.strip_prefix("```") else {
        return text;
    };
    let body = body.strip_prefix("json").unwrap_or(body);
    body.strip_suffix("```").unwrap_or(body).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_object_and_a_fenced_object() {
        let v = Verdict::parse(
            r#"{"outcome":"success","score":0.8,"tactics":["Anchor high"," anchor high",""],"reason":"Booked."}"#,
        )
        .unwrap();
        assert_eq!(v.outcome, Outcome::Success);
        assert_eq!(v.tactics, ["Anchor high"]);
        let fenced =
            "```json\n{\"outcome\":\"Failure\",\"score\":0,\"tactics\":[],\"reason\":\"no\"}\n```";
        assert_eq!(Verdict::parse(fenced).unwrap().outcome, Outcome::Failure);
    }

    #[test]
    fn rejects_what_is_not_strictly_a_verdict() {
        for bad in [
            "Success!",
            r#"{"outcome":"success","score":0.8,"tactics":[]}"#,
            r#"{"outcome":"maybe","score":0.8,"tactics":[],"reason":""}"#,
            r#"{"outcome":"success","score":1.5,"tactics":[],"reason":""}"#,
            r#"{"outcome":"success","score":"high","tactics":[],"reason":""}"#,
            r#"Here you go: {"outcome":"success","score":1,"tactics":[],"reason":""}"#,
        ] {
            assert!(Verdict::parse(bad).is_err(), "{bad}");
        }
    }
}
