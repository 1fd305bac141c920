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
//! # Transcribing at a pause
//!
//! With `transcribe_on_pause`, the utterance so far is sent when the VAD
//! reports a pause (`UserPausedSpeaking`, after its `pause_secs`), before
//! the stop confirms it (`stop_secs` later): the transcription's time runs
//! during the stop's wait instead of after it. When the stop comes with the
//! same end (the user did not go on), that transcript is the utterance's
//! and no second request is made; when the user went on, it is discarded
//! (an answer still on its way is dropped, the request cancelled) and the
//! whole utterance is sent at the stop as usual. Nothing is pushed before
//! its verdict, so a discarded transcript is never seen downstream. The
//! cost: a request thrown away for every pause the user speaks through.
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
use futures_util::future::{Either, select};
use tokio::sync::{mpsc, watch};

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
    /// For one sent at a pause: whether its transcript counts.
    verdict: Option<watch::Receiver<Verdict>>,
}

/// What became of an utterance sent at a pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The stop has not come yet.
    Pending,
    /// The stop came with the same end: the transcript is the utterance's.
    Confirmed,
    /// The user went on (or the session ended): the transcript is dropped.
    Discarded,
}

/// An utterance sent at a pause, waiting for the stop.
struct EarlyUtterance {
    /// Where the speech it holds paused.
    end: Duration,
    verdict: watch::Sender<Verdict>,
}

impl EarlyUtterance {
    fn decide(self, verdict: Verdict) {
        // The worker may have finished with it (an aborted session).
        let _ = self.verdict.send(verdict);
    }
}

/// The segmented STT processor. See the module docs.
pub struct SegmentedStt {
    speech: Arc<dyn SegmentedSpeech>,
    connection: Connection,
    pre_roll: Duration,
    max_utterance: Duration,
    transcribe_on_pause: bool,
    early: Option<EarlyUtterance>,
    /// A pause whose audio has not all come yet (an input frame longer
    /// than the pause): sent once it has.
    pause_due: Option<Duration>,
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
        transcribe_on_pause: bool,
    ) -> Self {
        SegmentedStt {
            speech,
            connection,
            pre_roll,
            max_utterance,
            transcribe_on_pause,
            early: None,
            pause_due: None,
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

    /// The kept audio from `start` to `end`, as one utterance; the kept
    /// audio is forgotten.
    fn cut(&mut self, start: Duration, end: Duration) -> Option<Utterance> {
        utterance(&self.recent.take_between(start, end))
    }

    /// The user paused at `end`: with `transcribe_on_pause`, sends the
    /// speech so far (once its audio up to `end` is here), keeping the audio
    /// for the stop.
    fn paused(&mut self, end: Duration) {
        if !self.transcribe_on_pause || self.speech_start.is_none() {
            return;
        }
        if let Some(previous) = self.early.take() {
            previous.decide(Verdict::Discarded);
        }
        self.pause_due = Some(end);
        self.send_due_pause();
    }

    /// Sends the utterance of the pause due, if the audio reaches its end.
    fn send_due_pause(&mut self) {
        let (Some(end), Some(start)) = (self.pause_due, self.speech_start) else {
            return;
        };
        if self.recent.kept_until().is_none_or(|until| until < end) {
            return;
        }
        self.pause_due = None;
        let frames = self
            .recent
            .between(start.saturating_sub(self.pre_roll), end);
        let Some(mut utterance) = utterance(&frames) else {
            return;
        };
        let (verdict, receiver) = watch::channel(Verdict::Pending);
        utterance.verdict = Some(receiver);
        self.submit(Some(utterance));
        self.early = Some(EarlyUtterance { end, verdict });
    }

    /// The user stopped at `end`: confirms the utterance sent at the pause,
    /// or sends the whole one.
    fn stopped(&mut self, end: Duration) {
        self.pause_due = None;
        let Some(start) = self.speech_start.take() else {
            return;
        };
        match self.early.take() {
            Some(early) if early.end == end => {
                early.decide(Verdict::Confirmed);
                self.recent.take_all();
            }
            early => {
                if let Some(early) = early {
                    early.decide(Verdict::Discarded);
                }
                let utterance = self.cut(start.saturating_sub(self.pre_roll), end);
                self.submit(utterance);
            }
        }
    }

    fn submit(&self, utterance: Option<Utterance>) {
        if let (Some(utterance), Some(jobs)) = (utterance, &self.jobs)
            && jobs.send(utterance).is_err()
        {
            tracing::warn!("the transcription worker has stopped; utterance dropped");
        }
    }
}

/// `frames` (those at the first one's rate), as one utterance.
fn utterance(frames: &[AudioFrame]) -> Option<Utterance> {
    let rate = frames.first()?.sample_rate;
    let mut samples = Vec::new();
    for frame in frames.iter().filter(|f| f.sample_rate == rate) {
        samples.extend(crate::audio::pcm::mixdown_to_mono(
            &frame.samples(),
            frame.channels,
        ));
    }
    (!samples.is_empty()).then_some(Utterance {
        samples,
        rate,
        verdict: None,
    })
}

/// The outcome of `work` once `verdict` confirms it, or `None` as soon as
/// it is discarded (the work is then dropped: a request in flight is
/// cancelled). A verdict never given (the processor gone) discards it.
async fn when_confirmed<T>(
    work: impl Future<Output = T>,
    verdict: watch::Receiver<Verdict>,
) -> Option<T> {
    async fn decided(mut verdict: watch::Receiver<Verdict>) -> Verdict {
        // The current value is read first, so a verdict given just before
        // the sender was dropped still counts.
        match verdict.wait_for(|v| *v != Verdict::Pending).await {
            Ok(v) => *v,
            Err(_) => Verdict::Discarded,
        }
    }
    let work = std::pin::pin!(work);
    let decision = std::pin::pin!(decided(verdict));
    // The verdict is polled first: an utterance discarded while it waited
    // its turn is never sent.
    match select(decision, work).await {
        Either::Left((Verdict::Confirmed, work)) => Some(work.await),
        Either::Left(_) => None,
        Either::Right((outcome, decision)) => {
            (decision.await == Verdict::Confirmed).then_some(outcome)
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
        let transcription = transcribe_within_budget(&*speech, &connection, &utterance);
        let outcome = match utterance.verdict.clone() {
            None => transcription.await,
            Some(verdict) => match when_confirmed(transcription, verdict).await {
                Some(outcome) => outcome,
                None => {
                    tracing::debug!(
                        "the user went on: the transcript sent at the pause is dropped"
                    );
                    continue;
                }
            },
        };
        let text = match outcome {
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
            FrameBody::InputAudio(audio) => {
                self.keep(audio);
                self.send_due_pause();
            }
            FrameBody::UserStartedSpeaking { start } => {
                self.saw_vad = true;
                self.speech_start = Some(*start);
            }
            FrameBody::UserPausedSpeaking { end } => self.paused(*end),
            FrameBody::UserStoppedSpeaking { end } => {
                self.saw_vad = true;
                let end = *end;
                // The stop goes first, so its transcript always follows it.
                ctx.push(frame, direction).await;
                self.stopped(end);
                return Ok(());
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
        self.pause_due = None;
        if let Some(early) = self.early.take() {
            // The input ended while the user spoke: the whole is sent below.
            early.decide(Verdict::Discarded);
        }
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
