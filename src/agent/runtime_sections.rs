//! What a pipeline file gives an agent runtime to be made from.

use super::config::ContextSection;
use super::learning::LearningSection;
use crate::agent::eval::EvaluatorSection;
use crate::agent::extraction::ExtractionConfig;
use crate::agent::optimiser::OptimiserSection;
use crate::agent::webhook::WebhookSection;
use crate::objects::StorageSection;

/// The sections of a pipeline file an agent runtime is made from.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeSections<'a> {
    /// `[context]`.
    pub context: &'a ContextSection,
    /// `[evaluator]`.
    pub evaluator: Option<&'a EvaluatorSection>,
    /// `[webhook]`.
    pub webhook: Option<&'a WebhookSection>,
    /// `[extraction]`.
    pub extraction: Option<&'a ExtractionConfig>,
    /// `[storage]`.
    pub storage: Option<&'a StorageSection>,
    /// `[learning]`.
    pub learning: Option<&'a LearningSection>,
    /// `[optimiser]`.
    pub optimiser: Option<&'a OptimiserSection>,
    /// The phone hashes' salt (as `[outbound]` resolves it), if known.
    pub phone_hash_salt: Option<&'a str>,
}
