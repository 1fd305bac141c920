//! `vad`: decides when the user starts and stops speaking, and when their
//! speech interrupts the bot.
//!
//! Inbound audio is analysed as it passes and forwarded unchanged; nothing
//! is held back but the partial chunk the model still waits for (at most
//! 32 ms). Audio at another rate than the model's (Silero runs at 8 or
//! 16 kHz, Earshot at 16 kHz) is resampled for the model only, and audio
//! from an 8 kHz source is analysed at 8 kHz where the model can (see
//! [`FrameVad`]).
//!
//! Pushed downstream: `VadParams` first (so later processors know a VAD
//! decides turns), then, just before the audio frame that decided them,
//! `UserStartedSpeaking { start }` and `UserStoppedSpeaking { end }`, with
//! the session times where the speech itself began and ended, computed from
//! the audio's `pts` and sample counts (see [`crate::vad`]); with
//! `pause_secs`, also `UserPausedSpeaking { end }` once per pause that long,
//! before the stop (for a segmented STT's `transcribe_on_pause`).
//!
//! # Interruptions
//!
//! The processor also owns the session's barge-in policy
//! ([`BargeIn`](crate::vad::BargeIn)): it follows the bot's speaking state
//! from the `BotStartedSpeaking` / `BotStoppedSpeaking` frames the output
//! transport pushes upstream, and when the user has spoken over the bot for
//! `[interruption] min_secs` (and `[pipeline] allow_interruptions` is on) it
//! requests an interruption. This is the one place where both facts are
//! known as soon as they are true.

use async_trait::async_trait;
use serde::{Deserialize, Deserializer};

use crate::config::Seconds;
use crate::frame::{AudioFrame, Direction, Frame, FrameBody, StartFrame};
use crate::pipeline::ProcessorFactory;
use crate::pipeline::{BuildError, SessionSetup};
use crate::pipeline::{Processor, ProcessorContext, ProcessorError};
use crate::vad::{BargeIn, EarshotVad, FrameVad, SileroVad, VadEvent, VadParams, VoiceModel};

/// Which model scores the audio.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VadEngine {
    /// Silero VAD v6: the reference model, at 8 kHz for 8 kHz pipelines
    /// and at 16 kHz otherwise.
    #[default]
    Silero,
    /// Earshot: about a tenth of Silero's cost, at 16 kHz.
    Earshot,
}

/// `[[processor]] type = "vad"`: Pipecat's `VADParams`, and the engine.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VadConfig {
    /// `silero` (default) or `earshot`.
    pub engine: VadEngine,
    /// Minimum model confidence for speech, 0 to 1. Default 0.7.
    #[serde(deserialize_with = "unit_interval")]
    pub confidence: f64,
    /// Speech needed before the user counts as speaking, seconds (0 to 10).
    /// Default 0.2.
    pub start_secs: Seconds<0, 10>,
    /// Quiet needed before the user counts as stopped, seconds (0 to 10).
    /// Default 0.8.
    pub stop_secs: Seconds<0, 10>,
    /// Minimum smoothed volume for speech, 0 to 1, on Pipecat 1.14's scale
    /// (loudness of the last 400 ms from -110 to -10 LUFS). Default 0.6.
    #[serde(deserialize_with = "unit_interval")]
    pub min_volume: f64,
    /// Quiet after which a pause is reported (`UserPausedSpeaking`), before
    /// the stop, so that a segmented STT with `transcribe_on_pause` can
    /// transcribe early; seconds (0 to 10). Not Pipecat's. Default: no
    /// pauses reported.
    pub pause_secs: Option<Seconds<0, 10>>,
}

impl Default for VadConfig {
    /// Pipecat's defaults ([`VadParams::default`]).
    fn default() -> Self {
        let params = VadParams::default();
        let millis = |secs: f64| (secs * 1000.0).round() as u64;
        VadConfig {
            engine: VadEngine::default(),
            confidence: params.confidence,
            start_secs: Seconds::from_millis(millis(params.start_secs)),
            stop_secs: Seconds::from_millis(millis(params.stop_secs)),
            min_volume: params.min_volume,
            pause_secs: None,
        }
    }
}

fn unit_interval<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    let value = f64::deserialize(deserializer)?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(serde::de::Error::custom(format!(
            "expected a value from 0 to 1, not {value}"
        )))
    }
}

impl VadConfig {
    fn params(&self) -> VadParams {
        VadParams {
            confidence: self.confidence,
            start_secs: self.start_secs.as_secs_f64(),
            stop_secs: self.stop_secs.as_secs_f64(),
            min_volume: self.min_volume,
        }
    }
}

