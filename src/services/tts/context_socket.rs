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
//! is held until audio has come after its last text was sent: once audio
//! streams, the server puts `isFinal` after the last of it. If no audio
//! comes within `read_timeout` (a text with nothing to say), the close goes
//! out then, and the wait starts again for its `isFinal`.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::services::ServiceError;

use super::wire::WireEvent;
use super::ws_speech::WsSpeech;

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

/// The socket's state machine. See the module docs.
pub(crate) struct ContextSocket<A> {
    adapter: A,
    read_timeout: Duration,
    socket: Socket,
    /// Asked for before the socket opened, in order.
    waiting: Vec<Waiting>,
    /// Contexts opened on the current socket and not yet done.
    open: HashSet<String>,
    /// Open contexts with all their text sent, waiting for their last audio.
    finishing: HashSet<String>,
    /// Open contexts with no audio since their last text was sent.
    awaiting_audio: HashSet<String>,
    /// Finishing contexts whose close is held (see "Holding the close").
    held: HashSet<String>,
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
            finishing: HashSet::new(),
            awaiting_audio: HashSet::new(),
            held: HashSet::new(),
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

    /// When `handle_timeout` is next due, if a timer runs.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.socket != Socket::Open || self.finishing.is_empty() {
            return None;
        }
        self.heard_at.map(|at| at + self.read_timeout)
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
        self.finishing.insert(context.to_owned());
        if self.adapter.close_waits_for_audio() && self.awaiting_audio.contains(context) {
            self.held.insert(context.to_owned());
            return;
        }
        self.send_finish(context);
    }

    /// Nothing more of `context` is wanted (an interruption).
    pub(crate) fn handle_cancel(&mut self, context: &str, _now: Instant) {
        self.waiting.retain(|w| match w {
            Waiting::Text { context: c, .. } | Waiting::Finish { context: c } => c != context,
        });
        self.finishing.remove(context);
        self.held.remove(context);
        self.awaiting_audio.remove(context);
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
        self.finishing.clear();
        self.awaiting_audio.clear();
        self.held.clear();
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
                            if self.held.remove(context) {
                                self.send_finish(context);
                            }
                        }
                        WireEvent::Done { context } => {
                            self.open.remove(context);
                            self.finishing.remove(context);
                            self.awaiting_audio.remove(context);
                            self.held.remove(context);
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

    /// A timer is due: a context waiting for its last audio heard nothing
    /// for too long. A held close goes out first, and the wait starts again
    /// (see "Holding the close").
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_none_or(|due| now < due) {
            return;
        }
        if !self.held.is_empty() {
            tracing::warn!(
                provider = self.adapter.provider(),
                contexts = self.held.len(),
                "no audio came for a finished context; closing it anyway"
            );
            let mut held: Vec<String> = self.held.drain().collect();
            held.sort_unstable();
            for context in held {
                self.send_finish(&context);
            }
            self.heard_at = Some(now);
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
        self.finishing.clear();
        self.awaiting_audio.clear();
        self.held.clear();
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
