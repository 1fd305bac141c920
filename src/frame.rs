//! Frames: the unit of everything that moves through a pipeline.
//!
//! # The contract
//!
//! Every frame has a [`FrameKind`], decided by its [`FrameBody`] in one place
//! ([`FrameBody::kind`]), and the kind alone decides how the runner queues it:
//!
//! | kind | queueing | on [`FrameBody::Interruption`] |
//! |---|---|---|
//! | [`FrameKind::System`] | its own unbounded lane, served before anything queued | kept |
//! | [`FrameKind::Data`] | FIFO lane, bounded downstream (backpressure) | dropped |
//! | [`FrameKind::Control`] | the same FIFO lane, ordered with data | dropped, except [`FrameBody::End`] |
//!
//! Ordering guarantees, per pair of neighbouring processors and per direction:
//! data and control frames arrive in the order they were pushed; system frames
//! arrive in the order they were pushed; a system frame may overtake data and
//! control frames pushed before it (that is the point: inbound audio and
//! interruptions are never stuck behind outbound work). `End` is a control
//! frame, so it arrives after every data frame pushed before it: "End drains".
//!
//! An interruption drops exactly the data and control frames that were queued
//! (pushed to the processor) before the interruption was, including frames
//! still waiting on backpressure at that moment; frames pushed after it are
//! kept.
//!
//! Frames are immutable snapshots: payloads that are costly to copy are
//! `bytes::Bytes` or `Arc`, so forwarding and cloning never copy audio.
//! Cloning a frame keeps its id, so a frame pushed both upstream and
//! downstream (bot speaking state, errors) is still one event.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::conversation::{Message, ToolCall, Turn};

/// A process-wide unique frame id, increasing in creation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrameId(pub u64);

impl FrameId {
    fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        FrameId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Display for FrameId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Which way a frame travels along the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the transport input toward the transport output: the direction of
    /// the conversation.
    Downstream,
    /// Back toward the transport input: errors, interruption and end requests,
    /// bot speaking state.
    Upstream,
}

/// How the runner queues a frame and whether an interruption drops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// Jumps the queue; never dropped by an interruption.
    System,
    /// FIFO; dropped by an interruption.
    Data,
    /// FIFO with data; dropped by an interruption, except `End`.
    Control,
}

/// One frame: an id, its creation instant and what it carries.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Unique id; kept by clones.
    pub id: FrameId,
    /// When the frame was created (wall clock; used for transit latency).
    pub created: Instant,
    /// What the frame carries.
    pub body: FrameBody,
}

impl Frame {
    /// A new frame with a fresh id, created now.
    pub fn new(body: FrameBody) -> Self {
        Frame {
            id: FrameId::next(),
            created: Instant::now(),
            body,
        }
    }

    /// A new frame made from this one (a changed copy): a fresh id, so it is
    /// a different event, but the same creation instant, so transit time is
    /// still measured from where the original entered the pipeline.
    pub fn derive(&self, body: FrameBody) -> Frame {
        Frame {
            id: FrameId::next(),
            created: self.created,
            body,
        }
    }

    /// The frame's kind (see the module docs).
    pub fn kind(&self) -> FrameKind {
        self.body.kind()
    }

    /// A short name for logs, e.g. `InputAudio`.
    pub fn name(&self) -> &'static str {
        self.body.name()
    }
}

impl From<FrameBody> for Frame {
    fn from(body: FrameBody) -> Self {
        Frame::new(body)
    }
}

/// 16-bit little-endian PCM audio.
///
/// `pts` is the presentation time on the session clock: for input, when the
/// first sample was captured; for output, set by the output transport when
/// the audio is scheduled.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioFrame {
    /// Interleaved 16-bit little-endian samples.
    pub data: Bytes,
    /// Samples per second per channel.
    pub sample_rate: u32,
    /// Number of interleaved channels.
    pub channels: u16,
    /// Presentation time since the session started.
    pub pts: Duration,
}

