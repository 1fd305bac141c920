//! Messages to an RTVI client, derived from voxpipe's events.
//!
//! There is one mapping from frames to what a client sees:
//! [`crate::events::event_of`]. This file only re-encodes its output, event
//! by event, so voxpipe's JSON lines and RTVI messages cannot disagree:
//!
//! | event | RTVI message(s) |
//! |---|---|
//! | `user_started_speaking`, `user_stopped_speaking` | `user-started-speaking`, `user-stopped-speaking` |
//! | `bot_started_speaking`, `bot_stopped_speaking` | `bot-started-speaking`, `bot-stopped-speaking` |
//! | `interruption` | `bot-interrupted` |
//! | `transcription`, `interim_transcription` | `user-transcription` (`final` true, false) |
//! | `llm_response_started`, `llm_text`, `llm_response_ended` | `bot-llm-started`, `bot-llm-text`, `bot-llm-stopped` |
//! | `tts_started`, `tts_stopped` | `bot-tts-started`, `bot-tts-stopped` |
//! | `tts_text` | `bot-tts-text`, and a `bot-output` segment announced ([`bot_output`]: protocol 2 `new`, 1.x `spoken` false), marked spoken (`completed`, `spoken` true) when the bot stops speaking, never if it is interrupted; `aggregated_by` `sentence` (a word-timing TTS's words make up sentences for protocol 2, by [`super::RtviSession`]) or, for 1.x, `word` |
//! | `bot_word_heard` (protocol 2 only) | a `bot-output` of the word's sentence's progress ([`bot_output_progress`]): `in-progress`, or `completed` at its last word, which then marks the sentence spoken (not the bot's stop) |
//! | `turn_completed` of the user (the words handed to the LLM) | `user-llm-text` |
//! | `llm_text` (again), cut into sentences | `bot-transcription` a sentence (by [`super::RtviSession`], which keeps the unfinished one): deprecated by Pipecat, still what client-js's `onBotTranscript` fires on |
//! | `tool_call` | `llm-function-call-started`, `llm-function-call-in-progress` |
//! | `tool_result` | `llm-function-call-stopped` |
//! | `metrics` (`ttfb`, `processing_time`) | `metrics` (`ttfb`, `processing`: seconds) |
//! | `error` | `error` |
//! | `server_message` (from a processor, or a tool's outcome) | `server-message` |
//! | `agent_selected`, `answer_reviewed` | `server-message` (`{"type": event, ...fields}`) |
//! | `client_response` | `server-response` or `error-response` (by [`super::RtviSession`], which knows what is pending) |
//!
//! Word-by-word progress (since Pipecat 1.4, to protocol 2 clients only)
//! comes from `bot_word_heard`, not `tts_text`: a `tts_text` event comes
//! as the provider times the word, ahead of the audio, while the output
//! transport reports `bot_word_heard` as the playout reaches the word's
//! audio, as Pipecat's output transport holds each timed frame until its
//! presentation time (`BaseOutputTransport.MediaSender.handle_timed_frame`,
//! `_clock_task_handler`). The sentence a word belongs to is not known
//! before it ends: [`super::RtviSession`] holds a word heard before that
//! until its sentence's `new`. A 1.x client gets no progress (Pipecat's
//! `_handle_aggregated_progress` skips legacy clients); a TTS without word
//! timing has no word heard.
//!
//! Other events (`session_started`, `dtmf`, `turn_latency`,
//! `session_ended`, `client_request`, `metrics` of transit time, the bot's
//! and tools' `turn_completed`) have no RTVI counterpart.

use serde_json::{Value, json};

use super::inbound::LABEL;
use crate::store::time::rfc3339;

/// A server-to-client message of `kind`, with `data` unless it is `null`.
pub(super) fn message(kind: &str, data: Value) -> Value {
    let mut message = json!({"label": LABEL, "type": kind});
    if !data.is_null() {
        message["data"] = data;
    }
    message
}

