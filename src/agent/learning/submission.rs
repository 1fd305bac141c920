//! Transcripts submitted for learning (`voxpipe learn`, `POST
//! /api/learn`): calls handled by a person, or by an AI agent elsewhere.
//!
//! A closed deal teaches like a call judged a success: skills and test
//! cases. A lost deal teaches test cases only: the objections the agent
//! did not overcome, with what a good answer does (the model's suggested
//! rebuttals were never tried on a customer, so they do not become skills).

use serde::Serialize;

use super::learner::{CallKind, LearnError, Learner, Lesson};
use super::transcript::{SpokenTurn, has_customer_turn};
use crate::store::LearnedPair;

/// How the submitted call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DealOutcome {
    /// `closed_deal`.
    Closed,
    /// `lost_deal`.
    Lost,
}

impl DealOutcome {
    /// `closed_deal` or `lost_deal`.
    pub fn as_str(self) -> &'static str {
        match self {
            DealOutcome::Closed => "closed_deal",
            DealOutcome::Lost => "lost_deal",
        }
    }

    /// `closed_deal` or `lost_deal`, else `None`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "closed_deal" => Some(DealOutcome::Closed),
            "lost_deal" => Some(DealOutcome::Lost),
            _ => None,
        }
    }
}

/// Who handled the submitted call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandledBy {
    /// `human`: a sales rep.
    Human,
    /// `ai`: a voice agent.
    Ai,
}

impl HandledBy {
    /// `human` or `ai`.
    pub fn as_str(self) -> &'static str {
        match self {
            HandledBy::Human => "human",
            HandledBy::Ai => "ai",
        }
    }

    /// `human` or `ai`, else `None`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "human" => Some(HandledBy::Human),
            "ai" => Some(HandledBy::Ai),
            _ => None,
        }
    }
}

/// A transcript to learn from.
#[derive(Debug, Clone)]
pub struct Submission {
    /// Its turns (with at least one customer turn: see [`Submission::new`]).
    turns: Vec<SpokenTurn>,
    /// How it ended.
    pub outcome: DealOutcome,
    /// Who handled it.
    pub agent: HandledBy,
}

impl Submission {
    /// A submission, or why it has nothing to learn from (no customer turn).
    pub fn new(
        turns: Vec<SpokenTurn>,
        outcome: DealOutcome,
        agent: HandledBy,
    ) -> Result<Self, String> {
        if !has_customer_turn(&turns) {
            return Err("the transcript has no customer turn: nothing to learn from".into());
        }
        Ok(Submission {
            turns,
            outcome,
            agent,
        })
    }
}

/// What a submission taught (the HTTP answer's JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubmissionReport {
    /// `closed_deal` or `lost_deal`.
    pub outcome: &'static str,
    /// `human` or `ai`.
    pub agent: &'static str,
    /// The pairs the model found.
    pub pairs: Vec<LearnedPair>,
    /// The `skill:{hash}` suffixes stored (none for a lost deal).
    pub skills: Vec<String>,
    /// Test cases `test_cases:list` did not hold yet.
    pub test_cases_added: usize,
    /// Why nothing was learned, when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nothing: Option<String>,
}

impl Learner {
    /// Learns from a submitted transcript: test cases first, then (for a
    /// closed deal) the skills. Submitting the same transcript again asks
    /// the model again and stores nothing twice.
    pub async fn learn_submission(
        &self,
        submission: &Submission,
    ) -> Result<SubmissionReport, LearnError> {
        let (outcome, agent) = (submission.outcome.as_str(), submission.agent.as_str());
        let (kind, context) = match submission.outcome {
            DealOutcome::Closed => (CallKind::Won, "closed the deal"),
            DealOutcome::Lost => (CallKind::Lost, "lost the deal"),
        };
        let handler = match submission.agent {
            HandledBy::Human => "a human sales rep",
            HandledBy::Ai => "an AI voice agent",
        };
        let context = format!("A call handled by {handler}, who {context}.");
        let about = format!("submitted {outcome} ({agent})");
        let mut report = SubmissionReport {
            outcome,
            agent,
            pairs: Vec::new(),
            skills: Vec::new(),
            test_cases_added: 0,
            nothing: None,
        };
        match self
            .find_pairs(&about, &submission.turns, kind, &context)
            .await?
        {
            Lesson::Nothing { reason, .. } => report.nothing = Some(reason),
            Lesson::Pairs { pairs, .. } => {
                report.test_cases_added = self.add_test_cases(&pairs).await?;
                if submission.outcome == DealOutcome::Closed {
                    report.skills = self.store_skills(&pairs).await?;
                }
                report.pairs = pairs;
            }
        }
        tracing::info!(
            outcome,
            agent,
            pairs = report.pairs.len(),
            skills = report.skills.len(),
            test_cases_added = report.test_cases_added,
            "learned from a submitted transcript"
        );
        Ok(report)
    }
}
