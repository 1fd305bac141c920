//! `--events`: one JSON object per line for each notable frame.
//!
//! Every line has `t_ms` (milliseconds since the session started, on the
//! session clock: the audio clock for file input) and `event`. The names are
//! a public contract; fields are only ever added:
//!
//! | event | fields |
//! |---|---|
//! | `session_started` | `session_id`, `sample_rate` |
//! | `user_started_speaking` | `start_ms`: when speech began |
//! | `user_stopped_speaking` | `end_ms`: when speech ended |
//! | `transcription`, `interim_transcription` | `text`, `user_id`? |
//! | `llm_response_started` | |
//! | `llm_response_ended` | `failed`: the response failed partway or before saying anything |
//! | `llm_text` | `text` |
//! | `tool_call` | `id`, `name`, `arguments` |
//! | `tool_result` | `id`, `name`, `result` |
//! | `agent_selected` | `agent`: the specialist agent answering, `by`: `keywords`, `llm` or `default` |
//! | `answer_reviewed` | `rounds`: reviews made, `approved`: false when the last draft went out unapproved |
//! | `tts_started`, `tts_stopped` | |
//! | `tts_text` | `text`, `timing`: `word` or `sentence` |
//! | `bot_started_speaking`, `bot_stopped_speaking` | |
//! | `bot_word_heard` | `text`: a word the TTS timed, as its audio starts to play (never one an interruption cut) |
//! | `interruption` | `played_ms`: bot audio heard, `cut_ms`: bot audio dropped |
//! | `dtmf` | `digit`: the key the caller pressed |
//! | `turn_completed` | `index`, `role` (`user`, `assistant`, `tool`), `text`, `interrupted`: a turn as the conversation records it |
//! | `error` | `processor`, `message`, `fatal`, `provider`?, `status`? |
//! | `metrics` | `metric` and its values |
//! | `server_message` | `data`: what a processor or tool sent the client app |
//! | `client_request` | `id`, `type`, `data`: what the client app asked |
//! | `client_response` | `id`, `type`, `data` or `error`: the answer |
//! | `preemptive_reply_started`, `preemptive_reply_confirmed`, `preemptive_reply_discarded` | (a reply prepared before the user's turn was confirmed over, then played or thrown away) |
//! | `turn_latency` | `vad_stop_ms`, `stt_ms`, `llm_ms`, `tts_ms`, `audio_out_ms` (each `null` when the pipeline has no such stage), `total_ms`: see [`TurnLatency`](crate::metrics::TurnLatency) |
//! | `session_ended` | `reason`, `cancelled`, `error`? |
//!
//! A frame forwarded through many processors is one event: events are keyed
//! by frame id.

use std::collections::HashSet;
use std::io::Write;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use serde_json::{Value, json};

use crate::frame::{FrameBody, FrameId, SpokenTiming, TranscriptionFrame};
use crate::metrics::TurnLatencyTracker;
use crate::pipeline::{Observer, PipelineOutcome, PushEvent};

