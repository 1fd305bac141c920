//! [`OptimiserStep`]: the post-call step that optimises the prompt of a
//! failed call's segment.
//!
//! It runs inside the evaluation job, so it is at least once and taken
//! over from a crashed worker; it is idempotent because the optimisation's
//! id is the call's: a stored trace `optimisation:{call_id}` means it is
//! done. A deployment writes the live key, the version counter and the
//! history entry in one atomic compare-and-set; the trace goes with them
//! in the memory store, but on Redis it lives in another slot and is
//! written just after. A run that stopped between the two is finished by
//! the next one: a history entry naming this optimisation means it is
//! deployed, and its trace is rebuilt from the entry instead of
//! optimising (and deploying) again. A permanent
//! failure (no usable candidate, a judge that never answers in JSON) is
//! recorded in the trace and the step succeeds; a store error, or a model
//! that cannot be reached (the writer, the agent's model, the case judge),
//! makes the job run again ([`PostCallError::Unavailable`]): nothing is
//! recorded and the failures it would act on are kept.

use std::sync::Arc;

use async_trait::async_trait;

use super::ask::{AskError, Asked};
use super::candidate;
use super::config::OptimiserSection;
use super::decision::{Verdict, decide};
use super::metrics::OptimiserMetrics;
use super::scoring::Scorer;
use crate::agent::eval::{JudgeModel, render_transcript};
use crate::agent::post_call::{PostCallError, PostCallStep};
use crate::store::time::{rfc3339, unix_ms};
use crate::store::{
    CallChange, CallRecord, Decision, Deployed, Evaluation, OptimisationTrace, Outcome, PromptKey,
    PromptScores, PromptVersion, Store, StoreError, TestCase,
};

/// The rate limits' window.
const HOUR_MS: u64 = 3_600_000;

/// Runs of one optimisation that may be cut short by a model after another
/// had answered (each wrote, and maybe scored, a candidate on the same
/// slot) before it is given up and recorded as skipped.
pub(super) const MAX_CUT_SHORT_ATTEMPTS: u64 = 5;

/// The models the optimiser asks.
#[derive(Clone)]
pub struct OptimiserModels {
    /// Writes candidates.
    pub writer: Arc<dyn JudgeModel>,
    /// Answers test cases under a prompt.
    pub agent: Arc<dyn JudgeModel>,
    /// Scores answers.
    pub judge: Arc<dyn JudgeModel>,
}

/// The prompt optimiser, a post-call step (see the module doc).
pub struct OptimiserStep {
    store: Arc<dyn Store>,
    models: OptimiserModels,
    section: OptimiserSection,
    metrics: Arc<OptimiserMetrics>,
}

impl std::fmt::Debug for OptimiserStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OptimiserStep")
            .field("section", &self.section)
            .finish_non_exhaustive()
    }
}

impl OptimiserStep {
    /// A step writing to `store`, counting in `metrics`.
    pub fn new(
        store: Arc<dyn Store>,
        models: OptimiserModels,
        section: OptimiserSection,
        metrics: Arc<OptimiserMetrics>,
    ) -> Self {
        OptimiserStep {
            store,
            models,
            section,
            metrics,
        }
    }

    /// The trace of an optimisation that ended before a candidate was
    /// scored.
    fn ended(
        &self,
        base: &Base<'_>,
        candidate: String,
        decision: Decision,
        reason: String,
    ) -> OptimisationTrace {
        OptimisationTrace {
            id: base.id.to_owned(),
            key: base.key.to_string(),
            call_id: base.call.call_id.clone(),
            base_version: base.version,
            candidate,
            candidate_scores: None,
            current_scores: None,
            threshold: self.section.threshold,
            decision,
            reason,
            deployed_version: None,
            llm_calls: 0,
            at: rfc3339(unix_ms()),
        }
    }

