//! `[processor.turn_end]`: the turn-end decision's parameters in TOML.

use std::time::Duration;

use serde::Deserialize;

use crate::config::Seconds;
use crate::pipeline::BuildError;
use crate::vad::TurnEndParams;

/// `[processor.turn_end]` of a `user_context`: [`TurnEndParams`] in TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnEndConfig {
    /// Silence after which a reply may be prepared, seconds (0 to 10).
    /// Default 0.
    pub preemptive_secs: Seconds<0, 10>,
    /// Silence after which a turn that looks done ends, seconds (0 to 10).
    /// Default 0.3.
    pub complete_secs: Seconds<0, 10>,
    /// Silence after which any turn ends, seconds (0 to 30). Default 1.5.
    pub fallback_secs: Seconds<0, 30>,
    /// The model's probability from which a turn looks done, 0 to 1.
    /// Default 0.5.
    pub end_probability: f32,
}

impl Default for TurnEndConfig {
    fn default() -> Self {
        let params = TurnEndParams::default();
        let millis = |d: Duration| d.as_millis() as u64;
        TurnEndConfig {
            preemptive_secs: Seconds::from_millis(millis(params.preemptive_secs)),
            complete_secs: Seconds::from_millis(millis(params.complete_secs)),
            fallback_secs: Seconds::from_millis(millis(params.fallback_secs)),
            end_probability: params.end_probability,
        }
    }
}

impl TurnEndConfig {
    pub(super) fn params(&self) -> Result<TurnEndParams, BuildError> {
        if !(0.0..=1.0).contains(&self.end_probability) {
            return Err(BuildError::Invalid(format!(
                "turn_end.end_probability: expected a value from 0 to 1, not {}",
                self.end_probability
            )));
        }
        Ok(TurnEndParams {
            preemptive_secs: self.preemptive_secs.duration(),
            complete_secs: self.complete_secs.duration(),
            fallback_secs: self.fallback_secs.duration(),
            end_probability: self.end_probability,
        })
    }
}