/// The event a frame is, as `(name, fields)`, or `None` for frames that are
/// not events (audio, internal requests).
///
/// The match names every variant, with no wildcard: a new frame variant
/// does not compile until it is mapped here to an event or to none.
pub fn event_of(body: &FrameBody) -> Option<(&'static str, Value)> {
    use FrameBody::*;
    let event = match body {
        Start(start) => (
            "session_started",
            json!({"session_id": &*start.session_id, "sample_rate": start.sample_rate}),
        ),
        UserStartedSpeaking { start } => ("user_started_speaking", json!({"start_ms": ms(*start)})),
        UserPausedSpeaking { end } => ("user_paused_speaking", json!({"end_ms": ms(*end)})),
        UserStoppedSpeaking { end } => ("user_stopped_speaking", json!({"end_ms": ms(*end)})),
        Transcription(t) => ("transcription", transcription_fields(t)),
        InterimTranscription(t) => ("interim_transcription", transcription_fields(t)),
        LlmResponseStart => ("llm_response_started", json!({})),
        LlmText(text) => ("llm_text", json!({"text": text})),
        LlmResponseEnd { failed } => ("llm_response_ended", json!({"failed": failed})),
        FunctionCallInProgress(call) => (
            "tool_call",
            json!({"id": call.id, "name": call.name, "arguments": call.arguments}),
        ),
        FunctionCallResult { call, result } => (
            "tool_result",
            json!({"id": call.id, "name": call.name, "result": result}),
        ),
        AgentSelected { agent, by } => ("agent_selected", json!({"agent": &**agent, "by": by})),
        AnswerReviewed(review) => (
            "answer_reviewed",
            json!({"rounds": review.rounds, "approved": review.approved}),
        ),
        TtsStarted => ("tts_started", json!({})),
        TtsStopped => ("tts_stopped", json!({})),
        TtsText(spoken) => {
            let timing = match spoken.timing {
                SpokenTiming::Word => "word",
                SpokenTiming::Sentence => "sentence",
            };
            ("tts_text", json!({"text": spoken.text, "timing": timing}))
        }
        TurnCompleted(turn) => (
            "turn_completed",
            json!({
                "index": turn.index,
                "role": turn.role,
                "text": turn.text,
                "interrupted": turn.interrupted,
            }),
        ),
        BotStartedSpeaking => ("bot_started_speaking", json!({})),
        BotStoppedSpeaking => ("bot_stopped_speaking", json!({})),
        BotWordHeard { text } => ("bot_word_heard", json!({ "text": text })),
        BotInterrupted { played, cut } => (
            "interruption",
            json!({"played_ms": ms(*played), "cut_ms": ms(*cut)}),
        ),
        Dtmf { digit } => ("dtmf", json!({"digit": digit.to_string()})),
        Error(e) => {
            let mut fields =
                json!({"processor": &*e.processor, "message": e.message, "fatal": e.fatal});
            if let Some(provider) = &e.provider {
                fields["provider"] = json!(provider);
            }
            if let Some(status) = e.status {
                fields["status"] = json!(status);
            }
            ("error", fields)
        }
        Metrics(data) => ("metrics", serde_json::to_value(data).unwrap_or(Value::Null)),
        ServerMessage(data) => ("server_message", json!({"data": &**data})),
        ClientRequest(request) => (
            "client_request",
            json!({"id": &*request.id, "type": request.kind, "data": &*request.data}),
        ),
        PreemptiveLlmMessages(_) => ("preemptive_reply_started", json!({})),
        PreemptiveReplyConfirmed => ("preemptive_reply_confirmed", json!({})),
        PreemptiveReplyDiscarded => ("preemptive_reply_discarded", json!({})),
        ClientResponse(response) => {
            let mut fields = json!({"id": &*response.id, "type": response.kind});
            match &response.result {
                Ok(data) => fields["data"] = json!(&**data),
                Err(error) => fields["error"] = json!(error),
            }
            ("client_response", fields)
        }
        // Not events: audio, requests the pipeline head turns into other
        // frames, frames whose effect is reported by another event (`End`
        // by `session_ended`, an interruption by the output's
        // `BotInterrupted`; a client tool's result by `tool_result`), and
        // internal traffic between processors (`ClientConnected` only
        // starts the pipeline's opening, which has events of its own).
        Cancel { .. }
        | Interruption
        | InterruptionRequest
        | EndRequest { .. }
        | VadParams(_)
        | InputAudio(_)
        | OutputAudio(_)
        | Text(_)
        | LlmMessages(_)
        | ClientToolResult { .. }
        | ClientConnected
        | End { .. } => return None,
    };
    Some(event)
}

fn transcription_fields(t: &TranscriptionFrame) -> Value {
    let mut fields = json!({"text": t.text});
    if let Some(user_id) = &t.user_id {
        fields["user_id"] = json!(user_id);
    }
    fields
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// One event as a JSON line (without the newline).
pub fn event_line(at: Duration, name: &str, fields: Value) -> String {
    let mut object = serde_json::Map::new();
    object.insert("t_ms".into(), json!(ms(at)));
    object.insert("event".into(), json!(name));
    if let Value::Object(fields) = fields {
        object.extend(fields);
    }
    Value::Object(object).to_string()
}

enum Message {
    Line(String),
    Flush(Sender<()>),
}

/// A session's events as they happen: each frame's event once, however
/// many processors push the frame, and `turn_latency` as each turn
/// completes.
#[derive(Debug, Default)]
pub struct SessionEvents {
    seen: Mutex<HashSet<FrameId>>,
    turns: Mutex<TurnLatencyTracker>,
}

impl SessionEvents {
    /// Calls `emit` for each event `push` makes.
    pub fn on_push(&self, push: &PushEvent<'_>, mut emit: impl FnMut(&'static str, Value)) {
        if let Some((name, fields)) = event_of(&push.frame.body) {
            let first_time = self
                .seen
                .lock()
                .map(|mut seen| seen.insert(push.frame.id))
                .unwrap_or(true);
            if first_time {
                emit(name, fields);
            }
        }
        let latency = self
            .turns
            .lock()
            .ok()
            .and_then(|mut turns| turns.observe(push.frame, push.direction, push.at));
        if let Some(latency) = latency {
            emit(
                "turn_latency",
                serde_json::to_value(latency).unwrap_or(Value::Null),
            );
        }
    }
}