impl AudioFrame {
    /// Audio from i16 samples.
    pub fn from_samples(samples: &[i16], sample_rate: u32, channels: u16, pts: Duration) -> Self {
        AudioFrame {
            data: crate::audio::pcm::samples_to_le_bytes(samples),
            sample_rate,
            channels,
            pts,
        }
    }

    /// The samples, decoded from little-endian bytes.
    pub fn samples(&self) -> Vec<i16> {
        crate::audio::pcm::samples_from_le_bytes(&self.data)
    }

    /// Number of sample frames (samples per channel).
    pub fn num_frames(&self) -> usize {
        self.data.len() / 2 / usize::from(self.channels.max(1))
    }

    /// How long the audio lasts.
    pub fn duration(&self) -> Duration {
        if self.sample_rate == 0 {
            return Duration::ZERO;
        }
        Duration::from_micros(self.num_frames() as u64 * 1_000_000 / u64::from(self.sample_rate))
    }
}

/// Session parameters every processor learns at start.
#[derive(Debug, Clone, PartialEq)]
pub struct StartFrame {
    /// The pipeline's internal sample rate.
    pub sample_rate: u32,
    /// Whether the user may interrupt the bot.
    pub allow_interruptions: bool,
    /// The session's id (the call id).
    pub session_id: Arc<str>,
}

/// An error raised by a processor or a service.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorFrame {
    /// The processor that raised it.
    pub processor: Arc<str>,
    /// What went wrong, for people.
    pub message: String,
    /// True when the session cannot go on; the session then ends.
    pub fatal: bool,
    /// The remote service involved, e.g. `openai`, if any.
    pub provider: Option<String>,
    /// The HTTP (or WebSocket close) status, if any.
    pub status: Option<u16>,
}

/// A transcription of user speech.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptionFrame {
    /// The text.
    pub text: String,
    /// The user who spoke, if known.
    pub user_id: Option<String>,
    /// Language code, if the service reports one.
    pub language: Option<String>,
    /// Session time at which the transcript arrived.
    pub at: Duration,
}

/// Text the bot is speaking, placed in the audio the TTS produces: what the
/// assistant aggregator keeps of a turn, and (with word timing) how much of
/// it an interruption let through.
#[derive(Debug, Clone, PartialEq)]
pub struct SpokenText {
    /// One word, or a whole sentence when the provider gives no word timing.
    pub text: String,
    /// Where its audio starts, from the start of the response's audio.
    pub start: Duration,
    /// How `text` relates to the audio.
    pub timing: SpokenTiming,
}

/// How precisely a [`SpokenText`] is placed in the audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpokenTiming {
    /// A word the provider timed: it starts at `start`.
    Word,
    /// A sentence: it starts at `start` and spreads over the audio until the
    /// next spoken text (or the end of the response).
    Sentence,
}

/// A measurement reported by the engine or a service.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "metric", rename_all = "snake_case")]
#[non_exhaustive]
pub enum MetricsData {
    /// Time a processor spent in `process`, per frame, over the session.
    ProcessingTime {
        /// Processor name.
        processor: String,
        /// Frames processed.
        frames: u64,
        /// Median, microseconds.
        p50_us: f64,
        /// 99th percentile, microseconds.
        p99_us: f64,
    },
    /// Time from the transport input to the transport output, per frame.
    Transit {
        /// Frames measured.
        frames: u64,
        /// Median, microseconds.
        p50_us: f64,
        /// 99th percentile, microseconds.
        p99_us: f64,
    },
    /// Time to first byte (or token) of a service response.
    Ttfb {
        /// Processor name.
        processor: String,
        /// Milliseconds.
        value_ms: f64,
    },
}