    /// Runs one optimisation of `key` for the failed `call`; the trace is
    /// stored (with the deployment, if any) when this returns `Ok`.
    async fn optimise(
        &self,
        call: &CallRecord,
        key: &PromptKey,
        reason: &str,
    ) -> Result<OptimisationTrace, PostCallError> {
        let store = &*self.store;
        let state = store.prompt_state(key).await?;
        let base = Base {
            id: &call.call_id,
            key,
            call,
            version: state.version,
        };
        let current = match state.text.filter(|t| !t.trim().is_empty()) {
            Some(text) => Some(text),
            None => store
                .first_prompt(&PromptKey::candidates(&call.segment))
                .await?
                .map(|(_, text)| text),
        };
        let mut asked = Asked::default();
        let trace = match current {
            None => self.ended(
                &base,
                String::new(),
                Decision::Skipped,
                format!("no stored prompt for {key} or the keys it falls back to"),
            ),
            Some(current) => {
                let result = self
                    .optimise_from(&base, &current, reason, &mut asked)
                    .await;
                if let (Err(PostCallError::Unavailable { .. }), 1..) = (&result, asked.answered) {
                    // The slot stays spent and the rerun takes it again (it
                    // holds it): counted, so the reruns are bounded.
                    match store.note_cut_short_optimisation(key, base.id).await {
                        Ok(runs) => {
                            tracing::info!(key = %key, call_id = %call.call_id, runs, max = MAX_CUT_SHORT_ATTEMPTS, "optimisation cut short after a model answered")
                        }
                        Err(err) => {
                            tracing::warn!(key = %key, error = %err, "cannot count a cut-short optimisation")
                        }
                    }
                }
                if let (Err(PostCallError::Unavailable { .. }), 0) = (&result, asked.answered) {
                    // Deferred before any model answered: the slot is not
                    // held while the writer is down (the run takes it
                    // again), so an outage does not use up
                    // max_candidates_per_hour. Once a candidate was written
                    // the slot stays spent: the hourly cap bounds writing
                    // and scoring however often the run is deferred.
                    if let Err(err) = store.give_back_optimisation_slot(key, base.id).await {
                        tracing::warn!(key = %key, error = %err, "cannot give back the optimisation slot of a deferred optimisation");
                    }
                }
                result?
            }
        };
        let trace = OptimisationTrace {
            llm_calls: asked.calls,
            ..trace
        };
        if trace.decision != Decision::Deployed {
            store.put_optimisation(&trace).await?;
            return Ok(trace);
        }
        let scores = trace.candidate_scores.clone();
        let now = unix_ms();
        let entry = PromptVersion {
            version: base.version + 1,
            prompt: trace.candidate.clone(),
            scores,
            deployed_at: rfc3339(now),
            deployed_at_ms: now,
            call_id: Some(call.call_id.clone()),
            optimisation: Some(trace.id.clone()),
            reason: trace.reason.clone(),
        };
        let deployed = OptimisationTrace {
            deployed_version: Some(entry.version),
            ..trace.clone()
        };
        match store
            .deploy_prompt(key, base.version, &entry, Some(&deployed))
            .await?
        {
            Deployed::Deployed(version) => {
                tracing::info!(key = %key, version, call_id = %call.call_id, "prompt candidate deployed");
                Ok(deployed)
            }
            Deployed::Conflict(current) => {
                // A duplicate run of this optimisation (the same job on
                // two workers) deployed first: that deployment is this
                // optimisation's, not a rival's.
                let history = store.prompt_history(key).await?;
                if let Some(ours) = deployed_trace(&history, base.id, key, self.section.threshold) {
                    tracing::info!(key = %key, call_id = %call.call_id, version = ours.deployed_version, "another run of this optimisation deployed it");
                    return Ok(self.store.optimisation(base.id).await?.unwrap_or(ours));
                }
                let lost = OptimisationTrace {
                    decision: Decision::Superseded,
                    reason: format!(
                        "another optimisation deployed version {current} after this candidate was evaluated against version {}; dropped ({})",
                        base.version, trace.reason
                    ),
                    ..trace
                };
                tracing::warn!(key = %key, evaluated_against = base.version, current, call_id = %call.call_id, "prompt candidate rejected: lost the compare-and-set to a concurrent deployment");
                store.put_optimisation(&lost).await?;
                Ok(lost)
            }
        }
    }

