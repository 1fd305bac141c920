//! What a processor factory gets when a session starts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::error::BuildError;
use crate::config::InterruptionSection;

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
    /// `<Parameter>`s of a Twilio stream (caller, segment); empty for a file.
    pub custom_parameters: BTreeMap<String, String>,
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

impl SessionSetup {
    /// A setup for one session of `config`.
    pub fn for_pipeline(
        config: &crate::config::PipelineConfig,
        session_id: impl Into<Arc<str>>,
    ) -> Self {
        let mut setup = SessionSetup::new(session_id, config.pipeline.sample_rate.hz());
        setup.allow_interruptions = config.pipeline.allow_interruptions;
        setup.interruption = config.interruption;
        setup
    }
}

/// A fresh random session id: 32 hex digits.
pub fn new_session_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded from the OS once per process and varied per
    // instance: two hashes of a counter give 128 unpredictable bits.
    let mut id = String::with_capacity(32);
    for _ in 0..2 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        id.push_str(&format!("{:016x}", hasher.finish()));
    }
    id
}
