//! [`StreamingStt`]: live speech-to-text over a WebSocket (Deepgram).
//!
//! Inbound audio is forwarded as it comes and also streamed to the
//! provider by a connection task, which owns the socket and pushes
//! `InterimTranscription` and `Transcription` frames as results arrive.
//! When the VAD says the user stopped, the provider is asked to finalise
//! at once. When no audio has gone out for `keepalive`, a keep-alive
//! message holds the socket open. At the end of the session the stream is
//! closed politely and its last finals are pushed before `End` goes on.
//! The connection's state machine (`connection.rs`) decides all of that,
//! reconnection without losing the utterance in flight included; its task
//! (`connection_task.rs`) only moves the bytes.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::frame::FrameResampler;
use crate::frame::{Direction, Frame, FrameBody, StartFrame};
use crate::pipeline::ChildTask;
use crate::pipeline::{Processor, ProcessorContext, ProcessorError};
use crate::services::Connection;

use super::connection::SttConnection;
use super::connection_task::{SttCommand, drive};
use super::speech::StreamingSpeech;

/// The streaming STT processor. See the module docs.
pub struct StreamingStt {
    speech: Option<Box<dyn StreamingSpeech>>,
    connection: Connection,
    keepalive: Duration,
    max_replay: Duration,
    convert: Option<FrameResampler>,
    commands: Option<mpsc::UnboundedSender<SttCommand>>,
    task: ChildTask,
}

impl StreamingStt {
    pub(crate) fn new(
        speech: Box<dyn StreamingSpeech>,
        connection: Connection,
        keepalive: Duration,
        max_replay: Duration,
    ) -> Self {
        StreamingStt {
            speech: Some(speech),
            connection,
            keepalive,
            max_replay,
            convert: None,
            commands: None,
            task: ChildTask::new("the transcription connection"),
        }
    }

    fn send(&self, command: SttCommand) {
        if let Some(commands) = &self.commands {
            // A connection that has stopped (refused credentials) was
            // reported.
            let _stopped = commands.send(command);
        }
    }
}

#[async_trait]
impl Processor for StreamingStt {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        match &frame.body {
            FrameBody::InputAudio(audio) => {
                if let Some(convert) = &mut self.convert {
                    let audio = convert.convert(audio)?;
                    self.send(SttCommand::Audio(audio.data));
                }
            }
            FrameBody::UserStoppedSpeaking { .. } => self.send(SttCommand::Finalize),
            _ => {}
        }
        ctx.push(frame, direction).await;
        Ok(())
    }

    async fn on_start(
        &mut self,
        start: &StartFrame,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        let Some(speech) = self.speech.take() else {
            return Ok(());
        };
        self.convert = Some(FrameResampler::new(start.sample_rate));
        let (commands, receiver) = mpsc::unbounded_channel();
        let state = SttConnection::new(
            speech,
            self.connection,
            self.keepalive,
            self.max_replay,
            start.sample_rate,
        );
        self.task
            .start(drive(state, self.connection, receiver, ctx.clone()));
        self.commands = Some(commands);
        Ok(())
    }

    async fn on_end(&mut self, _ctx: &ProcessorContext) -> Result<(), ProcessorError> {
        // Closing the channel asks the connection to close the stream and
        // push its last finals.
        self.commands = None;
        self.task.finish().await?;
        Ok(())
    }

    async fn on_cancel(&mut self, _ctx: &ProcessorContext) {
        self.commands = None;
        self.task.abort();
    }
}
