//! Processors that exist only for tests, and a registry with them.
//!
//! - `test_turns`: a stand-in for the VAD (type `vad`, being built
//!   elsewhere): speech is 20 ms frames louder than a threshold; it pushes
//!   `UserStartedSpeaking` after `start_ms` of speech and
//!   `UserStoppedSpeaking` after `stop_ms` of quiet, and asks for an
//!   interruption when the user starts speaking over the bot.
//! - `test_end_on_key`: asks the pipeline to end with reason `end_call`
//!   when the caller presses `key`, as the LLM's `end_call` tool will.
//! - `test_say_on_key`: when the caller presses `key`, replies with a tone
//!   of `secs` at `rate` Hz in one frame, as a TTS might.
//! - `scripted_vad`: says the user started and stopped speaking at times
//!   given in the TOML, as the VAD would for that audio.
//! - `fake_turns` (in `turns.rs`): completes conversation turns, standing
//!   in for the context aggregators.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use voxpipe::audio::pcm;
use voxpipe::frame::{AudioFrame, Direction, Frame, FrameBody, StartFrame};
use voxpipe::pipeline::ProcessorFactory;
use voxpipe::pipeline::{BuildError, SessionSetup};
use voxpipe::pipeline::{Processor, ProcessorContext, ProcessorError};
use voxpipe::processors::ProcessorRegistry;

use super::signal::sine;
use super::turns::FakeTurnsConfig;

