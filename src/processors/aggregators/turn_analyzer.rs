//! The learned end-of-turn analyser of `user_context`: which model
//! (`turn_analyzer` in TOML), and [`TurnAnalyzer`], which keeps the turn's
//! audio and runs the model on it off the async runtime.
//!
//! [`end_of_turn_model`] is the one place a model is built from its name:
//! a new model is a variant of [`TurnAnalyzerKind`] and an arm there.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::oneshot;

use crate::frame::AudioFrame;
use crate::pipeline::BuildError;
use crate::vad::{EndOfTurnModel, ModelInput, SmartTurnModel};

/// How much of the turn's end a model is given: Smart Turn's window.
const WINDOW_SECS: u32 = 8;

/// How much audio before the turn's speech began the model is given: the
/// VAD's start may be placed a frame or two late, and a clipped onset is
/// not what the model learned on. What came earlier (the silence, or the
/// echo of the bot's reply, since the last turn) is not the turn's; Pipecat
/// likewise feeds from the speech's start (minus its `pre_speech_ms`).
const LEAD_IN: Duration = Duration::from_millis(200);

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
    /// The model's sample rate.
    rate: u32,
    window: usize,
    audio: VecDeque<i16>,
    /// The turn's speech has begun: the audio kept starts with it.
    speech_begun: bool,
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
            rate,
            window: (rate * WINDOW_SECS) as usize,
            audio: VecDeque::new(),
            speech_begun: false,
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

    /// The user started speaking at `now`, the speech having begun at
    /// `start` (session times): the turn's first speech drops the audio
    /// kept from before it (but [`LEAD_IN`]); speech resuming within the
    /// turn keeps the turn's audio. Speech that brought no words (a cough
    /// over the bot, whose reply then resumed) does not open the turn:
    /// with `no_words_yet` the audio is trimmed again.
    pub(super) fn speech_started(&mut self, now: Duration, start: Duration, no_words_yet: bool) {
        if std::mem::replace(&mut self.speech_begun, true) && !no_words_yet {
            return;
        }
        let since = now.saturating_sub(start) + LEAD_IN;
        let keep = (since.as_secs_f64() * f64::from(self.rate)).round() as usize;
        let excess = self.audio.len().saturating_sub(keep);
        self.audio.drain(..excess);
    }

    /// The turn is over: its audio is not the next turn's.
    pub(super) fn clear(&mut self) {
        self.audio.clear();
        self.speech_begun = false;
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

    /// A model that is never run: the tests look at the audio kept.
    struct Unused;

    impl EndOfTurnModel for Unused {
        fn sample_rate(&self) -> u32 {
            16_000
        }

        fn end_of_turn_probability(&mut self, _audio: &[i16]) -> f32 {
            0.0
        }
    }

    fn frame(at_ms: u64) -> AudioFrame {
        AudioFrame::from_samples(&[1; 320], 16_000, 1, Duration::from_millis(at_ms))
    }

    #[test]
    fn the_turns_audio_starts_shortly_before_its_speech() {
        let ms = Duration::from_millis;
        let mut analyzer = TurnAnalyzer::new(Box::new(Unused));
        // 3 s heard before the user speaks (the bot's reply, silence).
        for at in (0..3_000).step_by(20) {
            analyzer.hear(&frame(at));
        }
        // Speech from 2.8 s, reported at 3 s: 200 ms of it and the lead-in.
        analyzer.speech_started(ms(3_000), ms(2_800), true);
        assert_eq!(analyzer.audio.len(), 16 * 400);
        analyzer.hear(&frame(3_000));
        // Speech resuming within the turn keeps the turn's audio.
        analyzer.speech_started(ms(5_000), ms(4_900), false);
        assert_eq!(analyzer.audio.len(), 16 * 420);
        // The next turn starts afresh.
        analyzer.clear();
        analyzer.hear(&frame(6_000));
        analyzer.speech_started(ms(6_020), ms(6_020), true);
        assert_eq!(analyzer.audio.len(), 320);
        // That speech brought no words (a cough); the bot's reply resumes
        // and is heard for a second: the real speech trims it away.
        for at in (6_020..7_020).step_by(20) {
            analyzer.hear(&frame(at));
        }
        analyzer.speech_started(ms(7_020), ms(6_920), true);
        assert_eq!(analyzer.audio.len(), 16 * 300);
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
