//! [`Learner`]: asks the model for a transcript's objection/rebuttal pairs,
//! writes them as test cases and, embedded, as skills. Shared by the
//! post-call step and the submissions of human-handled calls.

use std::sync::Arc;

use serde_json::json;

use super::answer::{PairsAnswer, pairs_schema};
use super::config::LearningSection;
use super::transcript::{SpokenTurn, has_customer_turn, render};
use crate::agent::eval::{ApiEndpoint, JudgeModel, OpenAiJudge};
use crate::agent::extraction::{FormatKind, unavailable};
use crate::agent::skills::Embedder;
use crate::store::{LearnedPair, Skill, Store, StoreError, TestCase};

/// The instructions for a call that went well, when the TOML gives none.
pub const DEFAULT_LEARNING_PROMPT: &str = "\
You read the transcript of a sales call that went well, between an agent \
and a customer. List each objection the customer raised that the agent \
answered well, as one pair: `objection`: the customer's objection, short, \
in the customer's words; `rebuttal`: what the agent said that answered it, \
written as advice another agent can reuse; `target`: one sentence saying \
what a good answer to this objection does. Only objections the customer \
raised; an empty list when there were none. Answer with one JSON object \
that the schema below accepts, and nothing else.";

/// The instructions for a lost deal: the objections the agent did not
/// overcome, and what would have.
pub const LOST_DEAL_PROMPT: &str = "\
You read the transcript of a sales call that was lost, between an agent and \
a customer. List each objection the customer raised that the agent did not \
overcome, as one pair: `objection`: the customer's objection, short, in the \
customer's words; `rebuttal`: what the agent should have said instead; \
`target`: one sentence saying what a good answer to this objection does. \
An empty list when there were none. Answer with one JSON object that the \
schema below accepts, and nothing else.";

/// What kind of call the transcript is: what the model is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// The call went well: the objections the agent answered.
    Won,
    /// The deal was lost: the objections the agent did not overcome.
    Lost,
}

/// What the model found in a transcript.
#[derive(Debug, Clone, PartialEq)]
pub enum Lesson {
    /// The pairs (at least one).
    Pairs {
        /// What was found.
        pairs: Vec<LearnedPair>,
        /// Answers asked for.
        attempts: u32,
    },
    /// Nothing to learn, and why.
    Nothing {
        /// Why, for people.
        reason: String,
        /// Answers asked for (0: the model was not asked).
        attempts: u32,
    },
}

