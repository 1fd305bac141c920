//! [`PipelineConfig`]: one pipeline file, validated: its sections and its
//! processors, ready to build sessions from.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use crate::agent::eval::EvaluatorSection;
use crate::agent::extraction::{ExtractionConfig, ExtractionSection};
use crate::agent::learning::LearningSection;
use crate::agent::optimiser::OptimiserSection;
use crate::agent::webhook::WebhookSection;
use crate::agent::{AgentError, AgentRuntime, ContextSection, RuntimeSections};
use crate::config::{
    InterruptionSection, PipelineSection, RecordingSection, ServerSection, TransportSection,
};
use crate::objects::StorageSection;
use crate::outbound::OutboundSection;
use crate::pipeline::{EnvSource, ProcessorEntry, SessionSetup};
use crate::store::PhoneSalt;
use crate::text::TextSection;

/// Everything in a pipeline file except its processors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Sections {
    pub(crate) pipeline: PipelineSection,
    #[serde(default)]
    pub(crate) transport: TransportSection,
    #[serde(default)]
    pub(crate) context: ContextSection,
    #[serde(default)]
    pub(crate) evaluator: Option<EvaluatorSection>,
    #[serde(default)]
    pub(crate) webhook: Option<WebhookSection>,
    #[serde(default)]
    pub(crate) extraction: Option<ExtractionSection>,
    pub(crate) storage: Option<StorageSection>,
    #[serde(default)]
    pub(crate) learning: Option<LearningSection>,
    pub(crate) optimiser: Option<OptimiserSection>,
    #[serde(default)]
    pub(crate) interruption: InterruptionSection,
    #[serde(default)]
    pub(crate) server: ServerSection,
    #[serde(default)]
    pub(crate) recording: RecordingSection,
    #[serde(default)]
    pub(crate) outbound: Option<OutboundSection>,
    #[serde(default)]
    pub(crate) text: TextSection,
}

/// A validated pipeline definition.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// The file it came from.
    pub path: PathBuf,
    /// `[pipeline]`.
    pub pipeline: PipelineSection,
    /// `[transport]`.
    pub transport: TransportSection,
    /// `[context]`: the context store (memory by default).
    pub context: ContextSection,
    /// `[evaluator]`, if sessions are judged.
    pub evaluator: Option<EvaluatorSection>,
    /// `[webhook]`, if completed calls are posted.
    pub webhook: Option<WebhookSection>,
    /// `[extraction]`, its schema compiled, if calls are extracted from.
    pub extraction: Option<ExtractionConfig>,
    /// `[storage]`, if calls leave objects (recording, transcript,
    /// profile, audit record).
    pub storage: Option<StorageSection>,
    /// `[learning]`, if calls teach skills and test cases.
    pub learning: Option<LearningSection>,
    /// `[optimiser]`, if failed calls improve their segment's prompt.
    pub optimiser: Option<OptimiserSection>,
    /// `[interruption]`.
    pub interruption: InterruptionSection,
    /// `[server]`.
    pub server: ServerSection,
    /// `[recording]`: a stereo WAV per call (off by default).
    pub recording: RecordingSection,
    /// `[outbound]`, if this pipeline places calls.
    pub outbound: Option<OutboundSection>,
    /// `[text]`: text conversations (SMS, WhatsApp, the chat API).
    pub text: TextSection,
    /// The processors, in chain order.
    pub processors: Vec<ProcessorEntry>,
}

impl PipelineConfig {
    /// A setup for one session of this pipeline.
    pub fn session_setup(&self, session_id: impl Into<Arc<str>>) -> SessionSetup {
        let mut setup = SessionSetup::new(session_id, self.pipeline.sample_rate.hz());
        setup.allow_interruptions = self.pipeline.allow_interruptions;
        setup.interruption = self.interruption;
        setup.recording = self.recording.clone();
        setup.opening = self.pipeline.opening();
        setup
    }

    /// Starts, on the current runtime, what the processors keep for all
    /// sessions (see [`ProcessorFactory::warm_up`]).
    pub fn warm_up(&self) {
        let setup = self.session_setup("warm-up");
        for entry in &self.processors {
            entry.factory.warm_up(&setup);
        }
    }

    /// The agent runtime of this pipeline's `[context]`, `[evaluator]`,
    /// `[webhook]`, `[extraction]`, `[storage]`, `[learning]` and
    /// `[optimiser]` sections, with secrets read from `env`; with
    /// `[storage]`, finished recordings in `[recording] dir` are uploaded.
    pub fn agent_runtime(&self, env: &EnvSource) -> Result<AgentRuntime, AgentError> {
        let sections = RuntimeSections {
            context: &self.context,
            evaluator: self.evaluator.as_ref(),
            webhook: self.webhook.as_ref(),
            extraction: self.extraction.as_ref(),
            storage: self.storage.as_ref(),
            learning: self.learning.as_ref(),
            optimiser: self.optimiser.as_ref(),
            phone_hash_salt: self.phone_salt(),
        };
        AgentRuntime::from_sections(sections, env)
            .map(|runtime| runtime.with_recording_spool(self.recording.dir.path()))
    }

    /// Where this pipeline's phone hashes are salted from: `[outbound]
    /// phone_hash_salt_env`, else `[transport.twilio] auth_token_env`.
    pub fn phone_salt(&self) -> PhoneSalt<'_> {
        let salt_env = self
            .outbound
            .as_ref()
            .and_then(|o| o.phone_hash_salt_env.as_deref());
        PhoneSalt::new(salt_env, &self.transport.twilio)
    }
}
