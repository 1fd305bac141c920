//! [`RtviSession`]: one call's RTVI state, without I/O.
//!
//! Fed with the client's messages ([`RtviSession::handle_inbound`],
//! [`RtviSession::reject`]), the pipeline's events
//! ([`RtviSession::handle_event`]) and the passing of time
//! ([`RtviSession::handle_timeout`]); drained with
//! [`RtviSession::poll_transmit`] (messages for the client, JSON text) and
//! [`RtviSession::poll_timeout`] (when to call back).
//!
//! A call speaks RTVI once its client says `client-ready` (answered with
//! `bot-ready`); before that the session sends nothing, so a page that
//! never speaks RTVI (voxpipe's own) sees no RTVI message. The events of
//! that time (the bot's greeting may start as the connection comes up,
//! before the data channel is open) are kept, the last [`MAX_BACKLOG`] of
//! them, and sent right after `bot-ready`, as Pipecat's transport queues
//! its messages until the channel opens.
//!
//! Each `client-message` goes down the pipeline and is remembered until a
//! processor answers it (a `client_response` event, sent as
//! `server-response` or `error-response`) or [`REQUEST_TIMEOUT`] passes.
//! Nothing answers for it: client-js sends fire-and-forget
//! `sendClientMessage()` and awaited `sendClientRequest()` alike, and, as
//! with Pipecat, an unanswered one is the client's to time out (an answer
//! of our own would be an error for every fire-and-forget message). At
//! most [`MAX_PENDING`] are remembered, the oldest forgotten first, so a
//! flood costs bounded memory and every message still reaches the
//! pipeline.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::inbound::{Rejected, RtviInbound, RtviRequest};
use super::outbound::{bot_output, kept_before_ready, message, messages_for_event, reply};
use crate::frame::ClientRequest;
use crate::services::tts::SentenceSplitter;

/// The RTVI protocol version voxpipe speaks (that of
/// `@pipecat-ai/client-js` 1.13).
pub const PROTOCOL_VERSION: &str = "2.1.0";

/// How long a processor's answer to a `client-message` is still taken:
/// well past what client-js waits by default (10 s), for requests sent
/// with a longer timeout of their own.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The most `client-message`s awaiting an answer at once.
pub const MAX_PENDING: usize = 32;

/// The most events kept from before `client-ready` (turn events only).
pub const MAX_BACKLOG: usize = 128;

/// The most spoken-text segments announced and not yet spoken; past it the
/// oldest is marked spoken at once.
const MAX_OPEN_SEGMENTS: usize = 256;

/// The most messages waiting for the client; older ones are dropped first.
const MAX_OUTBOX: usize = 1_024;

/// The most events of an unconfirmed preemptive reply held; older ones
/// are dropped first.
const MAX_HELD: usize = 1_024;

/// Where a preemptive reply stands, for the client.
enum Preemptive {
    /// None prepared: the bot's events go out.
    None,
    /// Prepared, not yet confirmed: its events (name, fields, wall clock)
    /// are held, sent if it is confirmed.
    Held(VecDeque<(String, Value, u64)>),
    /// Discarded: what it still produces before the interruption stops it
    /// is dropped, until the next reply starts.
    Dropping,
}

/// Whether an event is part of the bot's reply (what a preemptive reply
/// produces before it is confirmed).
fn is_reply_event(name: &str) -> bool {
    matches!(
        name,
        "llm_response_started"
            | "llm_text"
            | "llm_response_ended"
            | "tool_call"
            | "tool_result"
            | "agent_selected"
            | "answer_reviewed"
            | "tts_started"
            | "tts_text"
            | "tts_stopped"
    )
}

/// The `client-message` type voxpipe answers itself: the session's id and
/// the protocol version.
pub const SESSION_INFO: &str = "session-info";

/// What the transport should do for a client message.
#[derive(Debug, Clone, PartialEq)]
pub enum RtviAction {
    /// Nothing more (answered here, or only state changed).
    None,
    /// The user typed this: text input, to be checked and pushed.
    Text(String),
    /// Push this request down the pipeline for a processor to answer.
    Request(ClientRequest),
    /// End the session gracefully.
    Disconnect,
    /// The user pressed these keys.
    Dtmf(Vec<char>),
    /// A tool the client ran has its result.
    FunctionCallResult {
        /// The tool call it answers.
        tool_call_id: String,
        /// The result, as JSON text.
        result: String,
    },
}

