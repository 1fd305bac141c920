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
//! A session [`resumed`](RtviSession::resumed) is the new session of a
//! Pipecat client whose call ended while it was reconnecting: client-js
//! says `client-ready` once per `connect()`, never on a reconnection, so it
//! will not say it again. Such a session speaks RTVI (the current
//! protocol, no `bot-ready`) from the client's first message of its own,
//! its keep-alive ([`RtviSession::handle_keepalive`], sent every second
//! from the channel's opening) or any RTVI message; a page that sends
//! neither (voxpipe's own, which reconnects alike) keeps its JSON lines.
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
//!
//! What the bot says goes out as `bot-output` segments, announced, then
//! spoken when the bot stops or, for a word-timing TTS and a protocol 2
//! client, as the output reports each word heard (`bot_word_heard`):
//! [`Segments`].

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::inbound::{Rejected, RtviInbound, RtviRequest};
use super::outbound::{kept_before_ready, message, messages_for_event, reply};
use crate::frame::ClientRequest;
use crate::services::tts::SentenceSplitter;

mod segments;

use segments::Segments;

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

/// The most messages waiting for the client; older ones are dropped first.
const MAX_OUTBOX: usize = 1_024;

/// The most events of an unconfirmed preemptive reply held; older ones
/// are dropped first.
const MAX_HELD: usize = 1_024;

/// The most tool calls of discarded preemptive replies remembered while
/// their results are awaited; past it the oldest is forgotten (a result
/// that has not come after this many later discarded calls is taken never
/// to come).
const MAX_DISCARDED_TOOLS: usize = 1_024;

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
    /// The client said `client-ready` on an earlier call (see the module
    /// docs): active from its first Pipecat message.
    resumed: bool,
    /// What the bot says, as `bot-output` segments: announced, their
    /// progress, spoken (see [`Segments`]).
    segments: Segments,
    /// The LLM's text since the last whole sentence, for
    /// `bot-transcription`.
    bot_transcription: SentenceSplitter,
    /// A preemptive reply's events, held or being dropped: see
    /// [`Preemptive`].
    preemptive: Preemptive,
    /// The tool calls the held preemptive reply made: their results are
    /// held with it; once it is confirmed they go out as they come.
    held_tools: HashSet<String>,
    /// The tool calls of discarded preemptive replies whose results have
    /// not come: dropped whenever they come, however many replies later
    /// (a tool the interruption did not cancel answers when it is done).
    /// Any other tool's result goes out as it comes.
    discarded_tools: DiscardedTools,
}

/// The tool call ids of discarded replies, at most [`MAX_DISCARDED_TOOLS`],
/// the oldest forgotten first.
#[derive(Default)]
struct DiscardedTools {
    ids: HashSet<String>,
    /// Insertion order, for forgetting the oldest; may still name ids whose
    /// result came (removed from `ids` only).
    order: VecDeque<String>,
}

impl DiscardedTools {
    fn insert(&mut self, id: String) {
        if !self.ids.insert(id.clone()) {
            return;
        }
        // An id taken and discarded again is still named once in `order`,
        // at its place there: moved to the newest, never named twice (the
        // older name's eviction would forget the live one).
        if let Some(at) = self.order.iter().position(|named| *named == id) {
            self.order.remove(at);
        } else if self.order.len() == MAX_DISCARDED_TOOLS
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        self.order.push_back(id);
    }