/// Learning could not finish now; try again later.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LearnError {
    /// The learning model or the embedder cannot be reached.
    #[error("{what} unavailable: {reason}")]
    Unavailable {
        /// `the learning model` or `the embedder`.
        what: &'static str,
        /// What failed.
        reason: String,
    },
    /// The embedder refused the request for good (a 4xx other than 429
    /// and refused credentials, an answer that cannot be used): asking
    /// again would get the same answer, so the skills are not stored.
    #[error("{what} refused the request: {reason}")]
    Refused {
        /// `the embedder`.
        what: &'static str,
        /// What failed.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How the learner asks.
#[derive(Debug, Clone)]
pub struct LearnerSettings {
    /// The instructions for a call that went well.
    pub prompt: String,
    /// Answers asked for before giving up on a transcript.
    pub max_attempts: u32,
    /// Pairs kept per transcript.
    pub max_pairs: usize,
    /// Calls judged a success below this score teach nothing.
    pub min_score: f64,
}

impl LearnerSettings {
    /// The settings `[learning]` gives.
    pub fn from_section(section: &LearningSection) -> Self {
        LearnerSettings {
            prompt: section
                .prompt
                .clone()
                .unwrap_or_else(|| DEFAULT_LEARNING_PROMPT.to_owned()),
            max_attempts: section.max_attempts.max(1),
            max_pairs: section.max_pairs,
            min_score: section.min_score,
        }
    }
}

/// Finds pairs in transcripts and stores them.
pub struct Learner {
    store: Arc<dyn Store>,
    model: Arc<dyn JudgeModel>,
    embedder: Arc<dyn Embedder>,
    answer: PairsAnswer,
    settings: LearnerSettings,
}

impl std::fmt::Debug for Learner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Learner")
            .field("model", &self.model.model())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Learner {
    /// A learner writing to `store`, asking `model`, embedding with
    /// `embedder` (the one `search_context` queries with).
    pub fn new(
        store: Arc<dyn Store>,
        model: Arc<dyn JudgeModel>,
        embedder: Arc<dyn Embedder>,
        settings: LearnerSettings,
    ) -> Self {
        Learner {
            store,
            model,
            embedder,
            answer: PairsAnswer::new(settings.max_pairs),
            settings,
        }
    }

    /// The OpenAI-compatible model at `endpoint` asked with `section`'s
    /// response format (the pairs' schema in a `json_schema` one).
    pub fn openai_model(endpoint: ApiEndpoint, section: &LearningSection) -> OpenAiJudge {
        let format = match section.response_format {
            FormatKind::JsonSchema => Some(json!({
                "type": "json_schema",
                "json_schema": {"name": "objection_pairs", "schema": pairs_schema(), "strict": true},
            })),
            FormatKind::JsonObject => Some(json!({"type": "json_object"})),
            FormatKind::None => None,
        };
        OpenAiJudge::with_response_format(endpoint, &section.model, format)
    }

    /// The store it writes to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The model's name, recorded with what it found.
    pub fn model_name(&self) -> &str {
        self.model.model()
    }

    /// The lowest score of a success that teaches.
    pub fn min_score(&self) -> f64 {
        self.settings.min_score
    }

    /// Asks the model for the pairs of `turns` (`about` names the call in
    /// logs), again with what was wrong when an answer is unusable, up to
    /// `max_attempts`. A model that cannot be reached is
    /// [`LearnError::Unavailable`]; a transcript without a customer turn is
    /// not sent.
    pub async fn find_pairs(
        &self,
        about: &str,
        turns: &[SpokenTurn],
        kind: CallKind,
        context: &str,
    ) -> Result<Lesson, LearnError> {
        if !has_customer_turn(turns) {
            return Ok(Lesson::Nothing {
                reason: "the transcript has no customer turn".into(),
                attempts: 0,
            });
        }
        let prompt = match kind {
            CallKind::Won => self.settings.prompt.as_str(),
            CallKind::Lost => LOST_DEAL_PROMPT,
        };
        let schema = serde_json::to_string_pretty(self.answer.schema())
            .unwrap_or_else(|_| self.answer.schema().to_string());
        let mut messages = vec![
            ("system", format!("{prompt}\n\nJSON Schema:\n{schema}")),
            ("user", format!("{context}\n\n{}", render(turns))),
        ];
        let attempts = self.settings.max_attempts;
        let mut problem = String::new();
        for attempt in 1..=attempts {
            let answer = match self.model.complete(&messages).await {
                Ok(answer) => answer,
                Err(err) if unavailable(&err) => {
                    return Err(LearnError::Unavailable {
                        what: "the learning model",
                        reason: err.to_string(),
                    });
                }
                Err(err) => {
                    tracing::warn!(about, attempt, error = %err, "learning request refused");
                    problem = format!("the model refused the request: {err}");
                    continue;
                }
            };
            match self.answer.check(&answer) {
                Ok(pairs) if pairs.is_empty() => {
                    return Ok(Lesson::Nothing {
                        reason: "the model found no objection".into(),
                        attempts: attempt,
                    });
                }
                Ok(pairs) => {
                    return Ok(Lesson::Pairs {
                        pairs,
                        attempts: attempt,
                    });
                }
                Err(wrong) => {
                    // The places, not the told text: answers quote the call.
                    tracing::warn!(
                        about,
                        attempt,
                        at = wrong.places,
                        "learning answer unusable"
                    );
                    messages.push(("assistant", answer));
                    messages.push((
                        "user",
                        format!(
                            "That answer cannot be used: {}. Answer again with only the JSON object.",
                            wrong.told
                        ),
                    ));
                    problem = wrong.told;
                }
            }
        }
        Ok(Lesson::Nothing {
            reason: format!("no usable answer after {attempts} attempts ({problem})"),
            attempts,
        })
    }

    /// Adds a test case per pair (`{"input": objection, "target"}`) to
    /// `test_cases:list`; returns how many it did not hold yet.
    pub async fn add_test_cases(&self, pairs: &[LearnedPair]) -> Result<usize, StoreError> {
        let cases: Vec<TestCase> = pairs
            .iter()
            .map(|pair| TestCase {
                input: pair.objection.clone(),
                target: pair.target.clone(),
            })
            .collect();
        self.store.add_test_cases(&cases).await
    }

    /// Embeds the objections (one request) and stores a skill per pair,
    /// `skill:{hash}` of the objection, so the same objection replaces its
    /// skill; returns the hashes in order.
    pub async fn store_skills(&self, pairs: &[LearnedPair]) -> Result<Vec<String>, LearnError> {
        let objections: Vec<String> = pairs.iter().map(|p| p.objection.clone()).collect();
        // Classified as the models' errors are: only a service that is
        // down (or refuses the key) is worth asking again later.
        let vectors = match self.embedder.embed(&objections).await {
            Ok(vectors) => vectors,
            Err(err) if unavailable(&err) => {
                return Err(LearnError::Unavailable {
                    what: "the embedder",
                    reason: err.to_string(),
                });
            }
            Err(err) => {
                return Err(LearnError::Refused {
                    what: "the embedder",
                    reason: err.to_string(),
                });
            }
        };
        if vectors.len() != pairs.len() {
            return Err(LearnError::Refused {
                what: "the embedder",
                reason: format!("{} vectors for {} objections", vectors.len(), pairs.len()),
            });
        }
        let mut hashes = Vec::with_capacity(pairs.len());
        for (pair, vector) in pairs.iter().zip(vectors) {
            let skill = Skill::new(pair.objection.as_str(), pair.rebuttal.as_str(), vector);
            self.store.put_skill(&skill).await?;
            hashes.push(skill.hash);
        }
        Ok(hashes)
    }
}