struct Pending {
    id: Arc<str>,
    kind: String,
    deadline: Duration,
}

/// One call's RTVI state. See the module docs.
pub struct RtviSession {
    session_id: Arc<str>,
    active: bool,
    pending: VecDeque<Pending>,
    outbox: VecDeque<String>,
    /// Events from before `client-ready` (name, fields, wall clock),
    /// oldest first: sent once the client's protocol is known.
    backlog: VecDeque<(String, Value, u64)>,
    /// The client speaks protocol 1 (`client-ready` said 1.x): answered
    /// as Pipecat answers such clients.
    legacy: bool,
    /// The next `bot-output` segment's id.
    next_segment: u64,
    /// Segments announced (`bot-output` `new`) and not yet spoken: marked
    /// spoken when the bot stops speaking, dropped when it is interrupted.
    open_segments: VecDeque<(u64, Value)>,
    /// The LLM's text since the last whole sentence, for
    /// `bot-transcription`.
    bot_transcription: SentenceSplitter,
    /// Words a word-timing TTS spoke since the last whole sentence: a
    /// protocol 2 client gets `bot-output` segments a sentence long, as
    /// Pipecat sends them (a word each, client-react would show the words
    /// run together).
    spoken_words: SentenceSplitter,
    /// A preemptive reply's events, held or being dropped: see
    /// [`Preemptive`].
    preemptive: Preemptive,
}

impl RtviSession {
    /// The RTVI side of session `session_id`, not yet active.
    pub fn new(session_id: Arc<str>) -> Self {
        RtviSession {
            session_id,
            active: false,
            pending: VecDeque::new(),
            outbox: VecDeque::new(),
            backlog: VecDeque::new(),
            legacy: false,
            next_segment: 1,
            open_segments: VecDeque::new(),
            bot_transcription: SentenceSplitter::new(),
            spoken_words: SentenceSplitter::new(),
            preemptive: Preemptive::None,
        }
    }

    /// Whether the client has said `client-ready`: from then on the call's
    /// events go out as RTVI messages.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Takes one client message received at session time `now`.
    pub fn handle_inbound(&mut self, inbound: RtviInbound, now: Duration) -> RtviAction {
        let id = inbound.id;
        match inbound.request {
            RtviRequest::ClientReady { version, library } => {
                tracing::info!(%version, library = library.as_deref().unwrap_or("?"), "RTVI client ready");
                self.legacy = version.starts_with("1.");
                if !self.legacy && !version.starts_with("2.") {
                    tracing::warn!(%version, "RTVI client of another major version than {PROTOCOL_VERSION}");
                }
                self.active = true;
                // A 1.x client is told its own version back, as Pipecat
                // does: the server's would have it expect 2.x messages.
                let version = if self.legacy {
                    version.as_str()
                } else {
                    PROTOCOL_VERSION
                };
                let ready = json!({
                    "version": version,
                    "about": {"library": "voxpipe", "library_version": env!("CARGO_PKG_VERSION")},
                });
                self.send(reply("bot-ready", id.as_deref().unwrap_or_default(), ready));
                while let Some((name, fields, wall_ms)) = self.backlog.pop_front() {
                    self.send_event(&name, &fields, wall_ms);
                }
                RtviAction::None
            }
            RtviRequest::SendText { content } => RtviAction::Text(content),
            RtviRequest::ClientMessage { kind, data } => {
                let Some(id) = id else {
                    self.reject(&Rejected {
                        id: None,
                        error: "a client-message needs an id".into(),
                    });
                    return RtviAction::None;
                };
                if kind == SESSION_INFO {
                    let info =
                        json!({"session_id": &*self.session_id, "version": PROTOCOL_VERSION});
                    self.send(reply("server-response", &id, json!({"t": kind, "d": info})));
                    return RtviAction::None;
                }
                if self.pending.len() >= MAX_PENDING {
                    self.pending.pop_front();
                }
                let id: Arc<str> = id.into();
                self.pending.push_back(Pending {
                    id: Arc::clone(&id),
                    kind: kind.clone(),
                    deadline: now + REQUEST_TIMEOUT,
                });
                RtviAction::Request(ClientRequest {
                    id,
                    kind,
                    data: Arc::new(data),
                })
            }
            RtviRequest::DisconnectBot => RtviAction::Disconnect,
            RtviRequest::Dtmf(keys) => RtviAction::Dtmf(keys),
            RtviRequest::FunctionCallResult {
                tool_call_id,
                result,
                ..
            } => {
                let result = match result {
                    Value::String(text) => text,
                    other => other.to_string(),
                };
                RtviAction::FunctionCallResult {
                    tool_call_id,
                    result,
                }
            }
        }
    }

