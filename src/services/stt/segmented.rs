//! [`SegmentedStt`]: speech-to-text one utterance at a time, for services
//! that transcribe a file (OpenAI-compatible `/audio/transcriptions`).
//!
//! The VAD bounds each utterance: audio is kept from `UserStartedSpeaking`
//! (reaching back `pre_roll` before the speech start it reports, so the
//! first syllable is not clipped) to `UserStoppedSpeaking`, then sent as a
//! WAV in one request. Requests run one at a time in a child task, so
//! transcriptions come out in the order the user spoke; an interruption
//! does not touch them (they are the user's words). Without a VAD in the
//! pipeline the whole input, up to `max_utterance`, is one utterance,
//! transcribed when the input ends.
//!
//! An utterance is the user's turn, so a provider outage must not lose it:
//! a request that fails before any answer (refused connection, no response
//! in time, 429 or 5xx) is tried again with backoff for as long as the
//! utterance's budget (`response_timeout_secs`) lasts. One that still
//! cannot be transcribed is reported (an error frame) and kept as a turn
//! whose text is [`UNTRANSCRIBED`], so the conversation records it and the
//! bot can ask the user to say it again.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::audio::wav::encode_wav;
use crate::frame::RecentAudio;
use crate::frame::{AudioFrame, Direction, Frame, FrameBody, TranscriptionFrame};
use crate::pipeline::ChildTask;
use crate::pipeline::{Processor, ProcessorContext, ProcessorError};
use crate::services::http::{next_chunk, send};
use crate::services::retry::jitter;
use crate::services::task::report;
use crate::services::{Connection, ServiceError};

/// How far back audio is kept while the user is silent: longer than any
/// VAD start window plus the pre-roll.
const RECENT: Duration = Duration::from_secs(3);

/// The largest response body read, in bytes.
const MAX_BODY: usize = 1 << 20;

/// The text of an utterance that could not be transcribed.
pub const UNTRANSCRIBED: &str = "[untranscribed speech]";

/// How a provider's file-transcription endpoint is called.
pub(crate) trait SegmentedSpeech: Send + Sync + 'static {
    /// The provider's name.
    fn provider(&self) -> &'static str;

    /// The request transcribing `wav` (a whole WAV file).
    fn request(&self, client: &reqwest::Client, wav: &[u8]) -> reqwest::RequestBuilder;

    /// The transcript in a response body.
    fn parse(&self, body: &[u8]) -> Result<String, ServiceError>;
}

/// One utterance to transcribe.
struct Utterance {
    samples: Vec<i16>,
    rate: u32,
}

/// The segmented STT processor. See the module docs.
pub struct SegmentedStt {
    speech: Arc<dyn SegmentedSpeech>,
    connection: Connection,
    pre_roll: Duration,
    max_utterance: Duration,
    recent: RecentAudio,
    speech_start: Option<Duration>,
    saw_vad: bool,
    jobs: Option<mpsc::UnboundedSender<Utterance>>,
    worker: ChildTask,
}

impl SegmentedStt {
    pub(crate) fn new(
        speech: Arc<dyn SegmentedSpeech>,
        connection: Connection,
        pre_roll: Duration,
        max_utterance: Duration,
    ) -> Self {
        SegmentedStt {
            speech,
            connection,
            pre_roll,
            max_utterance,
            recent: RecentAudio::new(),
            speech_start: None,
            saw_vad: false,
            jobs: None,
            worker: ChildTask::new("the transcription worker"),
        }
    }

    fn keep(&mut self, audio: &AudioFrame) {
        let window = if self.speech_start.is_some() || !self.saw_vad {
            self.max_utterance
        } else {
            RECENT
        };
        self.recent.keep(audio, window);
    }

    /// The kept audio from `start` to `end`, as one utterance.
    fn cut(&mut self, start: Duration, end: Duration) -> Option<Utterance> {
        let frames = self.recent.take_between(start, end);
        let rate = frames.first()?.sample_rate;
        let mut samples = Vec::new();
        for frame in frames.iter().filter(|f| f.sample_rate == rate) {
            samples.extend(crate::audio::pcm::mixdown_to_mono(
                &frame.samples(),
                frame.channels,
            ));
        }
        (!samples.is_empty()).then_some(Utterance { samples, rate })
    }

    fn submit(&self, utterance: Option<Utterance>) {
        if let (Some(utterance), Some(jobs)) = (utterance, &self.jobs)
            && jobs.send(utterance).is_err()
        {
            tracing::warn!("the transcription worker has stopped; utterance dropped");
        }
    }
}

