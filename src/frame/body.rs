//! [`FrameBody`]: what a frame carries, declared once.
//!
//! The `frame_bodies!` macro below takes every variant once, under its
//! kind, and makes from that one list the enum, [`FrameBody::kind`],
//! [`FrameBody::name`] (the variant's identifier) and
//! [`FrameBody::VARIANTS`]. Adding a variant is one line in one section.

use std::sync::Arc;
use std::time::Duration;

use super::{
    AudioFrame, ClientRequest, ClientResponse, ErrorFrame, FrameKind, MetricsData, SpokenText,
    StartFrame, TranscriptionFrame, VadParams,
};
use crate::conversation::{Message, Reflection, ToolCall, Turn};

/// Declares [`FrameBody`] from one list of variants grouped by kind.
///
/// Each section is `Kind { variants }`, where `Kind` is a [`FrameKind`]
/// variant and each variant is written as in an enum (docs, then a unit,
/// tuple or struct variant).
macro_rules! frame_bodies {
    (
        $(#[$enum_meta:meta])*
        $(
            $kind:ident {
                $(
                    $(#[$variant_meta:meta])*
                    $variant:ident $(( $($tuple:tt)* ))? $({ $($fields:tt)* })?
                ),* $(,)?
            }
        )*
    ) => {
        $(#[$enum_meta])*
        pub enum FrameBody {
            $($(
                $(#[$variant_meta])*
                $variant $(( $($tuple)* ))? $({ $($fields)* })?,
            )*)*
        }

        impl FrameBody {
            /// Every variant's name and kind, in declaration order.
            pub const VARIANTS: &'static [(&'static str, FrameKind)] = &[
                $($( (stringify!($variant), FrameKind::$kind), )*)*
            ];

            /// The frame's kind (see the module docs of `frame`).
            pub fn kind(&self) -> FrameKind {
                match self {
                    $($( Self::$variant { .. } => FrameKind::$kind, )*)*
                }
            }

            /// The variant's name, for logs, e.g. `InputAudio`.
            pub fn name(&self) -> &'static str {
                match self {
                    $($( Self::$variant { .. } => stringify!($variant), )*)*
                }
            }
        }
    };
}

frame_bodies! {
    /// What a frame carries. The variant decides the [`FrameKind`].
    #[derive(Debug, Clone, PartialEq)]
    #[non_exhaustive]
    System {
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
        /// The user has paused for the VAD's `pause_secs`, shorter than its
        /// stop: the speech so far may be transcribed early (a segmented
        /// STT's `transcribe_on_pause`). Speech may resume; the stop, if it
        /// comes with the same `end`, confirms the pause.
        UserPausedSpeaking {
            /// Session time at which speech paused.
            end: Duration,
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
        /// A word a TTS timed is heard: the output's playout reached the
        /// start of its audio. Pushed downstream by the output transport,
        /// in order with the speaking state, never for a word an
        /// interruption cut.
        BotWordHeard {
            /// The word, as the TTS timed it.
            text: String,
        },
        /// The VAD's parameters, pushed downstream by the `vad` processor ahead
        /// of everything else it pushes: later processors learn that a VAD
        /// decides the user's turns, and how (Pipecat's
        /// `SpeechControlParamsFrame`).
        VadParams(VadParams),
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
        /// Data for the client app (RTVI `server-message`), pushed by a
        /// processor or a tool, in either direction.
        ServerMessage(Arc<serde_json::Value>),
        /// A request from the client app (RTVI `client-message`), pushed
        /// downstream by the transport; a processor answers it with
        /// [`FrameBody::ClientResponse`].
        ClientRequest(ClientRequest),
        /// The answer to a [`FrameBody::ClientRequest`], pushed by the
        /// processor that handled it, in either direction.
        ClientResponse(ClientResponse),
        /// The far end can hear the bot now: the call is connected. The
        /// session queues it when it starts a pipeline that opens the
        /// conversation (`[pipeline] first_message`, `llm_opens`); a
        /// transport whose client connects later (WebRTC) holds it until
        /// then. `user_context` starts the opening on it (Pipecat's
        /// `on_client_connected`).
        ClientConnected,
        /// The result of a tool the client app ran (RTVI
        /// `llm-function-call-result`), pushed downstream by the transport
        /// for the LLM that called it.
        ClientToolResult {
            /// The tool call it answers.
            tool_call_id: String,
            /// The result (JSON or text).
            result: String,
        },
        /// The user resumed speaking while a preemptive reply was prepared:
        /// it is discarded (an interruption cancels its work), never heard.
        /// Pushed downstream by `user_context`, for events and metrics.
        PreemptiveReplyDiscarded,
    }
    Data {
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
        /// A context to answer before the user's turn is confirmed over (a
        /// preemptive reply): the LLM answers it at once but runs no tool
        /// with side effects until [`FrameBody::PreemptiveReplyConfirmed`];
        /// `assistant_context` holds everything the reply produces, unplayed
        /// and unrecorded, until then, and an interruption discards it.
        PreemptiveLlmMessages(Arc<Vec<Message>>),
        /// Text the TTS is speaking, in order with its audio.
        TtsText(SpokenText),
        /// A tool's result.
        FunctionCallResult {
            /// The tool call it answers.
            call: ToolCall,
            /// The result (JSON or text).
            result: String,
        },
    }
    Control {
        /// Finish queued work, then stop.
        End {
            /// Why the session ends, e.g. `end_of_input`, `hangup`, `end_call`.
            reason: String,
        },
        /// An LLM response starts.
        LlmResponseStart,
        /// An LLM response ended.
        LlmResponseEnd {
            /// The response failed partway or before saying anything (the
            /// model could not be asked, its stream broke): what it said
            /// stays said, the rest never comes. A response that skipped a
            /// malformed event, or was superseded or interrupted, has not
            /// failed.
            failed: bool,
        },
        /// Speech synthesis of a response starts.
        TtsStarted,
        /// Speech synthesis of a response ended.
        TtsStopped,
        /// A tool call is running.
        FunctionCallInProgress(ToolCall),
        /// The specialist agent answering the current LLM response, pushed
        /// by the LLM just after `LlmResponseStart`.
        AgentSelected {
            /// The agent's name.
            agent: Arc<str>,
            /// How it was chosen: `keywords`, `llm`, or `default` (the
            /// router named no agent, or could not be asked).
            by: &'static str,
        },
        /// The reviewer's verdict on the current LLM response (reflection),
        /// pushed by the LLM before the answer's text.
        AnswerReviewed(Reflection),
        /// The user's turn is over and the preemptive reply prepared for it
        /// stands: it plays at once. Pushed by `user_context` after the
        /// turn's `TurnCompleted`, in order with the reply's frames.
        PreemptiveReplyConfirmed,
    }
}

impl FrameBody {
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
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_variant_has_a_distinct_name() {
        let names: HashSet<&str> = FrameBody::VARIANTS.iter().map(|(name, _)| *name).collect();
        assert_eq!(names.len(), FrameBody::VARIANTS.len());
    }

    /// The module docs' "variants of each kind" table, as `(kind, names)`.
    fn documented_kinds() -> Vec<(String, Vec<String>)> {
        include_str!("mod.rs")
            .lines()
            .filter_map(|line| {
                let row = line.strip_prefix("//! | ")?;
                let (kind, variants) = row.trim_end_matches(" |").split_once(" | ")?;
                if !matches!(kind, "System" | "Data" | "Control") {
                    return None;
                }
                let names = variants
                    .split(", ")
                    .map(|name| name.trim_matches('`').to_owned())
                    .collect();
                Some((kind.to_owned(), names))
            })
            .collect()
    }

    #[test]
    fn kinds_follow_the_module_docs_table() {
        let documented = documented_kinds();
        assert_eq!(documented.len(), 3, "{documented:?}");
        for kind in [FrameKind::System, FrameKind::Data, FrameKind::Control] {
            let in_code: Vec<String> = FrameBody::VARIANTS
                .iter()
                .filter(|(_, k)| *k == kind)
                .map(|(name, _)| (*name).to_owned())
                .collect();
            let in_docs = documented
                .iter()
                .find(|(k, _)| *k == format!("{kind:?}"))
                .map(|(_, names)| names.clone())
                .unwrap_or_default();
            assert_eq!(in_code, in_docs, "{kind:?}");
        }
    }

    #[test]
    fn kind_and_name_come_from_the_one_list() {
        let audio = AudioFrame::from_samples(&[0; 320], 16_000, 1, Duration::ZERO);
        for body in [
            FrameBody::Interruption,
            FrameBody::InputAudio(audio.clone()),
            FrameBody::OutputAudio(audio),
            FrameBody::End { reason: "x".into() },
            FrameBody::FunctionCallResult {
                call: ToolCall {
                    id: "call_1".into(),
                    name: "lookup".into(),
                    arguments: "{}".into(),
                },
                result: String::new(),
            },
            FrameBody::TtsStarted,
        ] {
            assert!(
                FrameBody::VARIANTS.contains(&(body.name(), body.kind())),
                "{body:?}"
            );
        }
        assert_eq!(FrameBody::TtsStarted.name(), "TtsStarted");
        assert_eq!(FrameBody::Dtmf { digit: '1' }.kind(), FrameKind::System);
    }

    #[test]
    fn interruptions_drop_data_and_control_but_end() {
        assert!(!FrameBody::End { reason: "x".into() }.dropped_by_interruption());
        assert!(FrameBody::TtsStarted.dropped_by_interruption());
        assert!(FrameBody::Text("hi".into()).dropped_by_interruption());
        assert!(!FrameBody::BotStartedSpeaking.dropped_by_interruption());
    }
}
