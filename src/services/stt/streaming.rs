//! [`StreamingStt`]: live speech-to-text over a WebSocket (Deepgram).
//!
//! Inbound audio is forwarded as it comes and also streamed to the
//! provider by a link task, which owns the socket and pushes
//! `InterimTranscription` and `Transcription` frames as results arrive.
//! When the VAD says the user stopped, the provider is asked to finalise
//! at once. When no audio has gone out for `keepalive`, a keep-alive
//! message holds the socket open. At the end of the session the stream is
//! closed politely and its last finals are pushed before `End` goes on.
//! The link task (`link.rs`) owns the socket; see there for reconnection
//! without losing the utterance in flight.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::frame::{Direction, Frame, FrameBody, StartFrame};
use crate::pipeline::{Processor, ProcessorContext, ProcessorError};
use crate::processors::FrameResampler;
use crate::services::websocket::WsTarget;
use crate::services::{Connection, ServiceError};

use crate::services::task::finish;

use super::link::{Link, LinkCommand};

/// What a result message says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SttEvent {
    /// A transcript of the audio up to `end` (in the socket's stream time).
    Transcript {
        text: String,
        is_final: bool,
        speech_final: bool,
        end: Duration,
    },
}

/// How a provider's live transcription socket is spoken. Pure.
pub(crate) trait StreamingSpeech: Send + Sync + 'static {
    /// The provider's name.
    fn provider(&self) -> &'static str;

    /// Where the socket goes, for 16-bit mono audio at `sample_rate`.
    fn target(&self, sample_rate: u32) -> WsTarget;

    /// The keep-alive message.
    fn keepalive(&self) -> String;

    /// The message asking for final results now, if the provider has one.
    fn finalize(&self) -> Option<String>;

    /// The message asking the provider to finish and close.
    fn close_stream(&self) -> String;

    /// What one text message says.
    fn parse(&self, text: &str) -> Result<Option<SttEvent>, ServiceError>;
}

/// The streaming STT processor. See the module docs.
pub struct StreamingStt {
    speech: Option<Box<dyn StreamingSpeech>>,
    connection: Connection,
    keepalive: Duration,
    max_replay: Duration,
    convert: Option<FrameResampler>,
    link: Option<(mpsc::UnboundedSender<LinkCommand>, JoinHandle<()>)>,
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
            link: None,
        }
    }

    fn send(&self, command: LinkCommand) {
        if let Some((commands, _)) = &self.link {
            // A link that has stopped (refused credentials) was reported.
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
                    self.send(LinkCommand::Audio(audio.data));
                }
            }
            FrameBody::UserStoppedSpeaking { .. } => self.send(LinkCommand::Finalize),
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
        let link = Link::new(
            speech,
            self.connection,
            self.keepalive,
            self.max_replay,
            start.sample_rate,
            ctx.clone(),
        );
        self.link = Some((commands, tokio::spawn(link.run(receiver))));
        Ok(())
    }

    async fn on_end(&mut self, _ctx: &ProcessorContext) -> Result<(), ProcessorError> {
        if let Some((commands, link)) = self.link.take() {
            // Closing the channel asks the link to close the stream and
            // push its last finals.
            drop(commands);
            finish(Some(link), "the transcription link").await?;
        }
        Ok(())
    }

    async fn on_cancel(&mut self, _ctx: &ProcessorContext) {
        if let Some((_, link)) = self.link.take() {
            link.abort();
        }
    }
}
