//! Frames: the unit of everything that moves through a pipeline.
//!
//! # The contract
//!
//! Every frame has a [`FrameKind`], decided by its [`FrameBody`] variant,
//! and the kind alone decides how the runner queues it:
//!
//! | kind | queueing | on [`FrameBody::Interruption`] |
//! |---|---|---|
//! | [`FrameKind::System`] | its own unbounded lane, served before anything queued | kept |
//! | [`FrameKind::Data`] | FIFO lane, bounded downstream (backpressure) | dropped |
//! | [`FrameKind::Control`] | the same FIFO lane, ordered with data | dropped, except [`FrameBody::End`] |
//!
//! The variants of each kind (a unit test holds this table to the code):
//!
//! | kind | variants |
//! |---|---|
//! | System | `Start`, `Cancel`, `Error`, `Interruption`, `InterruptionRequest`, `EndRequest`, `UserStartedSpeaking`, `UserPausedSpeaking`, `UserStoppedSpeaking`, `BotStartedSpeaking`, `BotStoppedSpeaking`, `BotInterrupted`, `BotWordHeard`, `VadParams`, `InputAudio`, `Dtmf`, `Metrics`, `TurnCompleted`, `ServerMessage`, `ClientRequest`, `ClientResponse`, `ClientConnected`, `ClientToolResult`, `PreemptiveReplyDiscarded` |
//! | Data | `OutputAudio`, `Text`, `LlmText`, `Transcription`, `InterimTranscription`, `LlmMessages`, `PreemptiveLlmMessages`, `TtsText`, `FunctionCallResult` |
//! | Control | `End`, `LlmResponseStart`, `LlmResponseEnd`, `TtsStarted`, `TtsStopped`, `FunctionCallInProgress`, `AgentSelected`, `AnswerReviewed`, `PreemptiveReplyConfirmed` |
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
//!
//! # One list of variants
//!
//! [`FrameBody`] is declared once, by a macro in `body.rs` that takes each
//! variant under its kind: the enum, [`FrameBody::kind`], [`FrameBody::name`]
//! (the variant's identifier) and [`FrameBody::VARIANTS`] all come from that
//! one list, so a new variant cannot miss its kind or its name. Every other
//! place that must decide about each variant (the `--events` mapping)
//! matches exhaustively, without a wildcard, so a new variant does not
//! compile until it is decided there too.
//!
//! # Files
//!
//! - `envelope.rs`: [`Frame`], its [`FrameId`] and creation instant.
//! - `kind.rs`: [`FrameKind`] and [`Direction`].
//! - `body.rs`: [`FrameBody`], the list of variants.
//! - `audio.rs`: [`AudioFrame`], 16-bit PCM.
//! - `payloads.rs`: the other structured payloads (start, error,
//!   transcription, spoken text, metrics, client requests).
//! - `vad_params.rs`: [`VadParams`], plain data carried by a frame and used
//!   by the VAD above; it lives here so that `frame` imports nothing above
//!   it.

mod audio;
mod body;
mod envelope;
mod kind;
mod payloads;
mod recent_audio;
mod resampler;
mod vad_params;

pub use audio::AudioFrame;
pub use body::FrameBody;
pub use envelope::{Frame, FrameId};
pub use kind::{Direction, FrameKind};
pub use payloads::{
    ClientRequest, ClientResponse, ErrorFrame, MetricsData, SpokenText, SpokenTiming, StartFrame,
    TranscriptionFrame,
};
pub use recent_audio::RecentAudio;
pub use resampler::FrameResampler;
pub use vad_params::VadParams;