/// The events that close a session: its metrics, then `session_ended`.
pub fn end_events(outcome: &PipelineOutcome) -> Vec<(&'static str, Value)> {
    let mut events: Vec<(&'static str, Value)> = outcome
        .metrics
        .iter()
        .map(|metric| {
            (
                "metrics",
                serde_json::to_value(metric).unwrap_or(Value::Null),
            )
        })
        .collect();
    let mut fields = json!({"reason": outcome.end_reason, "cancelled": outcome.cancelled});
    if let Some(error) = &outcome.fatal_error {
        fields["error"] = json!(error.message);
    }
    events.push(("session_ended", fields));
    events
}

/// Writes events as JSON lines on a thread of its own, so that a slow
/// reader never holds up a processor.
pub struct EventWriter {
    tx: Sender<Message>,
    events: SessionEvents,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl EventWriter {
    /// Events written to `out` (usually stdout), one line each, flushed per
    /// line.
    pub fn new(out: impl Write + Send + 'static) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("voxpipe-events".into())
            .spawn(move || write_lines(out, rx))
            .ok();
        EventWriter {
            tx,
            events: SessionEvents::default(),
            thread: Mutex::new(thread),
        }
    }

    fn send(&self, line: String) {
        if self.tx.send(Message::Line(line)).is_err() {
            tracing::warn!("event writer has stopped; event lost");
        }
    }

    /// Waits until every event so far has been written.
    pub fn flush(&self) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self.tx.send(Message::Flush(tx)).is_ok() {
            // An error means the writer thread is gone: nothing to wait for.
            let _gone = rx.recv();
        }
        let thread_died = self
            .thread
            .lock()
            .map(|t| t.as_ref().is_none_or(JoinHandle::is_finished))
            .unwrap_or(true);
        if thread_died {
            tracing::warn!("event writer thread is not running");
        }
    }
}

fn write_lines(mut out: impl Write, rx: Receiver<Message>) {
    for message in rx {
        match message {
            Message::Line(line) => {
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    // The reader went away (a closed pipe): stop quietly.
                    return;
                }
            }
            Message::Flush(done) => {
                let _flushed = out.flush();
                // The waiter may have given up; nothing to do then.
                let _gave_up = done.send(());
            }
        }
    }
}

impl Observer for EventWriter {
    fn on_push(&self, event: &PushEvent<'_>) {
        self.events.on_push(event, |name, fields| {
            self.send(event_line(event.at, name, fields))
        });
    }

