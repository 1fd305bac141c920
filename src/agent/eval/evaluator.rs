//! Judging one call and writing what the refinement loop learns from it.
//!
//! 1. The verdict: the judge reads the transcript and answers strict JSON;
//!    a malformed answer is sent back with what was wrong, up to
//!    `max_attempts` times, after which the call is recorded as
//!    unevaluated. A judge that cannot be reached (transport errors, 429
//!    and 5xx after the client's retries, refused credentials) records
//!    nothing: the job fails with [`EvalError::JudgeUnavailable`] and runs
//!    again later, like a post-call step whose service is down. The verdict goes into `call:{id}` (outcome, score and the
//!    full evaluation) *first*, so a re-run of the same job (a crashed
//!    worker's, reclaimed) reuses it instead of asking the judge again.
//!    The first verdict stored stays (unless a fresh one was asked for):
//!    of two workers judging one call at once, both go on with the verdict
//!    the store kept, so its tactics land in one list only.
//! 2. The tactics: `session:{id}:tactics` is replaced with the tactics the
//!    judge saw (24 h TTL), and they are merged without repeats into
//!    `agent:winning_tactics` on success or `agent:failed_tactics` on
//!    failure, phone numbers and e-mail addresses redacted, the call noted
//!    among those that named each tactic (`tactic_min_calls`). `agent:tactics` is never written.
//! 3. The post-call steps ([`PostCallStep`]) run, in order, on the call as
//!    stored after the verdict.
//! 4. The call-completed webhook, if configured, is queued.
//!
//! Every write is idempotent, so running the same job twice changes
//! nothing the first run did not.
//!
//! Without a judge (no `[evaluator]`, but post-call steps such as
//! `[extraction]`) the same job runs steps 3 and 4 only: the job queue, its
//! reclaiming and its give-up are what make the steps durable, so they are
//! not tied to judging.

use std::sync::Arc;

use super::http::unavailable;
use super::judge::{JudgeModel, render_transcript};
use super::verdict::Verdict;
use crate::agent::post_call::{PostCallError, PostCallStep};
use crate::agent::redact::redact_contacts;
use crate::agent::webhook::{WebhookSettings, queue_call_completed};
use crate::store::time::{rfc3339, unix_ms};
use crate::store::{CallChange, CallRecord, Evaluation, Interaction, Outcome, TacticsList};
use crate::store::{Enqueued, Store, StoreError};

/// How the evaluator asks and what it does after.
#[derive(Debug, Clone)]
pub struct EvaluatorSettings {
    /// The judge's system prompt.
    pub prompt: String,
    /// Answers asked for before a call is recorded as unevaluated.
    pub max_attempts: u32,
    /// What else runs for a completed call, after the verdict and before
    /// the webhook.
    pub steps: Vec<Arc<dyn PostCallStep>>,
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
    /// A post-call step could not finish; the job can be run again later.
    #[error(transparent)]
    PostCall(PostCallError),
    /// The judge could not be reached; nothing was recorded and the job can
    /// be run again later (a deferral, as for a post-call step).
    #[error("judge unavailable: {0}")]
    JudgeUnavailable(String),
    /// Asked to judge, with no judge configured.
    #[error("no judge is configured ([evaluator] is off)")]
    NoJudge,
    /// Another worker holds the job now (this one was taken for dead): the
    /// run here stopped, the job neither acknowledged nor deleted.
    #[error("job {0} is held by another worker now; stopped here, left to it")]
    ClaimLost(String),
}

impl From<PostCallError> for EvalError {
    fn from(err: PostCallError) -> Self {
        match err {
            PostCallError::Store(err) => EvalError::Store(err),
            other => EvalError::PostCall(other),
        }
    }
}

