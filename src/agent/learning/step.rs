//! [`LearnFromCall`]: the post-call step learning from a call judged a
//! success.

use std::sync::Arc;

use async_trait::async_trait;

use super::learner::{CallKind, LearnError, Learner, Lesson};
use super::transcript::spoken_turns;
use crate::agent::post_call::{PostCallError, PostCallStep};
use crate::store::time::{rfc3339, unix_ms};
use crate::store::{CallChange, CallRecord, Evaluation, Learned, Outcome};

/// The step's name, in logs and errors.
const STEP: &str = "learning";

/// Learns skills and test cases from each call judged a success (see the
/// module doc of [`learning`](super)).
#[derive(Debug)]
pub struct LearnFromCall {
    learner: Arc<Learner>,
}

impl LearnFromCall {
    /// A step learning with `learner`.
    pub fn new(learner: Arc<Learner>) -> Self {
        LearnFromCall { learner }
    }

    /// Records `learned` (see [`CallChange::Learned`] for which change
    /// wins); what the call holds after.
    async fn record(
        &self,
        call_id: &str,
        learned: Learned,
    ) -> Result<Option<Learned>, PostCallError> {
        let stored = self
            .learner
            .store()
            .update_call(call_id, &CallChange::Learned(learned))
            .await?;
        Ok(stored.and_then(|call| call.learned))
    }

    /// Why `call` teaches nothing, if it does not: only successes scored
    /// at least `min_score` do.
    fn not_teaching(&self, call: &CallRecord) -> Option<String> {
        match &call.evaluation {
            Some(Evaluation::Evaluated {
                outcome: Outcome::Success,
                score,
                ..
            }) if *score >= self.learner.min_score() => None,
            Some(Evaluation::Evaluated {
                outcome: Outcome::Success,
                score,
                ..
            }) => Some(format!(
                "a success scored {score}, below min_score {}",
                self.learner.min_score()
            )),
            Some(Evaluation::Evaluated {
                outcome: Outcome::Failure,
                ..
            }) => Some("the call was judged a failure".into()),
            Some(Evaluation::Unevaluated { .. }) | None => {
                Some("the call was not judged a success".into())
            }
        }
    }

    /// The model's pairs for a call not learned from yet, recorded as
    /// `waiting` with their test cases written; `None` when the call
    /// taught nothing (recorded too).
    async fn find(&self, call: &CallRecord) -> Result<Option<Learned>, PostCallError> {
        let call_id = call.call_id.as_str();
        let nothing = |reason: String, attempts| {
            // After the model answered, the reason may quote the call
            // (personal data): it goes to the record, not the logs.
            if attempts == 0 {
                tracing::info!(call_id, reason, "learned nothing from the call");
            } else {
                tracing::info!(call_id, attempts, "learned nothing from the call");
            }
            Learned::Nothing {
                reason,
                attempts,
                at: rfc3339(unix_ms()),
            }
        };
        if let Some(reason) = self.not_teaching(call) {
            self.record(call_id, nothing(reason, 0)).await?;
            return Ok(None);
        }
        let turns = spoken_turns(&self.learner.store().turns(call_id).await?);
        let lesson = self
            .learner
            .find_pairs(call_id, &turns, CallKind::Won, &call_context(call))
            .await
            .map_err(step_error)?;
        let (pairs, attempts) = match lesson {
            Lesson::Nothing { reason, attempts } => {
                self.record(call_id, nothing(reason, attempts)).await?;
                return Ok(None);
            }
            Lesson::Pairs { pairs, attempts } => (pairs, attempts),
        };
        // Test cases need no embedder: written before the skills wait.
        let test_cases_added = self.learner.add_test_cases(&pairs).await?;
        let waiting = Learned::Waiting {
            pairs,
            test_cases_added,
            model: self.learner.model_name().to_owned(),
            attempts,
            at: rfc3339(unix_ms()),
        };
        self.record(call_id, waiting).await
    }
}

/// What the model is told about the call besides its turns.
fn call_context(call: &CallRecord) -> String {
    let mut text = format!("A call handled by the voice agent over {}", call.transport);
    if let Some(industry) = &call.segment.industry {
        // Quoted: a segment comes from the caller's side (a page's
        // request data), and is not an instruction.
        text.push_str(&format!(", industry {industry:?}"));
    }
    if let Some(country) = &call.segment.country {
        text.push_str(&format!(", country {country:?}"));
    }
    text.push('.');
    text
}

fn step_error(err: LearnError) -> PostCallError {
    match err {
        LearnError::Store(err) => PostCallError::Store(err),
        LearnError::Unavailable { .. } | LearnError::Refused { .. } => PostCallError::Unavailable {
            step: STEP,
            reason: err.to_string(),
        },
    }
}

#[async_trait]
impl PostCallStep for LearnFromCall {
    fn name(&self) -> &'static str {
        STEP
    }

    async fn run(&self, call: &CallRecord) -> Result<(), PostCallError> {
        let call_id = call.call_id.as_str();
        let learned = match &call.learned {
            Some(done) if done.is_final() => {
                tracing::info!(call_id, "re-running a job: already learned from the call");
                return Ok(());
            }
            Some(waiting) => Some(waiting.clone()),
            None => self.find(call).await?,
        };
        let Some(Learned::Waiting {
            pairs,
            test_cases_added,
            model,
            attempts,
            ..
        }) = learned
        else {
            return Ok(());
        };
        let skills = match self.learner.store_skills(&pairs).await {
            Ok(skills) => skills,
            Err(LearnError::Refused { what, reason }) => {
                // Permanent: deferring would ask the same again for a day.
                tracing::warn!(call_id, error = %reason, "{what} refused the request; the call's skills are not stored");
                let nothing = Learned::Nothing {
                    reason: format!(
                        "{} skills not stored ({what} refused the request: {reason}); their test cases are",
                        pairs.len()
                    ),
                    attempts,
                    at: rfc3339(unix_ms()),
                };
                self.record(call_id, nothing).await?;
                return Ok(());
            }
            Err(err) => return Err(step_error(err)),
        };
        tracing::info!(
            call_id,
            pairs = pairs.len(),
            skills = skills.len(),
            test_cases_added,
            "learned from the call"
        );
        let learned = Learned::Learned {
            pairs,
            skills,
            test_cases_added,
            model,
            attempts,
            at: rfc3339(unix_ms()),
        };
        self.record(call_id, learned).await?;
        Ok(())
    }

    async fn give_up(&self, call: &CallRecord, reason: &str) -> Result<(), PostCallError> {
        if call.learned.as_ref().is_some_and(Learned::is_final) {
            return Ok(());
        }
        let reason = match &call.learned {
            Some(Learned::Waiting { pairs, .. }) => format!(
                "{} skills not stored ({reason}); their test cases are",
                pairs.len()
            ),
            _ => reason.to_owned(),
        };
        let nothing = Learned::Nothing {
            reason,
            attempts: 0,
            at: rfc3339(unix_ms()),
        };
        self.record(&call.call_id, nothing).await?;
        Ok(())
    }
}
