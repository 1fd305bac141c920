//! Asking a model for a JSON answer: a malformed answer is sent back with
//! what was wrong, up to a number of attempts (as the evaluator does).

use crate::agent::eval::{JudgeModel, strip_fence};

/// A model's answers so far, and what it cost.
#[derive(Debug, Default)]
pub(super) struct Asked {
    /// Requests made.
    pub(super) calls: u64,
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
    ) -> Result<T, String> {
        let mut problem = String::from("no attempt made");
        for _ in 0..attempts.max(1) {
            self.calls += 1;
            match model.complete(&messages).await {
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
                Err(err) => {
                    problem = format!("{} unavailable: {err}", model.model());
                    if err.is_auth() {
                        break;
                    }
                }
            }
        }
        Err(problem)
    }

    /// Asks `model` for plain text (one attempt beyond the client's own
    /// retries).
    pub(super) async fn text(
        &mut self,
        model: &dyn JudgeModel,
        messages: &[(&str, String)],
    ) -> Result<String, String> {
        self.calls += 1;
        model
            .complete(messages)
            .await
            .map_err(|err| format!("{} unavailable: {err}", model.model()))
    }
}
