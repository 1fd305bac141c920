//! The learned end-of-turn analyser of `user_context`: which model
//! (`turn_analyzer` in TOML), and [`TurnAnalyzer`], which keeps the turn's
//! audio and runs the model on it off the async runtime.
//!
//! [`end_of_turn_model`] is the one place a model is built from its name:
//! a new model is a variant of [`TurnAnalyzerKind`] and an arm there.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use tokio::sync::oneshot;

use crate::frame::AudioFrame;
use crate::pipeline::BuildError;
use crate::vad::{EndOfTurnModel, ModelInput, SmartTurnModel};

/// How much of the turn's end a model is given: Smart Turn's window.
const WINDOW_SECS: u32 = 8;

/// `turn_analyzer`: the learned end-of-turn model a pipeline uses, if any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnAnalyzerKind {
    /// No model: the silence and the transcript decide (the default).
    #[default]
    None,
    /// Smart Turn v3.2 (`vad::SmartTurnModel`), the model Pipecat 1.14
    /// uses, run in process: its weights are read once per process.
    SmartTurn,
}

/// Builds the model `kind` names, for one session.
pub fn end_of_turn_model(
    kind: TurnAnalyzerKind,
) -> Result<Option<Box<dyn EndOfTurnModel>>, BuildError> {
    match kind {
        TurnAnalyzerKind::None => Ok(None),
        TurnAnalyzerKind::SmartTurn => match SmartTurnModel::bundled() {
            Ok(model) => Ok(Some(Box::new(model))),
            Err(error) => Err(BuildError::Other(Box::new(error))),
        },
    }
}

/// A model shared with the blocking task that runs it.
type SharedModel = Arc<Mutex<Box<dyn EndOfTurnModel>>>;

/// Runs an [`EndOfTurnModel`] on the audio of the user's turn.
pub(super) struct TurnAnalyzer {
    model: SharedModel,
    input: ModelInput,
    window: usize,
    audio: VecDeque<i16>,
    running: Option<oneshot::Receiver<f32>>,
}

impl std::fmt::Debug for TurnAnalyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnAnalyzer")
            .field("kept", &self.audio.len())
            .finish_non_exhaustive()
    }
}

impl TurnAnalyzer {
    /// An analyser running `model`.
    pub(super) fn new(model: Box<dyn EndOfTurnModel>) -> Self {
        let rate = model.sample_rate();
        TurnAnalyzer {
            input: ModelInput::new(rate),
            window: (rate * WINDOW_SECS) as usize,
            audio: VecDeque::new(),
            running: None,
            model: Arc::new(Mutex::new(model)),
        }
    }

    /// Keeps the user's audio (the last [`WINDOW_SECS`] of it).
    pub(super) fn hear(&mut self, audio: &AudioFrame) {
        match self.input.convert(audio) {
            Ok(samples) => self.audio.extend(samples.iter().copied()),
            Err(error) => {
                tracing::debug!(%error, "audio the end-of-turn model cannot take");
                return;
            }
        }
        let excess = self.audio.len().saturating_sub(self.window);
        self.audio.drain(..excess);
    }

    /// The turn is over: its audio is not the next turn's.
    pub(super) fn clear(&mut self) {
        self.audio.clear();
        self.running = None;
    }

    /// Scores the audio kept so far, on a blocking thread (a model takes
    /// tens of milliseconds); [`TurnAnalyzer::poll`] gives the result.
    pub(super) fn analyse(&mut self) {
        let turn: Vec<i16> = self.audio.iter().copied().collect();
        let model = Arc::clone(&self.model);
        let (tx, rx) = oneshot::channel();
        self.running = Some(rx);
        tokio::task::spawn_blocking(move || {
            let probability = match model.lock() {
                Ok(mut model) => model.end_of_turn_probability(&turn),
                Err(poisoned) => poisoned.into_inner().end_of_turn_probability(&turn),
            };
            // Nobody waits any more when the user spoke again.
            let _unwanted = tx.send(probability);
        });
    }

    /// The probability, once the model has scored the audio.
    pub(super) fn poll(&mut self) -> Option<f32> {
        let running = self.running.as_mut()?;
        match running.try_recv() {
            Ok(probability) => {
                self.running = None;
                Some(probability.clamp(0.0, 1.0))
            }
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => {
                self.running = None;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Key {
        turn_analyzer: TurnAnalyzerKind,
    }

    #[test]
    fn smart_turn_is_named_in_toml_and_built_at_16_khz() {
        let key: Key = toml::from_str(r#"turn_analyzer = "smart_turn""#).unwrap();
        assert_eq!(key.turn_analyzer, TurnAnalyzerKind::SmartTurn);
        let model = end_of_turn_model(key.turn_analyzer).unwrap().unwrap();
        assert_eq!(model.sample_rate(), 16_000);
        assert!(end_of_turn_model(TurnAnalyzerKind::None).unwrap().is_none());
    }
}
