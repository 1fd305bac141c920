//! [`ContextSocket`]: the state of a TTS WebSocket that carries a context
//! per response (ElevenLabs multi-context, Cartesia contexts), as a sans-IO
//! state machine.
//!
//! It owns no socket and reads no clock: the driver (`ws_wire.rs`) feeds it
//! what the engine asks (`handle_text`, `handle_finish`, `handle_cancel`)
//! and what the socket does (`handle_connected`, `handle_message`,
//! `handle_closed`, …) with the instant it happened, carries out
//! [`ContextSocket::poll_action`] (open a socket, send this text, drop
//! it), hands [`ContextSocket::poll_event`] to the engine, and sleeps
//! until [`ContextSocket::poll_timeout`]. The tests below script sessions
//! from Cartesia's own messages.
//!
//! # One socket for the session
//!
//! The socket opens when the session starts (the warm-up) and is reused by
//! every response. If it closes or fails, every open context fails (and is
//! reported done, so its response ends cleanly) and the next text opens a
//! new socket. A context still taking text may be quiet for long (a tool
//! runs); while one waits for its last audio, `read_timeout` without a
//! message from the socket counts as losing it. A ping does not hold that
//! wait off: a server that pings on and never answers a context would
//! hold its response for ever.
//!
//! # Holding the close
//!
//! ElevenLabs has a server-side race: a `close_context` that arrives before
//! the synthesis of the context's last flushed text has started is honoured
//! at once, with no audio (and at times no `isFinal` either; Pipecat issues
//! #4681 and #5271). For an adapter that says so
//! ([`WsSpeech::close_waits_for_audio`]), the close of a finished context
//! is held until audio of its last text has come: once that streams, the
//! server puts `isFinal` after the last of it. Audio of an earlier sentence
//! is not enough (the last one's synthesis may not have started yet): when
//! the adapter counts the characters its audio was aligned with
//! ([`WsSpeech::aligned_chars`]), the close goes once more of them came
//! than were sent before the last text (whitespace not counted). Each held
//! close has its own deadline, `read_timeout` after the context was
//! finished or last had audio, whatever the other contexts do: if no
//! audio comes by then (a text with nothing to say), the close goes out
//! anyway, and the wait for its `isFinal` starts then, the other
//! contexts' waits left as they were.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::services::ServiceError;

use super::wire::WireEvent;
use super::ws_speech::{WsSpeech, counted_chars};

/// What the driver is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SocketAction {
    /// Open a socket to the adapter's target; answer with
    /// `handle_connected` or `handle_connect_failed`.
    Connect,
    /// Send this text message; a failed send is `handle_socket_lost`.
    Send(String),
    /// Drop the socket: it is lost.
    Disconnect,
    /// Close the socket politely (the session ends).
    Close,
}

/// Where the socket stands.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Socket {
    Down,
    Connecting,
    Open,
}

/// What the engine asked while the socket was being opened.
#[derive(Debug)]
enum Waiting {
    Text { context: String, text: String },
    Finish { context: String },
}

/// How many characters of a context's text were sent.
#[derive(Debug, Default, Clone, Copy)]
struct SentChars {
    /// All of them.
    total: usize,
    /// Those before its last text.
    before_last: usize,
}

/// The socket's state machine. See the module docs.
pub(crate) struct ContextSocket<A> {
    adapter: A,
    read_timeout: Duration,
    socket: Socket,
    /// Asked for before the socket opened, in order.
    waiting: Vec<Waiting>,
    /// Contexts opened on the current socket and not yet done.
    open: HashSet<String>,
    /// Open contexts with all their text sent, waiting for their last
    /// audio, and since when their close has been out (their finish, for
    /// a held one).
    finishing: HashMap<String, Instant>,
    /// Open contexts with no audio since their last text was sent.
    awaiting_audio: HashSet<String>,
    /// Characters (not whitespace) of each open context's text sent.
    sent_chars: HashMap<String, SentChars>,
    /// Finishing contexts whose close is held, and when it goes out at the
    /// latest (see "Holding the close").
    held: HashMap<String, Instant>,
    /// When the socket was last heard from (or last asked something).
    heard_at: Option<Instant>,
    events: VecDeque<WireEvent>,
    actions: VecDeque<SocketAction>,
}

impl<A: WsSpeech> ContextSocket<A> {
    /// No socket yet; `read_timeout` is the silence allowed while a context
    /// waits for its last audio.
    pub(crate) fn new(adapter: A, read_timeout: Duration) -> Self {
        ContextSocket {
            adapter,
            read_timeout,
            socket: Socket::Down,
            waiting: Vec::new(),
            open: HashSet::new(),
            finishing: HashMap::new(),
            awaiting_audio: HashSet::new(),
            sent_chars: HashMap::new(),
            held: HashMap::new(),
            heard_at: None,
            events: VecDeque::new(),
            actions: VecDeque::new(),
        }
    }

    /// The provider adapter.
    pub(crate) fn adapter(&self) -> &A {
        &self.adapter
    }

    /// The next thing to do, in order.
    pub(crate) fn poll_action(&mut self) -> Option<SocketAction> {
        self.actions.pop_front()
    }

