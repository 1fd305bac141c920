//! What a pipeline file gives an agent runtime to be made from.

use super::config::ContextSection;
use super::learning::LearningSection;
use crate::agent::eval::EvaluatorSection;
use crate::agent::extraction::ExtractionConfig;
use crate::agent::optimiser::OptimiserSection;
use crate::agent::webhook::WebhookSection;
use crate::objects::StorageSection;
use crate::store::PhoneSalt;

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
    /// Where the phone hashes' salt comes from (`[outbound]
    /// phone_hash_salt_env`, else the Twilio auth token), read as the
    /// dialler reads it.
    pub phone_hash_salt: PhoneSalt<'a>,
}