/// A reply to the client's message `id`.
pub(super) fn reply(kind: &str, id: &str, data: Value) -> Value {
    json!({"label": LABEL, "type": kind, "id": id, "data": data})
}

/// The RTVI messages for one voxpipe event; `wall_ms` (Unix milliseconds)
/// stamps transcriptions.
pub fn messages_for_event(name: &str, fields: &Value, wall_ms: u64) -> Vec<Value> {
    let text = || json!({"text": fields["text"]});
    let simple = |kind: &str| vec![message(kind, Value::Null)];
    match name {
        "user_started_speaking" => simple("user-started-speaking"),
        "user_stopped_speaking" => simple("user-stopped-speaking"),
        "bot_started_speaking" => simple("bot-started-speaking"),
        "bot_stopped_speaking" => simple("bot-stopped-speaking"),
        "interruption" => simple("bot-interrupted"),
        "transcription" | "interim_transcription" => vec![message(
            "user-transcription",
            json!({
                "text": fields["text"],
                "user_id": fields.get("user_id").cloned().unwrap_or_else(|| json!("")),
                "timestamp": rfc3339(wall_ms),
                "final": name == "transcription",
            }),
        )],
        "llm_response_started" => simple("bot-llm-started"),
        "llm_text" => vec![message("bot-llm-text", text())],
        "llm_response_ended" => simple("bot-llm-stopped"),
        "turn_completed" if fields["role"] == "user" => vec![message("user-llm-text", text())],
        "tts_started" => simple("bot-tts-started"),
        "tts_stopped" => simple("bot-tts-stopped"),
        // `bot-output`, which depends on the client's protocol, is
        // `bot_output`'s.
        "tts_text" => vec![message("bot-tts-text", text())],
        "tool_call" => {
            // voxpipe keeps the model's arguments as it wrote them; RTVI
            // wants an object.
            let arguments = fields["arguments"]
                .as_str()
                .and_then(|a| serde_json::from_str::<Value>(a).ok())
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({}));
            vec![
                message(
                    "llm-function-call-started",
                    json!({"function_name": fields["name"]}),
                ),
                message(
                    "llm-function-call-in-progress",
                    json!({
                        "tool_call_id": fields["id"],
                        "function_name": fields["name"],
                        "arguments": arguments,
                    }),
                ),
            ]
        }
        "tool_result" => {
            let result = fields["result"]
                .as_str()
                .and_then(|r| serde_json::from_str::<Value>(r).ok())
                .unwrap_or_else(|| fields["result"].clone());
            vec![message(
                "llm-function-call-stopped",
                json!({
                    "tool_call_id": fields["id"],
                    "function_name": fields["name"],
                    "cancelled": false,
                    "result": result,
                }),
            )]
        }
        "metrics" => metrics(fields).into_iter().collect(),
        "error" => vec![message(
            "error",
            json!({"error": fields["message"], "fatal": fields["fatal"]}),
        )],
        "server_message" => vec![message("server-message", fields["data"].clone())],
        "agent_selected" | "answer_reviewed" => {
            let mut data = fields.clone();
            data["type"] = json!(name);
            vec![message("server-message", data)]
        }
        _ => Vec::new(),
    }
}

/// A `bot-output` message of spoken text (a `tts_text` event's fields) in
/// the client's protocol: the segment announced (`spoken` false) or, later,
/// spoken (`spoken` true). Protocol 2 adds `spoken_status` `new` or
/// `completed`, the `segment_id` both share and `spoken_progress` (nothing
/// spoken, all remaining; then all spoken): client-react's conversation
/// makes a part of the first and marks it spoken with the second, as
/// Pipecat's messages have it do. Protocol 1: `spoken` alone.
pub(super) fn bot_output(fields: &Value, segment_id: u64, legacy: bool, spoken: bool) -> Value {
    let text = &fields["text"];
    let aggregated_by = &fields["timing"];
    if legacy {
        return message(
            "bot-output",
            json!({"text": text, "aggregated_by": aggregated_by, "spoken": spoken}),
        );
    }
    let none = json!("");
    let (status, accumulated, remaining) = if spoken {
        ("completed", text, &none)
    } else {
        ("new", &none, text)
    };
    message(
        "bot-output",
        json!({
            "text": text,
            "spoken": spoken,
            "will_be_spoken": true,
            "aggregated_by": aggregated_by,
            "segment_id": segment_id,
            "spoken_status": status,
            "spoken_progress": {"accumulated_text": accumulated, "remaining_text": remaining},
        }),
    )
}

