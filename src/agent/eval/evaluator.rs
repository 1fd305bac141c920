//! Judging one call and writing what the refinement loop learns from it.
//!
//! 1. The verdict: the judge reads the transcript and answers strict JSON;
//!    a malformed answer is sent back with what was wrong, up to
//!    `max_attempts` times, after which the call is recorded as
//!    unevaluated. The verdict goes into `call:{id}` (outcome, score and the
//!    full evaluation) *first*, so a re-run of the same job (a crashed
//!    worker's, reclaimed) reuses it instead of asking the judge again.
//! 2. The tactics: `session:{id}:tactics` is replaced with the tactics the
//!    judge saw (24 h TTL), and they are merged without repeats into
//!    `agent:winning_tactics` on success or `agent:failed_tactics` on
//!    failure. `agent:tactics` is never written.
//! 3. The call-completed webhook, if configured, is queued.
//!
//! Every write is idempotent, so running the same job twice changes
//! nothing the first run did not.

use std::sync::Arc;

use super::judge::{JudgeModel, render_transcript};
use super::verdict::Verdict;
use crate::agent::webhook::{WebhookSettings, queue_call_completed};
use crate::store::time::{rfc3339, unix_ms};
use crate::store::{CallChange, CallRecord, Evaluation, Interaction, Outcome, TacticsList};
use crate::store::{Store, StoreError};

/// How the evaluator asks and what it does after.
#[derive(Debug, Clone)]
pub struct EvaluatorSettings {
    /// The judge's system prompt.
    pub prompt: String,
    /// Answers asked for before a call is recorded as unevaluated.
    pub max_attempts: u32,
    /// The webhook to queue once a call is evaluated.
    pub webhook: Option<Arc<WebhookSettings>>,
}

/// An evaluation could not be recorded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// The call is not in the store (never written, or expired).
    #[error("no call {0} in the store")]
    UnknownCall(String),
    /// The store failed; the evaluation can be run again later.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Judges calls and records the results.
pub struct Evaluator {
    store: Arc<dyn Store>,
    judge: Arc<dyn JudgeModel>,
    settings: EvaluatorSettings,
}

impl Evaluator {
    /// An evaluator writing to `store`.
    pub fn new(
        store: Arc<dyn Store>,
        judge: Arc<dyn JudgeModel>,
        settings: EvaluatorSettings,
    ) -> Self {
        Evaluator {
            store,
            judge,
            settings,
        }
    }

    /// Evaluates `call_id` and records the result. With `fresh` the judge is
    /// asked even if the call already has an evaluation (`voxpipe
    /// evaluate`); otherwise a stored evaluation is reused.
    pub async fn evaluate(&self, call_id: &str, fresh: bool) -> Result<Evaluation, EvalError> {
        let record = self
            .store
            .call(call_id)
            .await?
            .ok_or_else(|| EvalError::UnknownCall(call_id.to_owned()))?;
        let evaluation = match (&record.evaluation, fresh) {
            (Some(stored), false) => {
                tracing::info!(call_id, "re-running a job: reusing the stored verdict");
                stored.clone()
            }
            _ => {
                let turns = self.store.turns(call_id).await?;
                let evaluation = self.judge(&record, &turns).await;
                self.store
                    .update_call(call_id, &CallChange::Evaluated(evaluation.clone()))
                    .await?;
                evaluation
            }
        };
        self.record_tactics(call_id, &evaluation).await?;
        if let Some(webhook) = &self.settings.webhook {
            queue_call_completed(&*self.store, webhook, call_id).await?;
        }
        Ok(evaluation)
    }

    /// Records `call_id` as unevaluated for `reason` (unless it already has
    /// an evaluation) and queues its webhook.
    pub async fn give_up(&self, call_id: &str, reason: &str) -> Result<(), EvalError> {
        let record = self.store.call(call_id).await?;
        if record.as_ref().is_some_and(|r| r.evaluation.is_none()) {
            let evaluation = Evaluation::Unevaluated {
                reason: reason.to_owned(),
                at: rfc3339(unix_ms()),
            };
            self.store
                .update_call(call_id, &CallChange::Evaluated(evaluation))
                .await?;
        }
        if let (Some(webhook), Some(_)) = (&self.settings.webhook, record) {
            queue_call_completed(&*self.store, webhook, call_id).await?;
        }
        Ok(())
    }

    async fn judge(&self, record: &CallRecord, turns: &[Interaction]) -> Evaluation {
        let call_id = &record.call_id;
        let unevaluated = |reason: String| {
            tracing::warn!(call_id, reason, "call recorded as unevaluated");
            Evaluation::Unevaluated {
                reason,
                at: rfc3339(unix_ms()),
            }
        };
        if turns.is_empty() {
            return unevaluated("the call has no transcript".into());
        }
        let mut messages = vec![
            ("system", self.settings.prompt.clone()),
            ("user", render_transcript(record, turns)),
        ];
        let attempts = self.settings.max_attempts.max(1);
        let mut problem = String::new();
        for attempt in 1..=attempts {
            match self.judge.complete(&messages).await {
                Ok(answer) => match Verdict::parse(&answer) {
                    Ok(verdict) => {
                        tracing::info!(
                            call_id,
                            outcome = verdict.outcome.as_str(),
                            score = verdict.score,
                            attempt,
                            "call evaluated"
                        );
                        return Evaluation::Evaluated {
                            outcome: verdict.outcome,
                            score: verdict.score,
                            tactics: verdict.tactics,
                            reason: verdict.reason,
                            model: self.judge.model().to_owned(),
                            at: rfc3339(unix_ms()),
                        };
                    }
                    Err(malformed) => {
                        tracing::warn!(call_id, attempt, error = %malformed, "malformed verdict");
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
                    tracing::warn!(call_id, attempt, error = %err, "judge request failed");
                    problem = format!("judge unavailable: {err}");
                    // Refused credentials stay refused; anything else
                    // (after the client's own retries) is asked again.
                    if err.is_auth() {
                        break;
                    }
                }
            }
        }
        unevaluated(format!(
            "no usable verdict after {attempts} attempts ({problem})"
        ))
    }

    async fn record_tactics(
        &self,
        call_id: &str,
        evaluation: &Evaluation,
    ) -> Result<(), StoreError> {
        let Evaluation::Evaluated {
            outcome, tactics, ..
        } = evaluation
        else {
            return Ok(());
        };
        self.store.set_session_tactics(call_id, tactics).await?;
        let list = match outcome {
            Outcome::Success => TacticsList::Winning,
            Outcome::Failure => TacticsList::Failed,
        };
        let added = self.store.add_tactics(list, tactics).await?;
        tracing::info!(call_id, list = list.key_name(), added, "tactics merged");
        Ok(())
    }
}
