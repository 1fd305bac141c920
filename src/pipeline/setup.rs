//! What a processor factory gets when a session starts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use std::fmt;

use super::build_error::BuildError;
use super::resources::SessionResources;
use crate::config::{InterruptionSection, Opening, RecordingSection};

/// Decides a session's system prompt when something outside the pipeline
/// keeps it: the agent layer's stored segment prompts and learned tactics.
/// The LLM asks it once, when it is built for the session.
pub trait SystemPromptSource: Send + Sync + fmt::Debug {
    /// The system prompt, given the pipeline's own (TOML) prompt.
    fn system_prompt(&self, pipeline_prompt: &str) -> String;
}

/// Where `*_env` keys are looked up: the process environment, or a fixed
/// map (tests, embedding).
#[derive(Debug, Clone, Default)]
pub enum EnvSource {
    /// `std::env::var`.
    #[default]
    Process,
    /// A fixed set of variables.
    Fixed(Arc<HashMap<String, String>>),
}

impl EnvSource {
    /// The value of the variable `var`, if it is set.
    pub fn get(&self, var: &str) -> Option<String> {
        match self {
            EnvSource::Process => std::env::var(var).ok(),
            EnvSource::Fixed(vars) => vars.get(var).cloned(),
        }
    }
}

/// The session a processor is built for.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionSetup {
    /// The session (call) id.
    pub session_id: Arc<str>,
    /// The pipeline's internal sample rate.
    pub sample_rate: u32,
    /// Whether the user may interrupt the bot.
    pub allow_interruptions: bool,
    /// How the user interrupts the bot (`[interruption]`).
    pub interruption: InterruptionSection,
    /// Where `*_env` variables come from.
    pub env: EnvSource,
    /// Parameters the transport received with the session, e.g. the
    /// `<Parameter>`s of a Twilio stream, a WebRTC offer's `request_data`,
    /// `voxpipe run --param`; empty otherwise. The context store reads the
    /// segment (`country`, `industry`) from them.
    pub custom_parameters: BTreeMap<String, String>,
    /// Where the system prompt comes from when it is kept outside the
    /// pipeline (stored segment prompts, learned tactics); `None`: the
    /// pipeline's own.
    pub system_prompt: Option<Arc<dyn SystemPromptSource>>,
    /// Objects the session's processors share (see [`SessionResources`]).
    pub resources: SessionResources,
    /// Whether and where the session is recorded (`[recording]`; off by
    /// default). The session, not a processor, records.
    pub recording: RecordingSection,
    /// How the bot opens the conversation once the caller can hear it
    /// (`[pipeline] first_message`, `llm_opens`); `None`: the caller
    /// speaks first.
    pub opening: Option<Opening>,
}

impl SessionSetup {
    /// A setup for `session_id` at `sample_rate`, reading the process
    /// environment.
    pub fn new(session_id: impl Into<Arc<str>>, sample_rate: u32) -> Self {
        SessionSetup {
            session_id: session_id.into(),
            sample_rate,
            allow_interruptions: true,
            interruption: InterruptionSection::default(),
            env: EnvSource::Process,
            custom_parameters: BTreeMap::new(),
            system_prompt: None,
            resources: SessionResources::new(),
            recording: RecordingSection::default(),
            opening: None,
        }
    }

    /// The value of the variable `var`, which the config key `key` names.
    /// An unset or empty variable is an error naming both.
    pub fn env_var(&self, key: &str, var: &str) -> Result<String, BuildError> {
        match self.env.get(var) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(BuildError::MissingEnv {
                key: key.to_owned(),
                var: var.to_owned(),
            }),
        }
    }
}

/// A fresh random session id: 32 hex digits.
pub fn new_session_id() -> String {
    use crate::random::random_u64;
    format!("{:016x}{:016x}", random_u64(), random_u64())
}