/// The built-in processors and every test one.
pub fn registry() -> ProcessorRegistry {
    let mut registry = ProcessorRegistry::builtin();
    registry.register::<TestTurnsConfig>("test_turns");
    registry.register::<EndOnKeyConfig>("test_end_on_key");
    registry.register::<SayOnKeyConfig>("test_say_on_key");
    registry.register::<ScriptedVadConfig>("scripted_vad");
    registry.register::<FakeTurnsConfig>("fake_turns");
    registry
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestTurnsConfig {
    /// RMS (full scale = 1) above which a frame is speech.
    #[serde(default = "default_threshold")]
    threshold: f32,
    #[serde(default = "default_start_ms")]
    start_ms: u64,
    #[serde(default = "default_stop_ms")]
    stop_ms: u64,
}

fn default_threshold() -> f32 {
    0.02
}
fn default_start_ms() -> u64 {
    60
}
fn default_stop_ms() -> u64 {
    300
}

impl ProcessorFactory for TestTurnsConfig {
    fn build(&self, _setup: &SessionSetup) -> Result<Box<dyn Processor>, BuildError> {
        Ok(Box::new(TestTurns {
            threshold: self.threshold,
            start: Duration::from_millis(self.start_ms),
            stop: Duration::from_millis(self.stop_ms),
            speaking: false,
            run: Duration::ZERO,
            bot_speaking: false,
            allow_interruptions: true,
        }))
    }
}

struct TestTurns {
    threshold: f32,
    start: Duration,
    stop: Duration,
    speaking: bool,
    /// How long the current run of speech (or quiet) has lasted.
    run: Duration,
    bot_speaking: bool,
    allow_interruptions: bool,
}

#[async_trait]
impl Processor for TestTurns {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        match &frame.body {
            FrameBody::BotStartedSpeaking => self.bot_speaking = true,
            FrameBody::BotStoppedSpeaking => self.bot_speaking = false,
            _ => {}
        }
        let FrameBody::InputAudio(audio) = &frame.body else {
            ctx.push(frame, direction).await;
            return Ok(());
        };
        let loud = pcm::rms(&audio.samples()) > self.threshold;
        let end = audio.pts + audio.duration();
        let signal = if loud == self.speaking {
            self.run = Duration::ZERO;
            None
        } else {
            self.run += audio.duration();
            let wait = if loud { self.start } else { self.stop };
            (self.run >= wait).then(|| {
                self.speaking = loud;
                let at = end.saturating_sub(self.run);
                self.run = Duration::ZERO;
                if loud {
                    FrameBody::UserStartedSpeaking { start: at }
                } else {
                    FrameBody::UserStoppedSpeaking { end: at }
                }
            })
        };
        ctx.push(frame, direction).await;
        if let Some(signal) = signal {
            let interrupts = matches!(signal, FrameBody::UserStartedSpeaking { .. })
                && self.bot_speaking
                && self.allow_interruptions;
            ctx.push_downstream(signal).await;
            if interrupts {
                ctx.request_interruption().await;
            }
        }
        Ok(())
    }

    async fn on_start(
        &mut self,
        start: &StartFrame,
        _ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        self.allow_interruptions = start.allow_interruptions;
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndOnKeyConfig {
    key: char,
}

impl ProcessorFactory for EndOnKeyConfig {
    fn build(&self, _setup: &SessionSetup) -> Result<Box<dyn Processor>, BuildError> {
        Ok(Box::new(EndOnKey { key: self.key }))
    }
}

struct EndOnKey {
    key: char,
}

#[async_trait]
impl Processor for EndOnKey {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        let end = matches!(frame.body, FrameBody::Dtmf { digit } if digit == self.key);
        ctx.push(frame, direction).await;
        if end {
            ctx.request_end("end_call").await;
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SayOnKeyConfig {
    key: char,
    secs: f64,
    rate: u32,
    freq: f64,
}

impl ProcessorFactory for SayOnKeyConfig {
    fn build(&self, _setup: &SessionSetup) -> Result<Box<dyn Processor>, BuildError> {
        let len = (self.secs * f64::from(self.rate)) as usize;
        let samples = sine(self.freq, self.rate, len, 8_000.0);
        Ok(Box::new(SayOnKey {
            key: self.key,
            reply: AudioFrame::from_samples(&samples, self.rate, 1, Duration::ZERO),
        }))
    }
}

struct SayOnKey {
    key: char,
    reply: AudioFrame,
}

#[async_trait]
impl Processor for SayOnKey {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        let say = matches!(frame.body, FrameBody::Dtmf { digit } if digit == self.key);
        ctx.push(frame, direction).await;
        if say {
            ctx.push_downstream(FrameBody::TtsStarted).await;
            ctx.push_downstream(FrameBody::OutputAudio(self.reply.clone()))
                .await;
            ctx.push_downstream(FrameBody::TtsStopped).await;
        }
        Ok(())
    }
}

/// A VAD stand-in for tests: says the user started speaking 0.2 s after
/// each scripted speech start and stopped 0.5 s after its end, as the VAD
/// decides (with the speech boundaries it reports).
#[derive(Debug, Clone, Deserialize)]
pub struct ScriptedVadConfig {
    /// `[start, end]` of each utterance, in seconds.
    pub speech: Vec<[f64; 2]>,
}

impl ProcessorFactory for ScriptedVadConfig {
    fn build(&self, _setup: &SessionSetup) -> Result<Box<dyn Processor>, BuildError> {
        let mut marks = Vec::new();
        for [start, end] in &self.speech {
            let (start, end) = (
                Duration::from_secs_f64(*start),
                Duration::from_secs_f64(*end),
            );
            marks.push((
                start + Duration::from_millis(200),
                FrameBody::UserStartedSpeaking { start },
            ));
            marks.push((
                end + Duration::from_millis(500),
                FrameBody::UserStoppedSpeaking { end },
            ));
        }
        Ok(Box::new(ScriptedVad { marks }))
    }
}

struct ScriptedVad {
    marks: Vec<(Duration, FrameBody)>,
}

#[async_trait]
impl Processor for ScriptedVad {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        let due = match &frame.body {
            FrameBody::InputAudio(audio) => Some(audio.pts + audio.duration()),
            _ => None,
        };
        ctx.push(frame, direction).await;
        if let Some(now) = due {
            while self.marks.first().is_some_and(|(at, _)| *at <= now) {
                let (_, body) = self.marks.remove(0);
                ctx.push_both_ways(body).await;
            }
        }
        Ok(())
    }
}