/// Judges calls and records the results, then runs the post-call steps:
/// the work of one evaluation job.
pub struct Evaluator {
    store: Arc<dyn Store>,
    judge: Option<Arc<dyn JudgeModel>>,
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
            judge: Some(judge),
            settings,
        }
    }

    /// A job runner with no judge: completed calls go through the post-call
    /// steps and the webhook only (`prompt` and `max_attempts` are unused).
    pub fn without_judge(store: Arc<dyn Store>, settings: EvaluatorSettings) -> Self {
        Evaluator {
            store,
            judge: None,
            settings,
        }
    }

    /// Whether calls are judged (else the job only runs the post-call steps
    /// and queues the webhook).
    pub fn judges(&self) -> bool {
        self.judge.is_some()
    }

    /// Runs the evaluation job of `call_id`: the verdict (reused if stored)
    /// when there is a judge, the post-call steps, the webhook.
    pub async fn run_job(&self, call_id: &str) -> Result<(), EvalError> {
        if self.judge.is_some() {
            return self.evaluate(call_id, false).await.map(|_| ());
        }
        if self.store.call(call_id).await?.is_none() {
            return Err(EvalError::UnknownCall(call_id.to_owned()));
        }
        self.finish(call_id, None, None).await
    }

    /// Evaluates `call_id` and records the result. With `fresh` the judge is
    /// asked even if the call already has an evaluation (`voxpipe
    /// evaluate`); otherwise a stored evaluation is reused.
    pub async fn evaluate(&self, call_id: &str, fresh: bool) -> Result<Evaluation, EvalError> {
        let Some(judge) = &self.judge else {
            return Err(EvalError::NoJudge);
        };
        let record = self
            .store
            .call(call_id)
            .await?
            .ok_or_else(|| EvalError::UnknownCall(call_id.to_owned()))?;
        // A call judged again has a new verdict: a new webhook event, named
        // by the verdict's time, since the first one's id stays delivered.
        let mut revision = None;
        // A verdict asked for afresh on a call with none stored: its event
        // is the call's first unless that went out already (a webhook sent
        // before any judge ran), then a new one.
        let mut if_delivered = None;
        let evaluation = match (&record.evaluation, fresh) {
            (Some(stored), false) => {
                tracing::info!(call_id, "re-running a job: reusing the stored verdict");
                stored.clone()
            }
            (stored, _) => {
                let turns = self.store.turns(call_id).await?;
                let judged = self.judge(&**judge, &record, &turns).await?;
                let change = if fresh {
                    CallChange::Reevaluated(judged.clone())
                } else {
                    CallChange::Evaluated(judged.clone())
                };
                // What is stored is what counts: another worker running
                // the same job may have stored its verdict first, and
                // then that one is kept, its tactics merged and the
                // post-call steps run on it (by both workers alike).
                let evaluation = self
                    .store
                    .update_call(call_id, &change)
                    .await?
                    .and_then(|stored| stored.evaluation)
                    .ok_or_else(|| EvalError::UnknownCall(call_id.to_owned()))?;
                if evaluation != judged {
                    tracing::info!(
                        call_id,
                        "another run stored its verdict first; continuing with that one"
                    );
                } else if stored.is_some() {
                    revision = Some(evaluation.at().to_owned());
                } else if fresh {
                    if_delivered = Some(evaluation.at().to_owned());
                }
                evaluation
            }
        };
        self.record_tactics(call_id, &evaluation).await?;
        self.finish(call_id, revision.as_deref(), if_delivered.as_deref())
            .await?;
        Ok(evaluation)
    }

    /// The job's last part: the post-call steps, then the webhook (a new
    /// event when `revision` names a new verdict, or when the call's event
    /// was delivered already and `if_delivered` names one).
    async fn finish(
        &self,
        call_id: &str,
        revision: Option<&str>,
        if_delivered: Option<&str>,
    ) -> Result<(), EvalError> {
        self.run_steps(call_id).await?;
        if let Some(webhook) = &self.settings.webhook {
            let enqueued = queue_call_completed(&*self.store, webhook, call_id, revision).await?;
            if let (Enqueued::Delivered, Some(revision)) = (enqueued, if_delivered) {
                queue_call_completed(&*self.store, webhook, call_id, Some(revision)).await?;
            }
        }
        Ok(())
    }

    /// Records `call_id` as unevaluated for `reason` (unless it already has
    /// an evaluation) and queues its webhook. A verdict already stored has
    /// its tactics merged (a run that stored it may have died before
    /// merging; merging is idempotent, the lists never hold a tactic
    /// twice), so giving up never loses what a judged call taught.
    pub async fn give_up(&self, call_id: &str, reason: &str) -> Result<(), EvalError> {
        let Some(record) = self.store.call(call_id).await? else {
            return Ok(());
        };
        if self.judge.is_some() {
            match &record.evaluation {
                None => {
                    let evaluation = Evaluation::Unevaluated {
                        reason: reason.to_owned(),
                        at: rfc3339(unix_ms()),
                    };
                    self.store
                        .update_call(call_id, &CallChange::Evaluated(evaluation))
                        .await?;
                }
                Some(evaluation) => self.record_tactics(call_id, evaluation).await?,
            }
        }
        for step in &self.settings.steps {
            step.give_up(&record, reason).await?;
        }
        if let Some(webhook) = &self.settings.webhook {
            queue_call_completed(&*self.store, webhook, call_id, None).await?;
        }
        Ok(())
    }

    /// Runs the post-call steps on the call as stored now.
    async fn run_steps(&self, call_id: &str) -> Result<(), EvalError> {
        for step in &self.settings.steps {
            let record = self
                .store
                .call(call_id)
                .await?
                .ok_or_else(|| EvalError::UnknownCall(call_id.to_owned()))?;
            if let Err(err) = step.run(&record).await {
                tracing::warn!(call_id, step = step.name(), error = %err, "post-call step failed; the job will run again");
                return Err(err.into());
            }
        }
        Ok(())
    }

    async fn judge(
        &self,
        judge: &dyn JudgeModel,
        record: &CallRecord,
        turns: &[Interaction],
    ) -> Result<Evaluation, EvalError> {
        let call_id = &record.call_id;
        let unevaluated = |reason: String| {
            tracing::warn!(call_id, reason, "call recorded as unevaluated");
            Evaluation::Unevaluated {
                reason,
                at: rfc3339(unix_ms()),
            }
        };
        if turns.is_empty() {
            return Ok(unevaluated("the call has no transcript".into()));
        }
        let mut messages = vec![
            ("system", self.settings.prompt.clone()),
            ("user", render_transcript(record, turns)),
        ];
        let attempts = self.settings.max_attempts.max(1);
        let mut problem = String::new();
        for attempt in 1..=attempts {
            match judge.complete(&messages).await {
                Ok(answer) => match Verdict::parse(&answer) {
                    Ok(verdict) => {
                        tracing::info!(
                            call_id,
                            outcome = verdict.outcome.as_str(),
                            score = verdict.score,
                            attempt,
                            "call evaluated"
                        );
                        return Ok(Evaluation::Evaluated {
                            outcome: verdict.outcome,
                            score: verdict.score,
                            tactics: verdict.tactics,
                            reason: verdict.reason,
                            model: judge.model().to_owned(),
                            at: rfc3339(unix_ms()),
                        });
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
                // Down (after the client's own retries) or refusing the
                // key: not the call's fault, so nothing is recorded and
                // the job runs again later.
                Err(err) if unavailable(&err) => {
                    tracing::warn!(call_id, attempt, error = %err, "judge unavailable; the job will run again");
                    return Err(EvalError::JudgeUnavailable(err.to_string()));
                }
                Err(err) => {
                    tracing::warn!(call_id, attempt, error = %err, "judge request refused");
                    problem = format!("the judge refused the request: {err}");
                }
            }
        }
        Ok(unevaluated(format!(
            "no usable verdict after {attempts} attempts ({problem})"
        )))
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
        // The judge's tactics come from what was said on the call: no
        // caller's number or address goes into the lists (and from there
        // into every later prompt).
        let tactics: Vec<String> = tactics.iter().map(|t| redact_contacts(t)).collect();
        self.store.set_session_tactics(call_id, &tactics).await?;
        let list = match outcome {
            Outcome::Success => TacticsList::Winning,
            Outcome::Failure => TacticsList::Failed,
        };
        let added = self.store.add_call_tactics(list, call_id, &tactics).await?;
        tracing::info!(call_id, list = list.key_name(), added, "tactics merged");
        Ok(())
    }
}