    /// Whether `id` is a discarded reply's call; its one result is taken.
    fn take(&mut self, id: &str) -> bool {
        self.ids.remove(id)
    }
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
            resumed: false,
            segments: Segments::new(),
            bot_transcription: SentenceSplitter::new(),
            preemptive: Preemptive::None,
            held_tools: HashSet::new(),
            discarded_tools: DiscardedTools::default(),
        }
    }

    /// The RTVI side of session `session_id`, for a Pipecat client that
    /// said `client-ready` on an earlier call and is reconnecting: active
    /// from its first message of its own (see the module docs).
    pub fn resumed(session_id: Arc<str>) -> Self {
        RtviSession {
            resumed: true,
            ..RtviSession::new(session_id)
        }
    }

    /// Whether the client has said `client-ready` (or, resumed, spoken):
    /// from then on the call's events go out as RTVI messages.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// The client's keep-alive came (client-js sends one a second): a
    /// resumed session speaks RTVI from now on.
    pub fn handle_keepalive(&mut self) {
        if self.resumed && !self.active {
            self.resume();
        }
    }

    /// Activates a resumed session: no `bot-ready` (the client had it on
    /// its first call, and asks nothing now), the kept events sent.
    fn resume(&mut self) {
        tracing::info!("RTVI resumed: a Pipecat client reconnected after its call ended");
        self.active = true;
        while let Some((name, fields, wall_ms)) = self.backlog.pop_front() {
            self.send_event(&name, &fields, wall_ms);
        }
    }

    /// Takes one client message received at session time `now`.
    pub fn handle_inbound(&mut self, inbound: RtviInbound, now: Duration) -> RtviAction {
        let ready = matches!(inbound.request, RtviRequest::ClientReady { .. });
        if self.resumed && !self.active && !ready {
            self.resume();
        }
        let id = inbound.id;
        match inbound.request {
            RtviRequest::ClientReady { version, library } => {
                let library = library.as_deref().unwrap_or("?");
                let version = version.unwrap_or_else(|| {
                    tracing::info!(
                        library,
                        "RTVI client-ready without a readable version: taken as {PROTOCOL_VERSION}"
                    );
                    PROTOCOL_VERSION.to_owned()
                });
                tracing::info!(%version, library, "RTVI client ready");
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
                self.held_tools.clear();
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
                for id in std::mem::take(&mut self.held_tools) {
                    self.discarded_tools.insert(id);
                }
                return;
            }
            // A reply's start that no preemptive start announced: the
            // next reply, asked after the discarded one was stopped. The
            // discarded reply's tools may still answer: their calls stay
            // remembered.
            "llm_response_started" if matches!(self.preemptive, Preemptive::Dropping) => {
                self.preemptive = Preemptive::None;
            }
            _ => {}
        }
        let id = || fields["id"].as_str().unwrap_or_default().to_owned();
        if name == "tool_result" && self.discarded_tools.take(&id()) {
            return;
        }
        let its_own = match name {
            // A tool's result may be an earlier reply's (a tool the
            // interruption did not cancel): only the reply's own are its.
            "tool_result" => self.held_tools.remove(&id()),
            _ => is_reply_event(name),
        };
        if its_own && !matches!(self.preemptive, Preemptive::None) {
            if name == "tool_call" {
                match self.preemptive {
                    Preemptive::Dropping => self.discarded_tools.insert(id()),
                    _ if self.held_tools.len() < MAX_HELD => {
                        self.held_tools.insert(id());
                    }
                    _ => {}
                }
            }
            if let Preemptive::Held(held) = &mut self.preemptive {
                if held.len() == MAX_HELD {
                    held.pop_front();
                }
                held.push_back((name.to_owned(), fields.clone(), wall_ms));
            }
            return;
        }
        // `bot-output`: what the bot said is spoken once it stops speaking
        // (a word-timing TTS's words as they are heard, for protocol 2);
        // what an interruption cut stays unspoken.
        let spoken = match name {
            "bot_stopped_speaking" => self.segments.bot_stopped(self.legacy),
            "tts_stopped" => self.segments.audio_ended(),
            "bot_word_heard" if !self.legacy => self
                .segments
                .heard(fields["text"].as_str().unwrap_or_default()),
            "interruption" => {
                self.segments.interrupted();
                self.bot_transcription.clear();
                Vec::new()
            }
            _ => Vec::new(),
        };
        for message in spoken {
            self.send(message);
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
            for message in self.segments.spoken(fields, self.legacy) {
                self.send(message);
            }
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
mod tests;
