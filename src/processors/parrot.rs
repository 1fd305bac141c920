//! `parrot`: repeats each user utterance back once the user stops speaking.
//!
//! The keyless demo: it exercises the whole audio path (transport in and
//! out, VAD, turn-taking, interruptions) without any provider. Each
//! utterance is cut from the inbound audio between the VAD's speech start
//! and end times (the VAD decides a little after speech starts, so recent
//! audio is kept to reach back to the start), and played back from a child
//! task, bracketed by `TtsStarted` and `TtsStopped` so the output knows when
//! the utterance is complete. An interruption aborts the playback. With no
//! VAD in the pipeline (no `VadParams` frame announced one), the whole input
//! is one utterance, played back when the input ends.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::config::Seconds;
use crate::frame::RecentAudio;
use crate::frame::{AudioFrame, Direction, Frame, FrameBody};
use crate::pipeline::ChildTask;
use crate::pipeline::ProcessorFactory;
use crate::pipeline::{BuildError, SessionSetup};
use crate::pipeline::{Processor, ProcessorContext, ProcessorError};

/// How far back audio is kept while the user is not speaking: longer than
/// any VAD start window.
const PRE_ROLL: Duration = Duration::from_secs(2);

/// `[[processor]] type = "parrot"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParrotConfig {
    /// The longest utterance repeated, in seconds (above 0, at most 600);
    /// longer ones are cut to their last `max_secs`. Default 30.
    pub max_secs: Seconds<1, 600>,
}

impl Default for ParrotConfig {
    fn default() -> Self {
        ParrotConfig {
            max_secs: Seconds::from_millis(30_000),
        }
    }
}

impl ProcessorFactory for ParrotConfig {
    fn build(&self, _setup: &SessionSetup) -> Result<Box<dyn Processor>, BuildError> {
        Ok(Box::new(Parrot::new(self.max_secs.duration())))
    }
}

/// Repeats each utterance. See the module docs.
pub struct Parrot {
    max: Duration,
    recent: RecentAudio,
    /// Speech start of the utterance being heard.
    speech_start: Option<Duration>,
    saw_vad: bool,
    playback: ChildTask,
}

impl Parrot {
    /// A parrot repeating utterances of up to `max`.
    pub fn new(max: Duration) -> Self {
        Parrot {
            max,
            recent: RecentAudio::new(),
            speech_start: None,
            saw_vad: false,
            playback: ChildTask::new("parrot playback"),
        }
    }

    fn keep(&mut self, audio: &AudioFrame) {
        let window = if self.speech_start.is_some() || !self.saw_vad {
            self.max
        } else {
            PRE_ROLL
        };
        self.recent.keep(audio, window);
    }

    fn play(&mut self, frames: Vec<AudioFrame>, ctx: &ProcessorContext) {
        if frames.is_empty() {
            return;
        }
        let ctx = ctx.clone();
        let playback = async move {
            ctx.push_downstream(FrameBody::TtsStarted).await;
            for frame in frames {
                ctx.push_downstream(FrameBody::OutputAudio(frame)).await;
            }
            ctx.push_downstream(FrameBody::TtsStopped).await;
        };
        // Replaces (aborts) the utterance still playing.
        self.playback.start(playback);
    }
}

#[async_trait]
impl Processor for Parrot {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        match &frame.body {
            FrameBody::InputAudio(audio) => self.keep(audio),
            FrameBody::VadParams(_) => self.saw_vad = true,
            FrameBody::UserStartedSpeaking { start } => {
                self.saw_vad = true;
                self.speech_start = Some(*start);
            }
            FrameBody::UserStoppedSpeaking { end } => {
                self.saw_vad = true;
                if let Some(start) = self.speech_start.take() {
                    let frames = self.recent.take_between(start, *end);
                    self.play(frames, ctx);
                }
            }
            _ => {}
        }
        ctx.push(frame, direction).await;
        Ok(())
    }

    async fn on_interruption(&mut self, _ctx: &ProcessorContext) {
        self.playback.abort();
    }

    async fn on_end(&mut self, ctx: &ProcessorContext) -> Result<(), ProcessorError> {
        if !self.saw_vad {
            let frames = self.recent.take_all();
            self.play(frames, ctx);
        }
        // Finish the utterance in flight before End goes on.
        self.playback.finish().await?;
        Ok(())
    }

    async fn on_cancel(&mut self, _ctx: &ProcessorContext) {
        self.playback.abort();
    }
}