/// What a frame carries. The variant decides the [`FrameKind`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum FrameBody {
    // ---- system ----
    /// The session starts; the first frame every processor sees.
    Start(StartFrame),
    /// Stop at once, dropping queued work.
    Cancel {
        /// Why, for logs.
        reason: String,
    },
    /// An error; pushed upstream.
    Error(ErrorFrame),
    /// The user interrupted the bot: drop queued output, abort in-flight work.
    Interruption,
    /// Pushed upstream by a processor that wants an interruption; the pipeline
    /// head turns it into an [`FrameBody::Interruption`] sent down the chain.
    InterruptionRequest,
    /// Pushed upstream by a processor that wants the session to end
    /// gracefully; the pipeline head turns it into [`FrameBody::End`].
    EndRequest {
        /// Why, for logs and the session's end reason.
        reason: String,
    },
    /// The VAD decided the user started speaking.
    UserStartedSpeaking {
        /// Session time at which speech began (earlier than the decision by
        /// the VAD's start window).
        start: Duration,
    },
    /// The VAD decided the user stopped speaking.
    UserStoppedSpeaking {
        /// Session time at which speech ended (earlier than the decision by
        /// the VAD's stop window).
        end: Duration,
    },
    /// Bot audio started leaving the transport.
    BotStartedSpeaking,
    /// Bot audio stopped leaving the transport.
    BotStoppedSpeaking,
    /// The output transport's account of an interruption: how much of the
    /// bot's current utterance the user heard, and how much queued audio
    /// was dropped.
    BotInterrupted {
        /// Audio of the utterance that had left before the interruption.
        played: Duration,
        /// Queued audio that was dropped.
        cut: Duration,
    },
    /// The VAD's parameters, pushed downstream by the `vad` processor ahead
    /// of everything else it pushes: later processors learn that a VAD
    /// decides the user's turns, and how (Pipecat's
    /// `SpeechControlParamsFrame`).
    VadParams(crate::vad::VadParams),
    /// Audio from the user.
    InputAudio(AudioFrame),
    /// The user pressed a key on the phone's keypad (DTMF).
    Dtmf {
        /// `0`-`9`, `*`, `#` or `A`-`D`.
        digit: char,
    },
    /// A measurement.
    Metrics(MetricsData),
    /// A turn of the conversation is complete (a user turn handed to the
    /// LLM, an assistant turn played or interrupted, a tool result): the
    /// hook for persisting the transcript as it happens.
    TurnCompleted(Arc<Turn>),

    // ---- data ----
    /// Audio for the user.
    OutputAudio(AudioFrame),
    /// Text to speak or show.
    Text(String),
    /// A piece of an LLM response, as it streams.
    LlmText(String),
    /// A final transcription of user speech.
    Transcription(TranscriptionFrame),
    /// An interim transcription that may still change.
    InterimTranscription(TranscriptionFrame),
    /// A full LLM context to run a completion on.
    LlmMessages(Arc<Vec<Message>>),
    /// Text the TTS is speaking, in order with its audio.
    TtsText(SpokenText),
    /// A tool's result.
    FunctionCallResult {
        /// The tool call it answers.
        call: ToolCall,
        /// The result (JSON or text).
        result: String,
    },

    // ---- control ----
    /// Finish queued work, then stop.
    End {
        /// Why the session ends, e.g. `end_of_input`, `hangup`, `end_call`.
        reason: String,
    },
    /// An LLM response starts.
    LlmResponseStart,
    /// An LLM response ended.
    LlmResponseEnd,
    /// Speech synthesis of a response starts.
    TtsStarted,
    /// Speech synthesis of a response ended.
    TtsStopped,
    /// A tool call is running.
    FunctionCallInProgress(ToolCall),
}

impl FrameBody {
    /// The frame's kind. This match is the one place kinds are defined.
    pub fn kind(&self) -> FrameKind {
        use FrameBody::*;
        match self {
            Start(_)
            | Cancel { .. }
            | Error(_)
            | Interruption
            | InterruptionRequest
            | EndRequest { .. }
            | UserStartedSpeaking { .. }
            | UserStoppedSpeaking { .. }
            | BotStartedSpeaking
            | BotStoppedSpeaking
            | BotInterrupted { .. }
            | VadParams(_)
            | InputAudio(_)
            | Dtmf { .. }
            | Metrics(_)
            | TurnCompleted(_) => FrameKind::System,
            OutputAudio(_)
            | Text(_)
            | LlmText(_)
            | Transcription(_)
            | InterimTranscription(_)
            | LlmMessages(_)
            | TtsText(_)
            | FunctionCallResult { .. } => FrameKind::Data,
            End { .. }
            | LlmResponseStart
            | LlmResponseEnd
            | TtsStarted
            | TtsStopped
            | FunctionCallInProgress(_) => FrameKind::Control,
        }
    }