impl ProcessorFactory for VadConfig {
    fn build(&self, setup: &SessionSetup) -> Result<Box<dyn Processor>, BuildError> {
        if let Some(pause) = self.pause_secs
            && pause.duration() >= self.stop_secs.duration()
        {
            // A pause as long as the stop is never reported: say so rather
            // than leave `transcribe_on_pause` silently without pauses.
            return Err(BuildError::Invalid(format!(
                "pause_secs must be shorter than stop_secs ({} s), not {} s",
                self.stop_secs.as_secs_f64(),
                pause.as_secs_f64()
            )));
        }
        let model: Box<dyn VoiceModel> = match self.engine {
            VadEngine::Silero => {
                let rate = if setup.sample_rate == 8_000 {
                    8_000
                } else {
                    16_000
                };
                Box::new(SileroVad::new(rate).map_err(|e| BuildError::Other(Box::new(e)))?)
            }
            VadEngine::Earshot => Box::new(EarshotVad::new()),
        };
        let mut vad = Vad::new(
            model,
            self.params(),
            BargeIn::new(setup.allow_interruptions, setup.interruption.min_speech()),
        );
        if let Some(pause) = self.pause_secs {
            vad.vad = vad.vad.with_pauses(pause.as_secs_f64());
        }
        Ok(Box::new(vad))
    }
}

/// The `vad` processor. See the module docs.
pub struct Vad {
    vad: FrameVad,
    barge_in: BargeIn,
    /// The input rate that could not be converted, reported once.
    unconvertible_rate: Option<u32>,
    announced: bool,
}

impl std::fmt::Debug for Vad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vad")
            .field("analyzer", self.vad.analyzer())
            .finish_non_exhaustive()
    }
}

impl Vad {
    /// A VAD running `model` with `params`, interrupting by `barge_in`.
    pub fn new(model: Box<dyn VoiceModel>, params: VadParams, barge_in: BargeIn) -> Self {
        Vad {
            vad: FrameVad::new(model, params),
            barge_in,
            unconvertible_rate: None,
            announced: false,
        }
    }

    /// Analyses `audio`; pushes the decisions it leads to.
    async fn analyze(
        &mut self,
        audio: &AudioFrame,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        if self.unconvertible_rate == Some(audio.sample_rate) {
            return Ok(());
        }
        match self.vad.push(audio) {
            Ok(()) => {}
            Err(err) => {
                self.unconvertible_rate = Some(audio.sample_rate);
                return Err(ProcessorError::recoverable(err));
            }
        }
        while let Some(event) = self.vad.poll_event() {
            let body = match event {
                VadEvent::Started { start } => FrameBody::UserStartedSpeaking {
                    start: self.vad.time_of(start),
                },
                VadEvent::Paused { end } => FrameBody::UserPausedSpeaking {
                    end: self.vad.time_of(end),
                },
                VadEvent::Stopped { end } => FrameBody::UserStoppedSpeaking {
                    end: self.vad.time_of(end),
                },
            };
            ctx.push_downstream(body).await;
        }
        let speech = self
            .vad
            .analyzer()
            .speech()
            .map(|s| (self.vad.time_of(s.start), self.vad.time_of(s.voiced_until)));
        if self.barge_in.should_interrupt(speech) {
            tracing::debug!("user barged in");
            ctx.request_interruption().await;
        }
        Ok(())
    }
}

#[async_trait]
impl Processor for Vad {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        if !self.announced {
            // Here rather than in `on_start`: a frame pushed there would
            // reach the next processor before `Start` does.
            self.announced = true;
            let params = *self.vad.analyzer().params();
            ctx.push_downstream(FrameBody::VadParams(params)).await;
        }
        let mut result = Ok(());
        match &frame.body {
            FrameBody::InputAudio(audio) if direction == Direction::Downstream => {
                result = self.analyze(audio, ctx).await;
            }
            FrameBody::BotStartedSpeaking => self.barge_in.set_bot_speaking(true),
            FrameBody::BotStoppedSpeaking | FrameBody::BotInterrupted { .. } => {
                self.barge_in.set_bot_speaking(false);
            }
            _ => {}
        }
        // Forwarded whatever the analysis made of it: the audio is never
        // lost to a VAD problem.
        ctx.push(frame, direction).await;
        result
    }

    async fn on_start(
        &mut self,
        start: &StartFrame,
        _ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        self.barge_in.set_allowed(start.allow_interruptions);
        Ok(())
    }
}