    fn on_pipeline_end(&self, outcome: &PipelineOutcome, at: Duration) {
        for (name, fields) in end_events(outcome) {
            self.send(event_line(at, name, fields));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_time_name_and_fields() {
        let line = event_line(
            Duration::from_millis(1234),
            "llm_text",
            json!({"text": "hi"}),
        );
        assert_eq!(line, r#"{"t_ms":1234,"event":"llm_text","text":"hi"}"#);
    }

    /// The event names of the module docs' table, in order.
    fn documented_events() -> Vec<String> {
        include_str!("events.rs")
            .lines()
            .filter_map(|line| line.strip_prefix("//! | `"))
            .flat_map(|row| {
                let names = row.split(" |").next().unwrap_or_default();
                names
                    .split(", ")
                    .map(|name| name.trim_matches('`').to_owned())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// One frame of every variant that is an event, with the field names
    /// its event must carry.
    fn event_frames() -> Vec<(FrameBody, &'static str, &'static [&'static str])> {
        use crate::frame::{
            ClientRequest, ClientResponse, ErrorFrame, MetricsData, SpokenText, StartFrame,
        };
        let call = crate::conversation::ToolCall {
            id: "call_1".into(),
            name: "lookup".into(),
            arguments: "{}".into(),
        };
        let transcript = TranscriptionFrame {
            text: "hello".into(),
            user_id: None,
            language: None,
            at: Duration::ZERO,
        };
        let error = ErrorFrame {
            processor: "llm".into(),
            message: "boom".into(),
            fatal: false,
            provider: Some("openai".into()),
            status: Some(500),
        };
        let start = StartFrame {
            sample_rate: 16_000,
            allow_interruptions: true,
            session_id: "s1".into(),
        };
        let request = ClientRequest {
            id: "m1".into(),
            kind: "get-weather".into(),
            data: std::sync::Arc::new(json!({"city": "Oslo"})),
        };
        let ms = Duration::from_millis;
        vec![
            (
                FrameBody::Start(start),
                "session_started",
                &["session_id", "sample_rate"],
            ),
            (
                FrameBody::UserStartedSpeaking { start: ms(5) },
                "user_started_speaking",
                &["start_ms"],
            ),
            (
                FrameBody::UserStoppedSpeaking { end: ms(5) },
                "user_stopped_speaking",
                &["end_ms"],
            ),
            (
                FrameBody::Transcription(transcript.clone()),
                "transcription",
                &["text"],
            ),
            (
                FrameBody::InterimTranscription(transcript),
                "interim_transcription",
                &["text"],
            ),
            (FrameBody::LlmResponseStart, "llm_response_started", &[]),
            (
                FrameBody::LlmResponseEnd { failed: false },
                "llm_response_ended",
                &["failed"],
            ),
            (FrameBody::LlmText("hi".into()), "llm_text", &["text"]),
            (
                FrameBody::FunctionCallInProgress(call.clone()),
                "tool_call",
                &["id", "name", "arguments"],
            ),
            (
                FrameBody::FunctionCallResult {
                    call,
                    result: "ok".into(),
                },
                "tool_result",
                &["id", "name", "result"],
            ),
            (
                FrameBody::AgentSelected {
                    agent: "finance".into(),
                    by: "llm",
                },
                "agent_selected",
                &["agent", "by"],
            ),
            (
                FrameBody::AnswerReviewed(crate::conversation::Reflection {
                    rounds: 1,
                    approved: true,
                }),
                "answer_reviewed",
                &["rounds", "approved"],
            ),
            (FrameBody::TtsStarted, "tts_started", &[]),
            (FrameBody::TtsStopped, "tts_stopped", &[]),
            (
                FrameBody::TtsText(SpokenText {
                    text: "Hello".into(),
                    start: ms(0),
                    timing: crate::frame::SpokenTiming::Word,
                }),
                "tts_text",
                &["text", "timing"],
            ),
            (
                FrameBody::ServerMessage(std::sync::Arc::new(json!({"a": 1}))),
                "server_message",
                &["data"],
            ),
            (
                FrameBody::ClientRequest(request.clone()),
                "client_request",
                &["id", "type", "data"],
            ),
            (
                FrameBody::ClientResponse(ClientResponse::answer(&request, json!(2))),
                "client_response",
                &["id", "type", "data"],
            ),
            (FrameBody::BotStartedSpeaking, "bot_started_speaking", &[]),
            (FrameBody::BotStoppedSpeaking, "bot_stopped_speaking", &[]),
            (
                FrameBody::BotWordHeard {
                    text: "Hello".into(),
                },
                "bot_word_heard",
                &["text"],
            ),
            (
                FrameBody::BotInterrupted {
                    played: ms(1),
                    cut: ms(2),
                },
                "interruption",
                &["played_ms", "cut_ms"],
            ),
            (FrameBody::Dtmf { digit: '5' }, "dtmf", &["digit"]),
            (
                FrameBody::TurnCompleted(std::sync::Arc::new(
                    crate::conversation::Turn::completed(
                        3,
                        crate::conversation::Role::User,
                        "Where am I?".into(),
                        ms(9),
                    ),
                )),
                "turn_completed",
                &["index", "role", "text", "interrupted"],
            ),
            (
                FrameBody::PreemptiveLlmMessages(Default::default()),
                "preemptive_reply_started",
                &[],
            ),
            (
                FrameBody::PreemptiveReplyConfirmed,
                "preemptive_reply_confirmed",
                &[],
            ),
            (
                FrameBody::PreemptiveReplyDiscarded,
                "preemptive_reply_discarded",
                &[],
            ),
            (
                FrameBody::Error(error),
                "error",
                &["processor", "message", "fatal", "provider", "status"],
            ),
            (
                FrameBody::Metrics(MetricsData::Ttfb {
                    processor: "tts".into(),
                    value_ms: 1.0,
                }),
                "metrics",
                &["metric", "processor", "value_ms"],
            ),
        ]
    }

    #[test]
    fn frame_events_keep_their_names_and_fields() {
        for (body, name, fields) in event_frames() {
            let (got, value) = event_of(&body).unwrap_or_else(|| panic!("{body:?}: no event"));
            assert_eq!(got, name, "{body:?}");
            let keys: Vec<&str> = value
                .as_object()
                .map(|o| o.keys().map(String::as_str).collect())
                .unwrap_or_default();
            assert_eq!(keys, fields, "{name}");
        }
    }

    #[test]
    fn the_docs_table_lists_exactly_the_events_emitted() {
        let mut emitted: Vec<String> = event_frames()
            .iter()
            .map(|(_, name, _)| (*name).to_owned())
            .chain(["turn_latency", "session_ended"].map(String::from))
            .collect();
        let mut documented = documented_events();
        emitted.sort();
        documented.sort();
        assert_eq!(emitted, documented);
    }

    #[test]
    fn audio_is_not_an_event() {
        let audio = crate::frame::AudioFrame::from_samples(&[0; 4], 16_000, 1, Duration::ZERO);
        assert!(event_of(&FrameBody::InputAudio(audio)).is_none());
        assert!(event_of(&FrameBody::InterruptionRequest).is_none());
    }
}