    /// The variant's name, for logs.
    pub fn name(&self) -> &'static str {
        use FrameBody::*;
        match self {
            Start(_) => "Start",
            Cancel { .. } => "Cancel",
            Error(_) => "Error",
            Interruption => "Interruption",
            InterruptionRequest => "InterruptionRequest",
            EndRequest { .. } => "EndRequest",
            UserStartedSpeaking { .. } => "UserStartedSpeaking",
            UserStoppedSpeaking { .. } => "UserStoppedSpeaking",
            BotStartedSpeaking => "BotStartedSpeaking",
            BotStoppedSpeaking => "BotStoppedSpeaking",
            BotInterrupted { .. } => "BotInterrupted",
            VadParams(_) => "VadParams",
            InputAudio(_) => "InputAudio",
            Dtmf { .. } => "Dtmf",
            Metrics(_) => "Metrics",
            TurnCompleted(_) => "TurnCompleted",
            OutputAudio(_) => "OutputAudio",
            Text(_) => "Text",
            LlmText(_) => "LlmText",
            Transcription(_) => "Transcription",
            InterimTranscription(_) => "InterimTranscription",
            LlmMessages(_) => "LlmMessages",
            TtsText(_) => "TtsText",
            FunctionCallResult { .. } => "FunctionCallResult",
            End { .. } => "End",
            LlmResponseStart => "LlmResponseStart",
            LlmResponseEnd => "LlmResponseEnd",
            TtsStarted => "TtsStarted",
            TtsStopped => "TtsStopped",
            FunctionCallInProgress(_) => "FunctionCallInProgress",
        }
    }

    /// True for frames an interruption drops from a queue: data and control
    /// frames except `End`.
    pub fn dropped_by_interruption(&self) -> bool {
        match self.kind() {
            FrameKind::System => false,
            FrameKind::Data => true,
            FrameKind::Control => !matches!(self, FrameBody::End { .. }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_contract() {
        assert_eq!(FrameBody::Interruption.kind(), FrameKind::System);
        let audio = AudioFrame::from_samples(&[0; 320], 16_000, 1, Duration::ZERO);
        assert_eq!(
            FrameBody::InputAudio(audio.clone()).kind(),
            FrameKind::System
        );
        assert_eq!(FrameBody::OutputAudio(audio).kind(), FrameKind::Data);
        assert_eq!(
            FrameBody::End { reason: "x".into() }.kind(),
            FrameKind::Control
        );
        assert!(!FrameBody::End { reason: "x".into() }.dropped_by_interruption());
        assert!(FrameBody::TtsStarted.dropped_by_interruption());
        assert!(FrameBody::Text("hi".into()).dropped_by_interruption());
        assert!(!FrameBody::BotStartedSpeaking.dropped_by_interruption());
    }

    #[test]
    fn clones_keep_the_id_and_new_frames_get_fresh_ones() {
        let a = Frame::new(FrameBody::BotStartedSpeaking);
        let b = a.clone();
        let c = Frame::new(FrameBody::BotStartedSpeaking);
        assert_eq!(a.id, b.id);
        assert!(c.id > a.id);
    }

    #[test]
    fn audio_frame_duration_counts_sample_frames() {
        let stereo = AudioFrame::from_samples(&[0; 640], 16_000, 2, Duration::ZERO);
        assert_eq!(stereo.num_frames(), 320);
        assert_eq!(stereo.duration(), Duration::from_millis(20));
    }
}