    /// Answers a message that could not be used: `error-response` when it
    /// had an id, else an `error` event.
    pub fn reject(&mut self, rejected: &Rejected) {
        tracing::debug!(error = %rejected.error, "RTVI message refused");
        match &rejected.id {
            Some(id) => self.send(error_response(id, &rejected.error)),
            None => self.send(message(
                "error",
                json!({"error": rejected.error, "fatal": false}),
            )),
        }
    }

    /// Takes one voxpipe event (see [`crate::events`]); `wall_ms` is the
    /// wall clock, Unix milliseconds.
    pub fn handle_event(&mut self, name: &str, fields: &Value, wall_ms: u64) {
        if name == "client_response" {
            self.answer(fields);
            return;
        }
        if self.active {
            self.send_event(name, fields, wall_ms);
            return;
        }
        if !kept_before_ready(name, fields) {
            return;
        }
        if self.backlog.len() == MAX_BACKLOG {
            self.backlog.pop_front();
        }
        self.backlog
            .push_back((name.to_owned(), fields.clone(), wall_ms));
    }

    fn send_event(&mut self, name: &str, fields: &Value, wall_ms: u64) {
        match name {
            // Held from its start (announced once per hop) until the user's
            // turn is confirmed over; the turn itself goes out at once.
            "preemptive_reply_started" => {
                if !matches!(self.preemptive, Preemptive::Held(_)) {
                    self.preemptive = Preemptive::Held(VecDeque::new());
                }
                return;
            }
            "preemptive_reply_confirmed" => {
                if let Preemptive::Held(held) =
                    std::mem::replace(&mut self.preemptive, Preemptive::None)
                {
                    for (name, fields, wall_ms) in held {
                        self.send_event(&name, &fields, wall_ms);
                    }
                }
                return;
            }
            "preemptive_reply_discarded" => {
                self.preemptive = Preemptive::Dropping;
                return;
            }
            // A reply's start that no preemptive start announced: the
            // next reply, asked after the discarded one was stopped.
            "llm_response_started" if matches!(self.preemptive, Preemptive::Dropping) => {
                self.preemptive = Preemptive::None;
            }
            _ => {}
        }
        if is_reply_event(name) {
            match &mut self.preemptive {
                Preemptive::None => {}
                Preemptive::Held(held) => {
                    if held.len() == MAX_HELD {
                        held.pop_front();
                    }
                    held.push_back((name.to_owned(), fields.clone(), wall_ms));
                    return;
                }
                // A tool's result may be an earlier reply's (a tool not
                // cancelled by the interruption): it goes out.
                Preemptive::Dropping if name != "tool_result" => return,
                Preemptive::Dropping => {}
            }
        }
        match name {
            // What the bot said is spoken once it stops speaking; what an
            // interruption cut stays unspoken.
            "bot_stopped_speaking" => {
                self.announce_spoken_words();
                while let Some((segment, text)) = self.open_segments.pop_front() {
                    self.send(bot_output(&text, segment, self.legacy, true));
                }
            }
            "tts_stopped" => self.announce_spoken_words(),
            "interruption" => {
                self.open_segments.clear();
                self.bot_transcription.clear();
                self.spoken_words.clear();
            }
            _ => {}
        }
        for message in messages_for_event(name, fields, wall_ms) {
            self.send(message);
        }
        // `bot-transcription`: the LLM's text a sentence at a time, as
        // Pipecat sends it; the last one when the response ends.
        let sentences = match name {
            "llm_text" => self
                .bot_transcription
                .push(fields["text"].as_str().unwrap_or_default()),
            // A tool call ends what was said before it, as Pipecat's
            // response ends there.
            "llm_response_ended" | "tool_call" => {
                self.bot_transcription.finish().into_iter().collect()
            }
            _ => Vec::new(),
        };
        for sentence in sentences {
            self.send(message("bot-transcription", json!({ "text": sentence })));
        }
        if name == "tts_text" {
            if !self.legacy && fields["timing"] == "word" {
                let word = fields["text"].as_str().unwrap_or_default().trim();
                for sentence in self.spoken_words.push(&format!("{word} ")) {
                    self.announce(json!({"text": sentence, "timing": "sentence"}));
                }
            } else {
                self.announce(fields.clone());
            }
        }
    }