/// A protocol 2 `bot-output` of segment `segment_id` (a sentence of a
/// word-timing TTS, `text`) heard up to byte `heard_to` of it: Pipecat's
/// `RTVIObserver._handle_aggregated_progress`, whose
/// `AggregatedTextProgressFrame` comes from `AggregatedFrameSequencer.
/// _build_progress_frame`: the whole `text`, `spoken_status` `completed`
/// once nothing is left to hear (`remaining_text` empty), else
/// `in-progress`, and `spoken_progress` splitting `text` in two
/// (`WordCompletionTracker.get_remaining_user_facing_text(strip=False)`
/// keeps the leading space, so the two parts make `text` again). No
/// `spoken`: Pipecat leaves it out for protocol 2 progress. client-react
/// (`applySpokenProgressV2`) moves the part with that `segment_id` to
/// `accumulated_text`'s length, and marks it spoken at the end.
pub(super) fn bot_output_progress(text: &str, segment_id: u64, heard_to: usize) -> Value {
    let (accumulated, remaining) = text.split_at_checked(heard_to).unwrap_or((text, ""));
    let status = if remaining.is_empty() {
        "completed"
    } else {
        "in-progress"
    };
    message(
        "bot-output",
        json!({
            "text": text,
            "will_be_spoken": true,
            "aggregated_by": "sentence",
            "segment_id": segment_id,
            "spoken_status": status,
            "spoken_progress": {"accumulated_text": accumulated, "remaining_text": remaining},
        }),
    )
}

/// Whether an event becomes RTVI messages worth keeping until the client
/// is ready: the turn's events, not each token (`llm_text`), interim
/// transcript or metric, which a long greeting would have push out the
/// turn's start.
pub(super) fn kept_before_ready(name: &str, fields: &Value) -> bool {
    if name == "turn_completed" {
        // Only the user's turn becomes a message.
        return fields["role"] == "user";
    }
    matches!(
        name,
        "user_started_speaking"
            | "user_stopped_speaking"
            | "bot_started_speaking"
            | "bot_stopped_speaking"
            | "interruption"
            | "transcription"
            | "llm_response_started"
            | "llm_response_ended"
            | "tts_started"
            | "tts_stopped"
            | "tts_text"
            | "bot_word_heard"
            | "tool_call"
            | "tool_result"
            | "error"
            | "server_message"
            | "agent_selected"
            | "answer_reviewed"
            | "preemptive_reply_started"
            | "preemptive_reply_confirmed"
            | "preemptive_reply_discarded"
    )
}

