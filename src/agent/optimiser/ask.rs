//! Asking a model for a JSON answer: a malformed answer is sent back with
//! what was wrong, up to a number of attempts (as the evaluator does). A
//! model that cannot be reached (after the client's own retries) ends the
//! asking at once with [`AskError::Unavailable`]: the optimisation is
//! deferred, not decided.

use std::fmt;

use crate::agent::eval::{JudgeModel, strip_fence, unavailable};

/// Why no usable answer came.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum AskError {
    /// Every attempt was malformed or refused; says what was wrong last.
    Unusable(String),
    /// The model is down or refuses the key: try the whole job later.
    Unavailable(String),
}

impl AskError {
    /// The same error, its text prefixed with `context`.
    pub(super) fn context(self, context: &str) -> AskError {
        match self {
            AskError::Unusable(p) => AskError::Unusable(format!("{context}: {p}")),
            AskError::Unavailable(p) => AskError::Unavailable(format!("{context}: {p}")),
        }
    }
}

impl fmt::Display for AskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AskError::Unusable(problem) | AskError::Unavailable(problem) => f.write_str(problem),
        }
    }
}

/// A model's answers so far, and what it cost.
#[derive(Debug, Default)]
pub(super) struct Asked {
    /// Requests made.
    pub(super) calls: u64,
    /// Requests a model answered (whatever the answer).
    pub(super) answered: u64,
}

impl Asked {
    /// Asks `model` until `parse` accepts its answer, at most `attempts`
    /// times; the error says what was wrong the last time.
    pub(super) async fn json<T>(
        &mut self,
        model: &dyn JudgeModel,
        mut messages: Vec<(&str, String)>,
        attempts: u32,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, AskError> {
        let mut problem = String::from("no attempt made");
        for _ in 0..attempts.max(1) {
            self.calls += 1;
            let answer = model.complete(&messages).await;
            self.answered += u64::from(answer.is_ok());
            match answer {
                Ok(answer) => match parse(strip_fence(answer.trim())) {
                    Ok(value) => return Ok(value),
                    Err(malformed) => {
                        problem = format!("malformed answer: {malformed}");
                        messages.push(("assistant", answer));
                        messages.push((
                            "user",
                            format!(
                                "That answer cannot be used: {malformed}. Answer again with only the JSON object."
                            ),
                        ));
                    }
                },
                Err(err) if unavailable(&err) => {
                    return Err(AskError::Unavailable(format!(
                        "{} unavailable: {err}",
                        model.model()
                    )));
                }
                Err(err) => problem = format!("{} refused the request: {err}", model.model()),
            }
        }
        Err(AskError::Unusable(problem))
    }

    /// Asks `model` for plain text (one attempt beyond the client's own
    /// retries).
    pub(super) async fn text(
        &mut self,
        model: &dyn JudgeModel,
        messages: &[(&str, String)],
    ) -> Result<String, AskError> {
        self.calls += 1;
        let answer = model.complete(messages).await;
        self.answered += u64::from(answer.is_ok());
        answer.map_err(|err| {
            let problem = format!("{} unavailable: {err}", model.model());
            if unavailable(&err) {
                AskError::Unavailable(problem)
            } else {
                AskError::Unusable(problem)
            }
        })
    }
}