    /// Announces the spoken text `fields` (a `tts_text` event's) as a new
    /// `bot-output` segment, spoken when the bot stops speaking.
    fn announce(&mut self, fields: Value) {
        let segment = self.next_segment;
        self.next_segment += 1;
        self.send(bot_output(&fields, segment, self.legacy, false));
        if self.open_segments.len() == MAX_OPEN_SEGMENTS
            && let Some((oldest, text)) = self.open_segments.pop_front()
        {
            self.send(bot_output(&text, oldest, self.legacy, true));
        }
        self.open_segments.push_back((segment, fields));
    }

    /// Announces the words spoken since the last whole sentence (the
    /// response's audio ended, or the bot stopped speaking).
    fn announce_spoken_words(&mut self) {
        if let Some(rest) = self.spoken_words.finish() {
            self.announce(json!({"text": rest, "timing": "sentence"}));
        }
    }

    /// A processor's answer to a pending request.
    fn answer(&mut self, fields: &Value) {
        let id = fields["id"].as_str().unwrap_or_default();
        let Some(at) = self.pending.iter().position(|p| &*p.id == id) else {
            tracing::debug!(id, "answer to no pending client request (timed out?)");
            return;
        };
        self.pending.remove(at);
        let answer = match fields.get("error").and_then(Value::as_str) {
            Some(error) => error_response(id, error),
            None => reply(
                "server-response",
                id,
                json!({"t": fields["type"], "d": fields["data"]}),
            ),
        };
        self.send(answer);
    }

    /// Forgets every request pending past its deadline at `now`: an
    /// answer after it is dropped.
    pub fn handle_timeout(&mut self, now: Duration) {
        while let Some(expired) = self.pending.front().filter(|p| p.deadline <= now) {
            tracing::debug!(kind = %expired.kind, "no processor answered a client message");
            self.pending.pop_front();
        }
    }

    /// When [`Self::handle_timeout`] has something to do, if ever.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.pending.front().map(|p| p.deadline)
    }

    /// The next message for the client, as JSON text.
    pub fn poll_transmit(&mut self) -> Option<String> {
        self.outbox.pop_front()
    }

    fn send(&mut self, message: Value) {
        if self.outbox.len() == MAX_OUTBOX {
            self.outbox.pop_front();
        }
        self.outbox.push_back(message.to_string());
    }
}

