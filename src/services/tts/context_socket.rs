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
//! runs); while one waits for its last audio, `read_timeout` of silence
//! from the socket counts as losing it.

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
        let messages = self.adapter.finish(context);
        self.finishing.insert(context.to_owned());
        self.send_all(messages);
    }

    /// Nothing more of `context` is wanted (an interruption).
    pub(crate) fn handle_cancel(&mut self, context: &str, _now: Instant) {
        self.waiting.retain(|w| match w {
            Waiting::Text { context: c, .. } | Waiting::Finish { context: c } => c != context,
        });
        self.finishing.remove(context);
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
    /// provider is there, so a running read timeout starts again.
    pub(crate) fn handle_heard(&mut self, now: Instant) {
        if self.socket == Socket::Open && self.heard_at.is_some() {
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
                    if let WireEvent::Done { context } = &event {
                        self.open.remove(context);
                        self.finishing.remove(context);
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
    /// for too long.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|due| now >= due) {
            self.lost(ServiceError::Timeout {
                waiting_for: "audio",
                after: self.read_timeout,
            });
            self.actions.push_back(SocketAction::Disconnect);
        }
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
mod tests {
    use serde_json::Value;

    use super::super::cartesia::CartesiaSpeech;
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    /// Cartesia's own replies, as its socket sends them.
    fn chunk(context: &str) -> String {
        format!(
            r#"{{"type":"chunk","data":"AAABAA==","done":false,"status_code":206,"step_time":12,"context_id":"{context}"}}"#
        )
    }
    fn done(context: &str) -> String {
        format!(r#"{{"type":"done","done":true,"status_code":206,"context_id":"{context}"}}"#)
    }

    fn socket() -> ContextSocket<CartesiaSpeech> {
        ContextSocket::new(CartesiaSpeech::fixture(), TIMEOUT)
    }

    fn actions(s: &mut ContextSocket<CartesiaSpeech>) -> Vec<SocketAction> {
        std::iter::from_fn(|| s.poll_action()).collect()
    }

    fn events(s: &mut ContextSocket<CartesiaSpeech>) -> Vec<WireEvent> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    /// (context, transcript, continue) of each generation request sent.
    fn sent(actions: &[SocketAction]) -> Vec<(String, String, bool)> {
        actions
            .iter()
            .filter_map(|a| match a {
                SocketAction::Send(text) => {
                    let v: Value = serde_json::from_str(text).ok()?;
                    Some((
                        v["context_id"].as_str()?.to_owned(),
                        v["transcript"].as_str().unwrap_or("<cancel>").to_owned(),
                        v["continue"].as_bool().unwrap_or(false),
                    ))
                }
                _ => None,
            })
            .collect()
    }

    fn open(t0: Instant) -> ContextSocket<CartesiaSpeech> {
        let mut s = socket();
        s.handle_warm_up(t0);
        assert_eq!(actions(&mut s), [SocketAction::Connect]);
        s.handle_connected(t0);
        s
    }

    #[test]
    fn text_before_the_socket_opens_waits_for_it_in_order() {
        let t0 = Instant::now();
        let mut s = socket();
        s.handle_text("c1", "Hi.", t0);
        s.handle_text("c1", "Bye.", t0);
        s.handle_finish("c1", t0);
        assert_eq!(actions(&mut s), [SocketAction::Connect], "one socket");
        s.handle_connected(t0);
        assert_eq!(
            sent(&actions(&mut s)),
            [
                ("c1".into(), "Hi. ".into(), true),
                ("c1".into(), "Bye. ".into(), true),
                ("c1".into(), String::new(), false)
            ]
        );
        s.handle_message(&chunk("c1"), t0);
        s.handle_message(&done("c1"), t0);
        assert!(matches!(
            &events(&mut s)[..],
            [WireEvent::Audio { pcm, .. }, WireEvent::Done { context }] if pcm.len() == 4 && context == "c1"
        ));
        assert_eq!(s.poll_timeout(), None, "nothing waits");
    }

    #[test]
    fn a_refused_socket_is_reported_and_a_finish_that_waited_is_done() {
        let t0 = Instant::now();
        let mut s = socket();
        s.handle_text("c1", "Hi.", t0);
        s.handle_finish("c1", t0);
        actions(&mut s);
        s.handle_connect_failed(ServiceError::Connect("refused".into()), t0);
        assert!(matches!(
            &events(&mut s)[..],
            [WireEvent::Failed { context: None, .. }, WireEvent::Done { context }] if context == "c1"
        ));
        // The next text tries a new socket.
        s.handle_text("c2", "Again.", t0);
        assert_eq!(actions(&mut s), [SocketAction::Connect]);
    }

    #[test]
    fn a_lost_socket_fails_and_ends_every_open_context() {
        let t0 = Instant::now();
        let mut s = open(t0);
        s.handle_text("c1", "Hi.", t0);
        s.handle_text("c2", "Hello.", t0);
        // The driver's first send fails: the rest is not tried on it.
        assert!(matches!(s.poll_action(), Some(SocketAction::Send(_))));
        s.handle_socket_lost(ServiceError::Connect("broken pipe".into()), t0);
        assert!(actions(&mut s).is_empty());
        let got = events(&mut s);
        assert!(matches!(got[0], WireEvent::Failed { context: None, .. }));
        let mut ended: Vec<_> = got[1..]
            .iter()
            .filter_map(|e| match e {
                WireEvent::Done { context } => Some(context.as_str()),
                _ => None,
            })
            .collect();
        ended.sort_unstable();
        assert_eq!(ended, ["c1", "c2"]);
        // A finish for a context the socket lost is done at once.
        s.handle_finish("c1", t0);
        assert!(matches!(&events(&mut s)[..], [WireEvent::Done { .. }]));
    }

    #[test]
    fn silence_while_waiting_for_the_last_audio_loses_the_socket() {
        let t0 = Instant::now();
        let mut s = open(t0);
        s.handle_text("c1", "Hi.", t0);
        assert_eq!(s.poll_timeout(), None, "a context taking text may be quiet");
        let t1 = t0 + Duration::from_secs(60);
        s.handle_finish("c1", t1);
        actions(&mut s);
        assert_eq!(s.poll_timeout(), Some(t1 + TIMEOUT));
        // Audio restarts the wait.
        let t2 = t1 + Duration::from_secs(3);
        s.handle_message(&chunk("c1"), t2);
        events(&mut s);
        s.handle_timeout(t1 + TIMEOUT);
        assert!(events(&mut s).is_empty(), "heard from 3 s ago");
        s.handle_timeout(t2 + TIMEOUT);
        assert_eq!(actions(&mut s), [SocketAction::Disconnect]);
        assert!(matches!(
            &events(&mut s)[..],
            [
                WireEvent::Failed {
                    error: ServiceError::Timeout { .. },
                    ..
                },
                WireEvent::Done { .. }
            ]
        ));
    }

    #[test]
    fn a_ping_while_waiting_for_the_last_audio_restarts_the_wait() {
        let t0 = Instant::now();
        let mut s = open(t0);
        s.handle_text("c1", "Hi.", t0);
        s.handle_finish("c1", t0);
        actions(&mut s);
        let t1 = t0 + Duration::from_secs(3);
        s.handle_heard(t1);
        s.handle_timeout(t0 + TIMEOUT);
        assert!(events(&mut s).is_empty(), "heard from 3 s ago");
        assert_eq!(s.poll_timeout(), Some(t1 + TIMEOUT));
    }

    #[test]
    fn a_cancel_drops_the_context_and_its_pending_done() {
        let t0 = Instant::now();
        let mut s = open(t0);
        s.handle_text("c1", "Hi.", t0);
        s.handle_finish("c1", t0);
        s.handle_message(&done("c1"), t0);
        actions(&mut s);
        s.handle_text("c2", "Long answer.", t0);
        actions(&mut s);
        s.handle_cancel("c1", t0);
        s.handle_cancel("c2", t0);
        assert_eq!(
            sent(&actions(&mut s)),
            [("c2".into(), "<cancel>".into(), false)],
            "only the open context is cancelled at the provider"
        );
        assert!(events(&mut s).is_empty(), "c1's done is no longer wanted");
    }

    #[test]
    fn the_provider_closing_fails_open_contexts_and_the_next_text_reconnects() {
        let t0 = Instant::now();
        let mut s = open(t0);
        s.handle_closed(Some(1011), "internal error", t0);
        assert!(events(&mut s).is_empty(), "nothing was open");
        s.handle_text("c1", "Hi.", t0);
        assert_eq!(actions(&mut s), [SocketAction::Connect]);
        s.handle_connected(t0);
        s.handle_message("not json", t0);
        assert!(matches!(
            &events(&mut s)[..],
            [WireEvent::Failed {
                error: ServiceError::Protocol(_),
                ..
            }]
        ));
        s.handle_close(t0);
        let last = actions(&mut s);
        assert_eq!(last.last(), Some(&SocketAction::Close));
    }
}