/// Pipecat's metrics shape: `{"ttfb": [{"processor", "value"}]}`, seconds.
fn metrics(fields: &Value) -> Option<Value> {
    let processor = fields["processor"].clone();
    let (key, seconds) = match fields["metric"].as_str()? {
        "ttfb" => ("ttfb", fields["value_ms"].as_f64()? / 1e3),
        "processing_time" => ("processing", fields["p50_us"].as_f64()? / 1e6),
        _ => return None,
    };
    Some(message(
        "metrics",
        json!({ key: [{"processor": processor, "value": seconds}] }),
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::events::event_of;
    use crate::frame::{FrameBody, MetricsData, TranscriptionFrame};

    fn rtvi(body: FrameBody) -> Vec<Value> {
        let (name, fields) = event_of(&body).unwrap();
        messages_for_event(name, &fields, 1_700_000_000_000)
    }

    #[test]
    fn transcriptions_carry_pipecats_fields() {
        let frame = TranscriptionFrame {
            text: "hello".into(),
            user_id: None,
            language: None,
            at: Duration::ZERO,
        };
        let messages = rtvi(FrameBody::InterimTranscription(frame.clone()));
        assert_eq!(
            messages,
            [
                json!({"label": "rtvi-ai", "type": "user-transcription", "data": {
                "text": "hello", "user_id": "", "timestamp": "2023-11-14T22:13:20.000Z", "final": false}})
            ]
        );
        let messages = rtvi(FrameBody::Transcription(frame));
        assert_eq!(messages[0]["data"]["final"], json!(true));
    }

    #[test]
    fn speaking_and_llm_events_map_one_to_one() {
        for (body, kind) in [
            (FrameBody::BotStartedSpeaking, "bot-started-speaking"),
            (FrameBody::LlmResponseStart, "bot-llm-started"),
            (FrameBody::TtsStopped, "bot-tts-stopped"),
            (
                FrameBody::UserStartedSpeaking {
                    start: Duration::ZERO,
                },
                "user-started-speaking",
            ),
        ] {
            let messages = rtvi(body);
            assert_eq!(messages.len(), 1);
            assert_eq!(messages[0]["type"], kind);
            assert!(messages[0].get("data").is_none());
        }
        assert_eq!(
            rtvi(FrameBody::LlmText("Hi".into())),
            [json!({"label": "rtvi-ai", "type": "bot-llm-text", "data": {"text": "Hi"}})]
        );
    }

    #[test]
    fn tool_calls_become_function_call_messages() {
        let call = crate::conversation::ToolCall {
            id: "call_1".into(),
            name: "get_location".into(),
            arguments: r#"{"precise": true}"#.into(),
        };
        let messages = rtvi(FrameBody::FunctionCallInProgress(call.clone()));
        assert_eq!(messages[1]["type"], "llm-function-call-in-progress");
        assert_eq!(messages[1]["data"]["arguments"], json!({"precise": true}));
        let stopped = rtvi(FrameBody::FunctionCallResult {
            call,
            result: r#"{"city": "Oslo"}"#.into(),
        });
        assert_eq!(stopped[0]["data"]["result"], json!({"city": "Oslo"}));
    }

    #[test]
    fn metrics_are_in_seconds() {
        let ttfb = rtvi(FrameBody::Metrics(MetricsData::Ttfb {
            processor: "llm".into(),
            value_ms: 250.0,
        }));
        assert_eq!(
            ttfb,
            [
                json!({"label": "rtvi-ai", "type": "metrics", "data": {"ttfb": [{"processor": "llm", "value": 0.25}]}})
            ]
        );
        let transit = rtvi(FrameBody::Metrics(MetricsData::Transit {
            frames: 1,
            p50_us: 1.0,
            p99_us: 1.0,
        }));
        assert!(transit.is_empty());
    }

    #[test]
    fn server_messages_carry_their_data() {
        let messages = rtvi(FrameBody::ServerMessage(std::sync::Arc::new(
            json!({"score": 3}),
        )));
        assert_eq!(
            messages,
            [json!({"label": "rtvi-ai", "type": "server-message", "data": {"score": 3}})]
        );
    }

    #[test]
    fn agent_selections_and_reviews_are_server_messages() {
        let messages = rtvi(FrameBody::AgentSelected {
            agent: "finance".into(),
            by: "llm",
        });
        assert_eq!(
            messages,
            [json!({"label": "rtvi-ai", "type": "server-message",
                "data": {"type": "agent_selected", "agent": "finance", "by": "llm"}})]
        );
        let messages = rtvi(FrameBody::AnswerReviewed(crate::conversation::Reflection {
            rounds: 2,
            approved: false,
        }));
        assert_eq!(
            messages[0]["data"],
            json!({"type": "answer_reviewed", "rounds": 2, "approved": false})
        );
    }
}