fn error_response(id: &str, error: &str) -> Value {
    reply("error-response", id, json!({"error": error}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::rtvi::parse_rtvi;

    fn inbound(s: &str) -> RtviInbound {
        parse_rtvi(&serde_json::from_str(s).unwrap()).unwrap()
    }

    fn drain(session: &mut RtviSession) -> Vec<Value> {
        std::iter::from_fn(|| session.poll_transmit())
            .map(|m| serde_json::from_str(&m).unwrap())
            .collect()
    }

    const READY: &str = r#"{"label":"rtvi-ai","type":"client-ready","id":"r1","data":{"version":"2.1.0","about":{"library":"@pipecat-ai/client-js","library_version":"1.13.1"}}}"#;

    #[test]
    fn client_ready_is_answered_with_bot_ready_then_what_came_before() {
        let mut session = RtviSession::new("s1".into());
        session.handle_event("bot_started_speaking", &json!({}), 0);
        assert!(drain(&mut session).is_empty(), "silent before client-ready");
        assert_eq!(
            session.handle_inbound(inbound(READY), Duration::ZERO),
            RtviAction::None
        );
        let sent = drain(&mut session);
        assert_eq!(sent[0]["type"], "bot-ready");
        assert_eq!(sent[0]["id"], "r1");
        assert_eq!(sent[0]["data"]["version"], PROTOCOL_VERSION);
        assert_eq!(
            sent[1]["type"], "bot-started-speaking",
            "the greeting's start"
        );
        assert_eq!(sent.len(), 2);
        session.handle_event("bot_stopped_speaking", &json!({}), 0);
        assert_eq!(drain(&mut session)[0]["type"], "bot-stopped-speaking");
    }

    #[test]
    fn what_comes_before_client_ready_is_kept_within_a_bound() {
        let mut session = RtviSession::new("s1".into());
        for _ in 0..MAX_BACKLOG + 10 {
            session.handle_event("bot_started_speaking", &json!({}), 0);
        }
        session.handle_inbound(inbound(READY), Duration::ZERO);
        assert_eq!(drain(&mut session).len(), 1 + MAX_BACKLOG);
    }

    fn request(session: &mut RtviSession, id: &str, t: &str, now: Duration) -> RtviAction {
        let json = format!(
            r#"{{"label":"rtvi-ai","type":"client-message","id":"{id}","data":{{"t":"{t}","d":{{"x":1}}}}}}"#
        );
        session.handle_inbound(inbound(&json), now)
    }

    #[test]
    fn a_client_message_is_answered_by_a_processor_or_left_to_the_client() {
        let mut session = RtviSession::new("s1".into());
        session.handle_inbound(inbound(READY), Duration::ZERO);
        drain(&mut session);
        let action = request(&mut session, "m1", "weather", Duration::ZERO);
        let RtviAction::Request(asked) = action else {
            panic!("{action:?}")
        };
        assert_eq!((&*asked.id, asked.kind.as_str()), ("m1", "weather"));
        request(&mut session, "m2", "weather", Duration::from_secs(1));
        assert_eq!(session.poll_timeout(), Some(REQUEST_TIMEOUT));
        session.handle_event(
            "client_response",
            &json!({"id": "m1", "type": "weather", "data": {"sunny": true}}),
            0,
        );
        assert_eq!(
            drain(&mut session),
            [
                json!({"label": "rtvi-ai", "type": "server-response", "id": "m1",
                "data": {"t": "weather", "d": {"sunny": true}}})
            ]
        );
        session.handle_timeout(REQUEST_TIMEOUT + Duration::from_secs(1));
        assert!(
            drain(&mut session).is_empty(),
            "no answer of its own: a fire-and-forget message gets none"
        );
        assert_eq!(session.poll_timeout(), None, "m2 is forgotten");
        // A late answer is dropped.
        session.handle_event(
            "client_response",
            &json!({"id": "m2", "type": "weather", "data": 1}),
            0,
        );
        assert!(drain(&mut session).is_empty());
    }

    #[test]
    fn session_info_is_answered_here() {
        let mut session = RtviSession::new("s9".into());
        assert_eq!(
            request(&mut session, "m1", SESSION_INFO, Duration::ZERO),
            RtviAction::None
        );
        let sent = drain(&mut session);
        assert_eq!(sent[0]["data"]["d"]["session_id"], "s9");
    }

    #[test]
    fn pending_requests_are_bounded_and_every_message_goes_on() {
        let mut session = RtviSession::new("s1".into());
        for n in 0..MAX_PENDING + 5 {
            let action = request(&mut session, &format!("m{n}"), "x", Duration::ZERO);
            assert!(matches!(action, RtviAction::Request(_)), "{n}");
        }
        assert_eq!(session.pending.len(), MAX_PENDING);
        assert!(drain(&mut session).is_empty());
        // The oldest were forgotten: an answer to one is dropped; the newest
        // is answered.
        session.handle_event(
            "client_response",
            &json!({"id": "m0", "type": "x", "data": 1}),
            0,
        );
        assert!(drain(&mut session).is_empty());
        let newest = format!("m{}", MAX_PENDING + 4);
        session.handle_event(
            "client_response",
            &json!({"id": newest, "type": "x", "data": 1}),
            0,
        );
        assert_eq!(drain(&mut session)[0]["id"], newest.as_str());
    }

    #[test]
    fn rejections_answer_by_id_or_as_an_error() {
        let mut session = RtviSession::new("s1".into());
        session.reject(&Rejected {
            id: Some("7".into()),
            error: "no".into(),
        });
        session.reject(&Rejected {
            id: None,
            error: "no".into(),
        });
        let sent = drain(&mut session);
        assert_eq!(
            sent[0],
            json!({"label": "rtvi-ai", "type": "error-response", "id": "7", "data": {"error": "no"}})
        );
        assert_eq!(
            sent[1],
            json!({"label": "rtvi-ai", "type": "error", "data": {"error": "no", "fatal": false}})
        );
    }

    #[test]
    fn function_call_results_become_text() {
        let mut session = RtviSession::new("s1".into());
        let action = session.handle_inbound(
            inbound(r#"{"label":"rtvi-ai","type":"llm-function-call-result","id":"f","data":{"function_name":"where","tool_call_id":"call_1","arguments":{},"result":{"city":"Oslo"}}}"#),
            Duration::ZERO,
        );
        assert_eq!(
            action,
            RtviAction::FunctionCallResult {
                tool_call_id: "call_1".into(),
                result: r#"{"city":"Oslo"}"#.into()
            }
        );
    }

    #[test]
    fn a_word_timing_tts_gives_a_protocol_2_client_sentence_segments() {
        let word = |text: &str| json!({"text": text, "timing": "word"});
        let outputs = |session: &mut RtviSession| -> Vec<(String, String)> {
            drain(session)
                .into_iter()
                .filter(|m| m["type"] == "bot-output")
                .map(|m| {
                    let status = m["data"]["spoken_status"].as_str().unwrap_or("1.x");
                    (
                        status.to_owned(),
                        m["data"]["text"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        };
        let mut session = RtviSession::new("s1".into());
        session.handle_inbound(inbound(READY), Duration::ZERO);
        drain(&mut session);
        for text in ["Hello!", "How", "can", "I"] {
            session.handle_event("tts_text", &word(text), 0);
        }
        assert_eq!(outputs(&mut session), [("new".into(), "Hello!".into())]);
        session.handle_event("tts_text", &word("help?"), 0);
        session.handle_event("tts_stopped", &json!({}), 0);
        assert_eq!(
            outputs(&mut session),
            [("new".into(), "How can I help?".into())]
        );
        session.handle_event("bot_stopped_speaking", &json!({}), 0);
        assert_eq!(
            outputs(&mut session),
            [
                ("completed".into(), "Hello!".into()),
                ("completed".into(), "How can I help?".into())
            ]
        );
        // Words an interruption cut are never announced.
        session.handle_event("tts_text", &word("Well,"), 0);
        session.handle_event("interruption", &json!({}), 0);
        session.handle_event("bot_stopped_speaking", &json!({}), 0);
        assert!(outputs(&mut session).is_empty());

        // A 1.x client gets the words, as Pipecat sends them to it.
        let mut legacy = RtviSession::new("s2".into());
        legacy.handle_inbound(
            inbound(
                r#"{"label":"rtvi-ai","type":"client-ready","id":"r","data":{"version":"1.0.0"}}"#,
            ),
            Duration::ZERO,
        );
        drain(&mut legacy);
        legacy.handle_event("tts_text", &word("Hello!"), 0);
        assert_eq!(outputs(&mut legacy), [("1.x".into(), "Hello!".into())]);
    }

    #[test]
    fn the_users_turn_and_the_bots_sentences_go_out_as_pipecat_sends_them() {
        let mut session = RtviSession::new("s1".into());
        session.handle_inbound(inbound(READY), Duration::ZERO);
        drain(&mut session);
        let turn = |role: &str, text: &str| json!({"index": 0, "role": role, "text": text, "interrupted": false});
        session.handle_event("turn_completed", &turn("user", "Where am I?"), 0);
        session.handle_event("turn_completed", &turn("assistant", "Oslo."), 0);
        session.handle_event("turn_completed", &turn("tool", "{}"), 0);
        assert_eq!(
            drain(&mut session),
            [json!({"label": "rtvi-ai", "type": "user-llm-text", "data": {"text": "Where am I?"}})]
        );

        let transcripts = |session: &mut RtviSession| -> Vec<String> {
            drain(session)
                .into_iter()
                .filter(|m| m["type"] == "bot-transcription")
                .map(|m| m["data"]["text"].as_str().unwrap().to_owned())
                .collect()
        };
        for token in ["You are", " in Oslo.", " It is", " sunny"] {
            session.handle_event("llm_text", &json!({ "text": token }), 0);
        }
        assert_eq!(transcripts(&mut session), ["You are in Oslo."]);
        session.handle_event("llm_response_ended", &json!({}), 0);
        assert_eq!(transcripts(&mut session), ["It is sunny"]);

        // What an interruption cut is never sent.
        session.handle_event("llm_text", &json!({"text": "Let me"}), 0);
        session.handle_event("interruption", &json!({}), 0);
        session.handle_event("llm_response_ended", &json!({}), 0);
        assert!(transcripts(&mut session).is_empty());

        // A tool call ends what was said before it.
        session.handle_event("llm_text", &json!({"text": "Let me check"}), 0);
        session.handle_event(
            "tool_call",
            &json!({"id": "c", "name": "where", "arguments": "{}"}),
            0,
        );
        session.handle_event("llm_text", &json!({"text": "You are in Oslo"}), 0);
        session.handle_event("llm_response_ended", &json!({}), 0);
        assert_eq!(
            transcripts(&mut session),
            ["Let me check", "You are in Oslo"]
        );
    }

    #[test]
    fn a_preemptive_reply_is_shown_only_once_confirmed() {
        let mut session = RtviSession::new("s1".into());
        session.handle_inbound(inbound(READY), Duration::ZERO);
        drain(&mut session);
        let types = |session: &mut RtviSession| -> Vec<String> {
            drain(session)
                .iter()
                .map(|m| m["type"].as_str().unwrap().to_owned())
                .collect()
        };
        let reply = |session: &mut RtviSession, text: &str| {
            session.handle_event("preemptive_reply_started", &json!({}), 0);
            // Announced again by the LLM as it takes the context.
            session.handle_event("preemptive_reply_started", &json!({}), 0);
            session.handle_event("llm_response_started", &json!({}), 0);
            session.handle_event("llm_text", &json!({ "text": text }), 0);
            session.handle_event("llm_response_ended", &json!({}), 0);
            session.handle_event("tts_text", &json!({"text": text, "timing": "sentence"}), 0);
        };
        // The user went on speaking: nothing of it is ever seen.
        reply(&mut session, "Sure.");
        session.handle_event("user_started_speaking", &json!({}), 0);
        session.handle_event("preemptive_reply_discarded", &json!({}), 0);
        assert_eq!(types(&mut session), ["user-started-speaking"]);

        // What the discarded reply still produces before it is stopped is
        // dropped, until the next reply starts.
        session.handle_event("llm_text", &json!({"text": " More."}), 0);
        session.handle_event(
            "tts_text",
            &json!({"text": "More.", "timing": "sentence"}),
            0,
        );
        assert!(types(&mut session).is_empty());
        session.handle_event("llm_response_started", &json!({}), 0);
        session.handle_event("llm_text", &json!({"text": "Hello."}), 0);
        session.handle_event("llm_response_ended", &json!({}), 0);
        assert_eq!(
            types(&mut session),
            [
                "bot-llm-started",
                "bot-llm-text",
                "bot-llm-stopped",
                "bot-transcription"
            ]
        );

        // Confirmed: the user's turn, then the reply.
        reply(&mut session, "Yes, we are open.");
        let turn =
            json!({"index": 2, "role": "user", "text": "Are you open?", "interrupted": false});
        session.handle_event("turn_completed", &turn, 0);
        assert_eq!(types(&mut session), ["user-llm-text"]);
        session.handle_event("preemptive_reply_confirmed", &json!({}), 0);
        assert_eq!(
            types(&mut session),
            [
                "bot-llm-started",
                "bot-llm-text",
                "bot-llm-stopped",
                "bot-transcription",
                "bot-tts-text",
                "bot-output"
            ]
        );
    }

    #[test]
    fn spoken_text_is_announced_then_spoken_when_the_bot_stops_and_a_cut_stays_unspoken() {
        let spoken = |text: &str| json!({"text": text, "timing": "sentence"});
        let mut session = RtviSession::new("s1".into());
        session.handle_inbound(inbound(READY), Duration::ZERO);
        drain(&mut session);
        session.handle_event("tts_text", &spoken("Hello there."), 0);
        session.handle_event("tts_text", &spoken("How are you?"), 0);
        let announced = drain(&mut session);
        let types: Vec<&str> = announced
            .iter()
            .map(|m| m["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            ["bot-tts-text", "bot-output", "bot-tts-text", "bot-output"]
        );
        let new = &announced[1]["data"];
        assert_eq!(new["spoken_status"], "new");
        assert_eq!(new["spoken_progress"]["remaining_text"], "Hello there.");
        assert_ne!(
            announced[3]["data"]["segment_id"], new["segment_id"],
            "one id a segment"
        );

        session.handle_event("bot_stopped_speaking", &json!({}), 0);
        let spoken_out = drain(&mut session);
        let done = &spoken_out[0]["data"];
        assert_eq!(done["spoken_status"], "completed");
        assert_eq!(done["segment_id"], new["segment_id"]);
        assert_eq!(done["spoken_progress"]["accumulated_text"], "Hello there.");
        assert_eq!(done["spoken_progress"]["remaining_text"], "");
        assert_eq!(spoken_out[1]["data"]["text"], "How are you?");
        assert_eq!(spoken_out[2]["type"], "bot-stopped-speaking");

        // Cut by the user: never marked spoken.
        session.handle_event("tts_text", &spoken("Let me explain."), 0);
        session.handle_event("interruption", &json!({}), 0);
        session.handle_event("bot_stopped_speaking", &json!({}), 0);
        let after = drain(&mut session);
        assert!(
            after
                .iter()
                .all(|m| m["data"]["spoken_status"] != "completed"),
            "{after:?}"
        );

        // A 1.x client: its version back, and `spoken` false then true.
        let mut legacy = RtviSession::new("s2".into());
        legacy.handle_event("tts_text", &spoken("Hi."), 0);
        legacy.handle_inbound(
            inbound(r#"{"label":"rtvi-ai","type":"client-ready","id":"r1","data":{"version":"1.4.0","about":{}}}"#),
            Duration::ZERO,
        );
        legacy.handle_event("bot_stopped_speaking", &json!({}), 0);
        let sent = drain(&mut legacy);
        assert_eq!(sent[0]["data"]["version"], "1.4.0");
        assert_eq!(sent[2]["data"]["spoken"], false, "{sent:?}");
        assert_eq!(sent[3]["data"]["spoken"], true);
        assert!(sent[3]["data"].get("spoken_status").is_none());
    }

    #[test]
    fn a_long_greeting_before_client_ready_keeps_its_start() {
        let mut session = RtviSession::new("s1".into());
        session.handle_event("llm_response_started", &json!({}), 0);
        session.handle_event("bot_started_speaking", &json!({}), 0);
        for _ in 0..500 {
            session.handle_event("llm_text", &json!({"text": "word "}), 0);
            session.handle_event("interim_transcription", &json!({"text": "hm"}), 0);
        }
        session.handle_inbound(inbound(READY), Duration::ZERO);
        let sent = drain(&mut session);
        assert_eq!(sent[1]["type"], "bot-llm-started");
        assert_eq!(sent[2]["type"], "bot-started-speaking");
    }
}