async fn transcribe(
    speech: &dyn SegmentedSpeech,
    connection: &Connection,
    utterance: &Utterance,
) -> Result<String, ServiceError> {
    let wav = encode_wav(utterance.rate, &utterance.samples)
        .map_err(|e| ServiceError::Protocol(format!("cannot encode the utterance: {e}")))?;
    let response = send(
        |client| speech.request(client, &wav),
        connection,
        speech.provider(),
    )
    .await?;
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = next_chunk(&mut stream, connection.read_timeout).await? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            return Err(ServiceError::Protocol(
                "the transcription is larger than 1 MiB".into(),
            ));
        }
    }
    speech.parse(&body)
}

/// Whether `error` came before the provider answered anything, so that
/// trying again cannot repeat or lose an answer.
fn before_any_answer(error: &ServiceError) -> bool {
    match error {
        ServiceError::Connect(_) | ServiceError::Request(_) => true,
        ServiceError::Timeout { waiting_for, .. } => *waiting_for == "response",
        other => other.is_retryable(),
    }
}

/// Transcribes `utterance`, trying again after failures before any answer
/// while the utterance's budget (the connection's response timeout, from
/// the first attempt) lasts.
async fn transcribe_within_budget(
    speech: &dyn SegmentedSpeech,
    connection: &Connection,
    utterance: &Utterance,
) -> Result<String, ServiceError> {
    let deadline = tokio::time::Instant::now() + connection.response_timeout;
    let mut retry = 0;
    loop {
        let error = match transcribe(speech, connection, utterance).await {
            Ok(text) => return Ok(text),
            Err(error) => error,
        };
        retry += 1;
        let wait = connection.retry.backoff(retry, jitter());
        if !before_any_answer(&error) || tokio::time::Instant::now() + wait >= deadline {
            return Err(error);
        }
        tracing::warn!(provider = speech.provider(), retry, ?wait, %error, "transcription failed; trying again");
        tokio::time::sleep(wait).await;
    }
}

async fn work(
    speech: Arc<dyn SegmentedSpeech>,
    connection: Connection,
    mut jobs: mpsc::UnboundedReceiver<Utterance>,
    ctx: ProcessorContext,
) {
    while let Some(utterance) = jobs.recv().await {
        let text = match transcribe_within_budget(&*speech, &connection, &utterance).await {
            Ok(text) if text.trim().is_empty() => {
                tracing::debug!("empty transcription");
                continue;
            }
            Ok(text) => text.trim().to_owned(),
            Err(error) => {
                tracing::warn!(provider = speech.provider(), %error, "transcription failed; the turn is kept untranscribed");
                report(error.into_processor_error(speech.provider()), &ctx).await;
                UNTRANSCRIBED.to_owned()
            }
        };
        let frame = TranscriptionFrame {
            text,
            user_id: None,
            language: None,
            at: ctx.now(),
        };
        ctx.push_downstream(FrameBody::Transcription(frame)).await;
    }
}

#[async_trait]
impl Processor for SegmentedStt {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        match &frame.body {
            FrameBody::InputAudio(audio) => self.keep(audio),
            FrameBody::UserStartedSpeaking { start } => {
                self.saw_vad = true;
                self.speech_start = Some(*start);
            }
            FrameBody::UserStoppedSpeaking { end } => {
                self.saw_vad = true;
                if let Some(start) = self.speech_start.take() {
                    let utterance = self.cut(start.saturating_sub(self.pre_roll), *end);
                    self.submit(utterance);
                }
            }
            _ => {}
        }
        ctx.push(frame, direction).await;
        Ok(())
    }

    async fn on_start(
        &mut self,
        _start: &crate::frame::StartFrame,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        let (jobs, receiver) = mpsc::unbounded_channel();
        self.jobs = Some(jobs);
        self.worker.start(work(
            Arc::clone(&self.speech),
            self.connection,
            receiver,
            ctx.clone(),
        ));
        Ok(())
    }

    async fn on_end(&mut self, _ctx: &ProcessorContext) -> Result<(), ProcessorError> {
        let last = match (self.saw_vad, self.speech_start.take()) {
            (false, _) => self.cut(Duration::ZERO, Duration::MAX),
            // The input ended while the user spoke: what was said counts.
            (true, Some(start)) => self.cut(start.saturating_sub(self.pre_roll), Duration::MAX),
            (true, None) => None,
        };
        self.submit(last);
        self.jobs = None;
        self.worker.finish().await?;
        Ok(())
    }

    async fn on_cancel(&mut self, _ctx: &ProcessorContext) {
        self.jobs = None;
        self.worker.abort();
    }
}