    /// The optimisation once the current prompt is known: limits, the
    /// candidate, its evaluation, the decision (not yet deployed).
    async fn optimise_from(
        &self,
        base: &Base<'_>,
        current: &str,
        reason: &str,
        asked: &mut Asked,
    ) -> Result<OptimisationTrace, PostCallError> {
        let store = &*self.store;
        let section = &self.section;
        let now = unix_ms();
        let history = store.prompt_history(base.key).await?;
        let recent = history
            .iter()
            .filter(|v| v.version > 0 && v.call_id.is_some())
            .filter(|v| v.deployed_at_ms + HOUR_MS > now)
            .count() as u64;
        if recent >= section.max_deployments_per_hour {
            return Ok(self.ended(
                base,
                String::new(),
                Decision::RateLimited,
                format!(
                    "{} already has {recent} deployments in the last hour (max_deployments_per_hour = {})",
                    base.key, section.max_deployments_per_hour
                ),
            ));
        }
        let counted = store
            .take_optimisation_slot(
                base.key,
                base.id,
                now,
                HOUR_MS,
                section.max_candidates_per_hour,
            )
            .await?;
        if !counted {
            return Ok(self.ended(
                base,
                String::new(),
                Decision::RateLimited,
                format!(
                    "{} reached max_candidates_per_hour = {}",
                    base.key, section.max_candidates_per_hour
                ),
            ));
        }
        let cut_short = store.cut_short_optimisations(base.key, base.id).await?;
        if cut_short >= MAX_CUT_SHORT_ATTEMPTS {
            return Ok(self.ended(
                base,
                String::new(),
                Decision::Skipped,
                format!(
                    "given up after {cut_short} attempts cut short by a model that stopped answering (each wrote a candidate; at most {MAX_CUT_SHORT_ATTEMPTS})"
                ),
            ));
        }
        let turns = store.turns(&base.call.call_id).await?;
        if !turns
            .iter()
            .any(|t| t.speaker() == "user" && !t.text.trim().is_empty())
        {
            return Ok(self.ended(
                base,
                String::new(),
                Decision::Skipped,
                "the failed call has no user turn to learn from".into(),
            ));
        }
        let transcript = render_transcript(base.call, &turns);
        let candidate = match asked
            .json(
                &*self.models.writer,
                vec![
                    ("system", candidate::WRITER_PROMPT.to_owned()),
                    ("user", candidate::request(current, &transcript, reason)),
                ],
                section.max_attempts,
                candidate::parse,
            )
            .await
        {
            Ok(candidate) => candidate,
            Err(AskError::Unavailable(problem)) => return Err(deferred(problem)),
            Err(AskError::Unusable(problem)) => {
                return Ok(self.ended(
                    base,
                    String::new(),
                    Decision::Skipped,
                    format!("no usable candidate: {problem}"),
                ));
            }
        };
        if candidate.len() as u64 > section.max_prompt_bytes {
            return Ok(self.ended(
                base,
                candidate.clone(),
                Decision::Rejected,
                format!(
                    "the candidate is {} bytes, over max_prompt_bytes = {}",
                    candidate.len(),
                    section.max_prompt_bytes
                ),
            ));
        }
        let cases = self.sample(store.test_cases().await?);
        if cases.is_empty() {
            return Ok(self.ended(
                base,
                candidate,
                Decision::Unevaluated,
                "test_cases:list is empty: no deployment without evidence".into(),
            ));
        }
        let scorer = Scorer {
            agent: &*self.models.agent,
            judge: &*self.models.judge,
            attempts: section.max_attempts,
        };
        let candidate_scores = match scorer.score(asked, &candidate, &cases, &[]).await {
            Ok(scores) => scores,
            Err(AskError::Unavailable(problem)) => return Err(deferred(problem)),
            Err(AskError::Unusable(problem)) => {
                return Ok(self.ended(
                    base,
                    candidate,
                    Decision::Rejected,
                    format!("the candidate could not be scored: {problem}"),
                ));
            }
        };
        // The live version's scores, kept when it was deployed, stand for
        // the cases they cover.
        let kept = history
            .iter()
            .rev()
            .find(|v| v.version == base.version && v.version > 0)
            .and_then(|v| v.scores.as_ref())
            .map_or(&[][..], |s| s.cases.as_slice());
        let current_scores = match scorer.score(asked, current, &cases, kept).await {
            Ok(scores) => scores,
            Err(AskError::Unavailable(problem)) => return Err(deferred(problem)),
            Err(AskError::Unusable(problem)) => {
                let mut trace = self.ended(
                    base,
                    candidate,
                    Decision::Rejected,
                    format!("the current prompt could not be scored: {problem}"),
                );
                trace.candidate_scores = Some(candidate_scores);
                return Ok(trace);
            }
        };
        let (decision, why) = match decide(
            candidate_scores.mean,
            current_scores.mean,
            section.threshold,
        ) {
            Verdict::Deploy(why) => (Decision::Deployed, why),
            Verdict::Reject(why) => (Decision::Rejected, why),
        };
        let mut trace = self.ended(base, candidate, decision, why);
        trace.candidate_scores = Some(candidate_scores);
        trace.current_scores = Some(current_scores);
        Ok(trace)
    }

    /// The trace of a version of `key` already deployed by optimisation
    /// `call.call_id` (found in the prompt history, which is written
    /// atomically with the deployment), rebuilt from its history entry:
    /// the current prompt's scores are not kept there.
    async fn deployed_without_trace(
        &self,
        call: &CallRecord,
        key: &PromptKey,
    ) -> Result<Option<OptimisationTrace>, StoreError> {
        let history = self.store.prompt_history(key).await?;
        Ok(deployed_trace(
            &history,
            &call.call_id,
            key,
            self.section.threshold,
        ))
    }

    /// The test cases used: the newest `sample`, or all.
    fn sample(&self, mut cases: Vec<TestCase>) -> Vec<TestCase> {
        let sample = self.section.sample;
        if sample > 0 && cases.len() > sample {
            cases.drain(..cases.len() - sample);
        }
        cases
    }

