//! What a pipeline file gives an agent runtime to be made from.

use super::config::ContextSection;
use super::learning::LearningSection;
use crate::agent::eval::EvaluatorSection;
use crate::agent::extraction::ExtractionConfig;
use crate::agent::optimiser::OptimiserSection;
use crate::agent::webhook::WebhookSection;
use crate::objects::StorageSection;
use crate::store::PhoneSalt;
use std::sync::Arc;

use super::learning::Learner;
use super::post_call::PostCallStep;
use super::skills::SkillLibrary;
use crate::agent::eval::JudgeModel;
use crate::agent::webhook::WebhookSettings;
use crate::objects::ObjectStorage;
use crate::store::{PhoneHasher, Store};

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

/// What a runtime is made of, for code that builds its own parts (tests,
/// embedding applications).
pub struct RuntimeParts {
    /// The store.
    pub store: Arc<dyn Store>,
    /// `[context]`.
    pub section: ContextSection,
    /// The judge and `[evaluator]`, if sessions are evaluated.
    pub evaluator: Option<(Arc<dyn JudgeModel>, EvaluatorSection)>,
    /// The webhook, if any.
    pub webhook: Option<WebhookSettings>,
    /// The skills library, if `search_context` is served.
    pub skills: Option<Arc<SkillLibrary>>,
    /// The post-call steps, run after each evaluation (or, with no
    /// evaluator, in the same job without a verdict).
    pub post_call: Vec<Arc<dyn PostCallStep>>,
    /// Object storage, if calls leave objects: its post-call step runs
    /// after those of `post_call`.
    pub objects: Option<ObjectStorage>,
    /// Hashes the phone numbers in stored objects (the deployment's salt);
    /// without it they are written `redacted`.
    pub phone_hasher: Option<PhoneHasher>,
    /// The learner, if calls teach skills and test cases: its post-call
    /// step runs last (see [`learning`](crate::agent::learning)).
    pub learning: Option<Arc<Learner>>,
}