    /// The next thing to do, left in place: a driver that may be cancelled
    /// takes it with [`poll_action`](Self::poll_action) once it is done.
    pub(crate) fn peek_action(&self) -> Option<&SocketAction> {
        self.actions.front()
    }

    /// The next thing to tell the engine.
    pub(crate) fn poll_event(&mut self) -> Option<WireEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` is next due, if a timer runs: the first held
    /// close's deadline, or the socket's silence since the earliest close
    /// still waiting for its context's end.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.socket != Socket::Open {
            return None;
        }
        let held = self.held.values().min().copied();
        [held, self.silence_deadline()].into_iter().flatten().min()
    }

    /// When the socket counts as lost: `read_timeout` without a message
    /// since the earliest close that went out and is still waiting.
    fn silence_deadline(&self) -> Option<Instant> {
        let earliest = self
            .finishing
            .iter()
            .filter(|(context, _)| !self.held.contains_key(*context))
            .map(|(_, &since)| since)
            .min()?;
        let heard = self.heard_at.map_or(earliest, |at| at.max(earliest));
        Some(heard + self.read_timeout)
    }

    /// Whether audio of `context`'s last text has come (see "Holding the
    /// close").
    fn last_text_heard(&self, context: &str) -> bool {
        if self.awaiting_audio.contains(context) {
            return false;
        }
        let before_last = self
            .sent_chars
            .get(context)
            .map_or(0, |sent| sent.before_last);
        self.adapter
            .aligned_chars(context)
            .is_none_or(|aligned| aligned > before_last)
    }

    /// The session starts: open the socket before the first text needs it.
    pub(crate) fn handle_warm_up(&mut self, _now: Instant) {
        if self.socket == Socket::Down {
            self.connect();
        }
    }

    /// A sentence of `context` to speak.
    pub(crate) fn handle_text(&mut self, context: &str, text: &str, now: Instant) {
        self.heard_at = Some(now);
        if self.socket != Socket::Open {
            self.waiting.push(Waiting::Text {
                context: context.to_owned(),
                text: text.to_owned(),
            });
            if self.socket == Socket::Down {
                self.connect();
            }
            return;
        }
        let first = self.open.insert(context.to_owned());
        let messages = self.adapter.text(context, text, first);
        self.send_all(messages);
        self.awaiting_audio.insert(context.to_owned());
        let sent = self.sent_chars.entry(context.to_owned()).or_default();
        sent.before_last = sent.total;
        sent.total += counted_chars(text);
    }

    /// No more text is coming for `context`.
    pub(crate) fn handle_finish(&mut self, context: &str, now: Instant) {
        self.heard_at = Some(now);
        let waits = |w: &Waiting| matches!(w, Waiting::Text { context: c, .. } if c == context);
        if self.socket == Socket::Connecting && self.waiting.iter().any(waits) {
            self.waiting.push(Waiting::Finish {
                context: context.to_owned(),
            });
            return;
        }
        if !self.open.contains(context) {
            // Nothing was sent on this socket (or it was lost): done now.
            self.events.push_back(WireEvent::Done {
                context: context.to_owned(),
            });
            return;
        }
        self.finishing.insert(context.to_owned(), now);
        if self.adapter.close_waits_for_audio() && !self.last_text_heard(context) {
            self.held
                .insert(context.to_owned(), now + self.read_timeout);
            return;
        }
        self.send_finish(context);
    }

    /// Nothing more of `context` is wanted (an interruption).
    pub(crate) fn handle_cancel(&mut self, context: &str, _now: Instant) {
        self.waiting.retain(|w| match w {
            Waiting::Text { context: c, .. } | Waiting::Finish { context: c } => c != context,
        });
        self.forget(context);
        if self.open.remove(context) {
            let messages = self.adapter.cancel(context);
            self.send_all(messages);
        }
        self.events
            .retain(|e| !matches!(e, WireEvent::Done { context: c } if c == context));
    }

    /// The socket asked for is open: what waited for it goes out.
    pub(crate) fn handle_connected(&mut self, now: Instant) {
        if self.socket != Socket::Connecting {
            return;
        }
        self.socket = Socket::Open;
        self.adapter.reset();
        self.open.clear();
        self.forget_all();
        for waiting in std::mem::take(&mut self.waiting) {
            match waiting {
                Waiting::Text { context, text } => self.handle_text(&context, &text, now),
                Waiting::Finish { context } => self.handle_finish(&context, now),
            }
        }
    }

    /// The socket asked for could not be opened: reported, and what waited
    /// for it is dropped (a finish that waited is done at once).
    pub(crate) fn handle_connect_failed(&mut self, error: ServiceError, _now: Instant) {
        if self.socket != Socket::Connecting {
            return;
        }
        self.socket = Socket::Down;
        self.events.push_back(WireEvent::Failed {
            context: None,
            error,
        });
        for waiting in std::mem::take(&mut self.waiting) {
            if let Waiting::Finish { context } = waiting {
                self.events.push_back(WireEvent::Done { context });
            }
        }
    }

    /// A frame with no message in it (a ping, a pong, binary data): the
    /// provider is there, but that says nothing of a finishing context's
    /// audio, so the wait for it goes on (see the module docs).
    pub(crate) fn handle_heard(&mut self, now: Instant) {
        if self.socket == Socket::Open && self.heard_at.is_some() && self.finishing.is_empty() {
            self.heard_at = Some(now);
        }
    }

    /// A text message from the provider.
    pub(crate) fn handle_message(&mut self, message: &str, now: Instant) {
        if self.socket != Socket::Open {
            return;
        }
        self.heard_at = Some(now);
        match self.adapter.parse(message) {
            Ok(events) => {
                for event in events {
                    match &event {
                        WireEvent::Audio { context, .. } => {
                            self.awaiting_audio.remove(context);
                            self.heard_audio(context, now);
                        }
                        WireEvent::Done { context } => {
                            self.open.remove(context);
                            self.forget(context);
                        }
                        _ => {}
                    }
                    self.events.push_back(event);
                }
            }
            Err(error) => self.events.push_back(WireEvent::Failed {
                context: None,
                error,
            }),
        }
    }

    /// The provider closed the socket (a close frame).
    pub(crate) fn handle_closed(&mut self, code: Option<u16>, reason: &str, _now: Instant) {
        tracing::debug!(provider = self.adapter.provider(), ?code, %reason, "socket closed");
        let reason = reason.to_owned();
        self.lost(ServiceError::Closed { code, reason });
    }

    /// The socket failed: a send or a read failed, or it ended.
    pub(crate) fn handle_socket_lost(&mut self, error: ServiceError, _now: Instant) {
        self.lost(error);
    }

    /// A timer is due: a held close whose deadline passed goes out (and
    /// its wait for the context's end starts), the others left as they
    /// were; a socket silent for too long since a close went out is lost
    /// (see "Holding the close").
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.socket != Socket::Open {
            return;
        }
        let mut due: Vec<String> = self
            .held
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(context, _)| context.clone())
            .collect();
        if !due.is_empty() {
            tracing::warn!(
                provider = self.adapter.provider(),
                contexts = due.len(),
                "no audio of its last text came for a finished context; closing it anyway"
            );
            due.sort_unstable();
            for context in due {
                self.release(&context, now);
            }
        }
        if self.silence_deadline().is_none_or(|due| now < due) {
            return;
        }
        self.lost(ServiceError::Timeout {
            waiting_for: "audio",
            after: self.read_timeout,
        });
        self.actions.push_back(SocketAction::Disconnect);
    }

    /// The session ends: say goodbye if the provider has a way, and close.
    pub(crate) fn handle_close(&mut self, _now: Instant) {
        if self.socket != Socket::Open {
            return;
        }
        if let Some(goodbye) = self.adapter.close() {
            self.actions.push_back(SocketAction::Send(goodbye));
        }
        self.actions.push_back(SocketAction::Close);
        self.socket = Socket::Down;
    }

    fn connect(&mut self) {
        self.socket = Socket::Connecting;
        self.actions.push_back(SocketAction::Connect);
    }

    /// Audio of `context` came: its held close goes once it is its last
    /// text's, else waits on, its deadline moved on.
    fn heard_audio(&mut self, context: &str, now: Instant) {
        if !self.held.contains_key(context) {
            return;
        }
        if self.last_text_heard(context) {
            self.release(context, now);
        } else {
            self.held
                .insert(context.to_owned(), now + self.read_timeout);
        }
    }

    /// Sends `context`'s held close; the wait for its end starts now.
    fn release(&mut self, context: &str, now: Instant) {
        if self.held.remove(context).is_some() {
            self.finishing.insert(context.to_owned(), now);
            self.send_finish(context);
        }
    }

    /// Forgets what waits on `context`.
    fn forget(&mut self, context: &str) {
        self.finishing.remove(context);
        self.held.remove(context);
        self.awaiting_audio.remove(context);
        self.sent_chars.remove(context);
    }

    /// Forgets what waits on every context.
    fn forget_all(&mut self) {
        self.finishing.clear();
        self.held.clear();
        self.awaiting_audio.clear();
        self.sent_chars.clear();
    }

    /// Sends what says no more text is coming for `context`.
    fn send_finish(&mut self, context: &str) {
        let messages = self.adapter.finish(context);
        self.send_all(messages);
    }

    fn send_all(&mut self, messages: Vec<String>) {
        self.actions
            .extend(messages.into_iter().map(SocketAction::Send));
    }

    /// The socket is gone: what was queued for it is dropped, and every
    /// open context fails and is done.
    fn lost(&mut self, error: ServiceError) {
        if self.socket != Socket::Open {
            return;
        }
        self.socket = Socket::Down;
        self.actions.retain(|a| !matches!(a, SocketAction::Send(_)));
        self.forget_all();
        if !self.open.is_empty() {
            self.events.push_back(WireEvent::Failed {
                context: None,
                error,
            });
        }
        for context in self.open.drain() {
            self.events.push_back(WireEvent::Done { context });
        }
    }
}

#[cfg(test)]
mod tests;