    /// Records on the call that optimisation `id` ran, and forgets the
    /// failures it acted on.
    async fn settle(
        &self,
        call_id: &str,
        key: &PromptKey,
        failures: &[String],
    ) -> Result<(), StoreError> {
        self.store
            .update_call(call_id, &CallChange::Optimised(call_id.to_owned()))
            .await?;
        self.store.clear_failures(key, failures).await
    }
}

/// A model was unreachable: the job runs again later, with nothing
/// recorded and the noted failures kept.
fn deferred(reason: String) -> PostCallError {
    tracing::warn!(reason = %reason, "a model the optimiser needs is unavailable; the job will run again");
    PostCallError::Unavailable {
        step: "optimiser",
        reason,
    }
}

/// The trace of the version in `history` that optimisation `id`
/// deployed, if any, rebuilt from its history entry.
fn deployed_trace(
    history: &[PromptVersion],
    id: &str,
    key: &PromptKey,
    threshold: f64,
) -> Option<OptimisationTrace> {
    let entry = history
        .iter()
        .rev()
        .find(|v| v.version > 0 && v.optimisation.as_deref() == Some(id))?;
    Some(OptimisationTrace {
        id: id.to_owned(),
        key: key.to_string(),
        call_id: entry.call_id.clone().unwrap_or_else(|| id.to_owned()),
        base_version: entry.version - 1,
        candidate: entry.prompt.clone(),
        candidate_scores: entry.scores.clone(),
        current_scores: None,
        threshold,
        decision: Decision::Deployed,
        reason: format!(
            "{} (trace rebuilt from the prompt history: the run that deployed it stopped before storing it)",
            entry.reason
        ),
        deployed_version: Some(entry.version),
        llm_calls: 0,
        at: entry.deployed_at.clone(),
    })
}

/// What an optimisation starts from.
struct Base<'a> {
    /// The optimisation's id (the failed call's).
    id: &'a str,
    key: &'a PromptKey,
    call: &'a CallRecord,
    /// The version the candidate is evaluated against.
    version: u64,
}

#[async_trait]
impl PostCallStep for OptimiserStep {
    fn name(&self) -> &'static str {
        "optimiser"
    }

    async fn run(&self, call: &CallRecord) -> Result<(), PostCallError> {
        let Some(Evaluation::Evaluated {
            outcome: Outcome::Failure,
            reason,
            ..
        }) = &call.evaluation
        else {
            return Ok(());
        };
        let call_id = call.call_id.as_str();
        let Some(key) = PromptKey::candidates(&call.segment).into_iter().next() else {
            return Ok(());
        };
        let done = self.store.optimisation(call_id).await?;
        if done
            .as_ref()
            .is_none_or(|d| d.decision != Decision::Deployed)
            && let Some(trace) = self.deployed_without_trace(call, &key).await?
        {
            // On Redis the trace is written after the deployment (another
            // slot): a run stopped between the two left a live version
            // whose trace is missing (or, from a duplicate run of the job,
            // says it was not deployed). Optimising again would deploy a
            // second version for the same failed call.
            tracing::warn!(
                call_id,
                key = %key,
                version = trace.deployed_version,
                "deployment found in the prompt history without its trace; trace rebuilt, not optimising again"
            );
            self.store.put_optimisation(&trace).await?;
            self.settle(call_id, &key, &[call_id.to_owned()]).await?;
            return Ok(());
        }
        if let Some(done) = done {
            tracing::info!(
                call_id,
                decision = done.decision.as_str(),
                "optimisation already recorded; a re-run settles it"
            );
            self.settle(call_id, &key, &[call_id.to_owned()]).await?;
            return Ok(());
        }
        let failures = self.store.note_failure(&key, call_id, unix_ms()).await?;
        let needed = self.section.failures_before;
        if (failures.len() as u64) < needed {
            tracing::info!(call_id, key = %key, failures = failures.len(), needed, "failure noted; not optimising yet");
            return Ok(());
        }
        let trace = self.optimise(call, &key, reason).await?;
        tracing::info!(
            call_id,
            key = %key,
            decision = trace.decision.as_str(),
            reason = %trace.reason,
            llm_calls = trace.llm_calls,
            candidate_mean = trace.candidate_scores.as_ref().map(|s| s.mean),
            current_mean = trace.current_scores.as_ref().map(|s| s.mean),
            "prompt optimisation done"
        );
        self.metrics
            .optimised(trace.decision, !trace.candidate.is_empty(), trace.llm_calls);
        self.settle(call_id, &key, &failures).await?;
        Ok(())
    }
}

/// Means of scores, for callers showing a trace.
pub fn mean_of(scores: Option<&PromptScores>) -> String {
    scores.map_or_else(|| "-".to_owned(), |s| format!("{:.3}", s.mean))
}
