//! [`SttConnection`]: the state of a live-transcription connection (replay,
//! keep-alive, reconnection, the polite close), as a sans-IO state machine.
//!
//! It owns no socket and reads no clock: the driver (`connection_task.rs`)
//! feeds it what happened with `handle_*(…, now)` (audio from the
//! pipeline, a provider message, the socket opened, closed or failed, a
//! timer fired) and carries out what [`SttConnection::poll_action`] asks
//! (open a socket, send these bytes, push this transcript, report this
//! error, drop the socket), sleeping until [`SttConnection::poll_timeout`]
//! in between. Its tests (`connection/tests.rs`) script whole sessions
//! from Deepgram messages with explicit instants.
//!
//! # Reconnection without losing the utterance in flight
//!
//! The connection keeps the audio sent since the end of the last final
//! result (up to `max_replay`). If the socket drops, it reconnects with
//! backoff and sends that audio again first, so words the provider had
//! heard but not yet finalised are transcribed from the new socket; audio
//! that came meanwhile is kept and follows. Result times are mapped from
//! each socket's stream back to the session's audio, so the next final
//! trims the right amount. The first failure of a run of them is reported;
//! refused credentials are reported and stop the connection for good.
//!
//! # Keep-alive
//!
//! While the socket is open and nothing has been sent for `keepalive`, the
//! provider's keep-alive message goes out.
//!
//! # The end of the session
//!
//! The provider is asked to finish and close; its last results are pushed
//! until it closes, or `read_timeout` passes. A socket lost while
//! finishing with audio still unconfirmed is reopened once, with that
//! audio replayed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::services::retry::RetryPolicy;
use crate::services::websocket::WsTarget;
use crate::services::{Connection, ServiceError};

use super::speech::{StreamingSpeech, SttEvent};

/// A message for the provider's socket.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outgoing {
    /// 16-bit mono PCM, as a binary message.
    Audio(Bytes),
    /// A control message, as a text message.
    Control(String),
}

/// What the driver is asked to do.
#[derive(Debug)]
pub(crate) enum SttAction {
    /// Open a socket to [`SttConnection::target`]; answer with
    /// `handle_connected` or `handle_connect_failed`.
    Connect,
    /// Send this on the open socket; a failed send is `handle_socket_lost`.
    Send(Outgoing),
    /// Push a transcript downstream: final, or interim.
    Transcript { text: String, is_final: bool },
    /// Report this error upstream.
    Report(ServiceError),
    /// Report this error upstream as the end of the session: the
    /// connection stopped for good and the caller can no longer be heard.
    Fail(ServiceError),
    /// Drop the socket: the connection is done with it.
    Disconnect,
}

/// Where the socket stands.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Socket {
    /// None; open one at this instant.
    Waiting(Instant),
    /// `Connect` was asked; its outcome has not come.
    Connecting,
    /// Open; the last message went out at this instant.
    Open { last_sent: Instant },
    /// Done for good: closed at the end, or refused.
    Stopped,
}

/// The session is ending: the provider was asked to finish.
#[derive(Debug, Clone, Copy)]
struct Closing {
    /// Sockets opened (or found open) to finish the stream.
    attempts: u32,
    /// When the provider must have closed by.
    deadline: Option<Instant>,
}

/// The connection's state machine. See the module docs.
pub(crate) struct SttConnection {
    speech: Box<dyn StreamingSpeech>,
    keepalive: Duration,
    read_timeout: Duration,
    retry: RetryPolicy,
    rate: u32,
    max_replay_bytes: usize,
    /// Audio not yet covered by a final result: (session byte offset, audio).
    unconfirmed: VecDeque<(u64, Bytes)>,
    /// Audio bytes received from the pipeline so far.
    received: u64,
    /// The session byte offset where the current socket's stream starts.
    stream_base: u64,
    socket: Socket,
    closing: Option<Closing>,
    /// Connection attempts failed in a row. A socket that opens but is
    /// lost before the provider said anything counts as a failed attempt
    /// too: only a message proves a connection works.
    failures: u32,
    /// The open socket has brought a provider message.
    proven: bool,
    /// A socket has opened in this session: the request as it stands
    /// works, so a later refusal (a proxy's 404 mid-deploy) is retried.
    ever_opened: bool,
    /// When audio first went out on the open socket with no message from
    /// the provider since, and how many bytes have gone out since: a
    /// provider that answers nothing for `read_timeout` while it is sent
    /// at least [`UNANSWERED_AUDIO_SECS`] of audio has gone silent (a hung
    /// server, or a dead path TCP would take many minutes to notice), and
    /// the socket is replaced.
    unanswered: Option<(Instant, u64)>,
    /// A finalize was asked for while the socket was down.
    finalize_due: bool,
    /// Malformed provider messages so far: only the first
    /// [`MAX_REPORTED_MALFORMED`] become error frames, so a provider
    /// sending junk cannot flood the pipeline's (unbounded) upstream lane.
    malformed: u32,
    actions: VecDeque<SttAction>,
}

/// How many malformed provider messages a session reports as error frames;
/// the rest are counted, and logged once.
const MAX_REPORTED_MALFORMED: u32 = 3;

/// Audio a provider must have been sent, unanswered, before its silence
/// counts: a live stream answers every second or so (Deepgram sends
/// results, empty in silence, as the audio comes), but a blip of audio
/// alone may bring nothing.
const UNANSWERED_AUDIO_SECS: f64 = 2.0;

impl SttConnection {
    /// A connection for 16-bit mono audio at `rate`; its first action is
    /// `Connect`.
    pub(crate) fn new(
        speech: Box<dyn StreamingSpeech>,
        connection: Connection,
        keepalive: Duration,
        max_replay: Duration,
        rate: u32,
    ) -> Self {
        SttConnection {
            speech,
            keepalive,
            read_timeout: connection.read_timeout,
            retry: connection.retry,
            rate,
            max_replay_bytes: (max_replay.as_secs_f64() * f64::from(rate) * 2.0) as usize,
            unconfirmed: VecDeque::new(),
            received: 0,
            stream_base: 0,
            socket: Socket::Connecting,
            closing: None,
            failures: 0,
            proven: false,
            ever_opened: false,
            unanswered: None,
            finalize_due: false,
            malformed: 0,
            actions: VecDeque::from([SttAction::Connect]),
        }
    }

    /// The provider's name.
    pub(crate) fn provider(&self) -> &'static str {
        self.speech.provider()
    }

    /// Where the socket goes.
    pub(crate) fn target(&self) -> WsTarget {
        self.speech.target(self.rate)
    }

    /// The next thing to do, in order.
    pub(crate) fn poll_action(&mut self) -> Option<SttAction> {
        self.actions.pop_front()
    }

    /// When `handle_timeout` is next due, if a timer runs.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match (self.socket, self.closing) {
            (Socket::Waiting(at), _) => Some(at),
            (Socket::Open { .. }, Some(closing)) => closing.deadline,
            (Socket::Open { last_sent }, None) => {
                let keepalive = last_sent + self.keepalive;
                let silent = self.silent_deadline();
                Some(silent.map_or(keepalive, |silent| silent.min(keepalive)))
            }
            (Socket::Connecting | Socket::Stopped, _) => None,
        }
    }

    /// True once the connection is done and nothing is left to do.
    pub(crate) fn is_stopped(&self) -> bool {
        self.socket == Socket::Stopped && self.actions.is_empty()
    }

    /// Audio from the pipeline: streamed if the socket is open, and kept
    /// until a final result covers it.
    pub(crate) fn handle_audio(&mut self, audio: Bytes, now: Instant) {
        if self.socket == Socket::Stopped {
            return;
        }
        self.unconfirmed.push_back((self.received, audio.clone()));
        self.received += audio.len() as u64;
        let kept = self.received
            - self
                .unconfirmed
                .front()
                .map_or(self.received, |(at, _)| *at);
        if kept as usize > self.max_replay_bytes {
            // Never finalised for this long: drop the oldest rather than grow.
            self.unconfirmed.pop_front();
        }
        self.send(Outgoing::Audio(audio), now);
    }

    /// The user stopped speaking: ask for final results now, or once the
    /// socket is back.
    pub(crate) fn handle_finalize(&mut self, now: Instant) {
        let Some(message) = self.speech.finalize() else {
            return;
        };
        match self.socket {
            Socket::Open { .. } => self.send(Outgoing::Control(message), now),
            Socket::Waiting(_) | Socket::Connecting => self.finalize_due = true,
            Socket::Stopped => {}
        }
    }

    /// The socket asked for is open: the unconfirmed audio goes again
    /// first.
    pub(crate) fn handle_connected(&mut self, now: Instant) {
        if self.socket != Socket::Connecting {
            // Not wanted any more (the session ended meanwhile).
            self.actions.push_back(SttAction::Disconnect);
            return;
        }
        self.proven = false;
        self.ever_opened = true;
        self.unanswered = None;
        self.socket = Socket::Open { last_sent: now };
        self.stream_base = self
            .unconfirmed
            .front()
            .map_or(self.received, |(at, _)| *at);
        if !self.unconfirmed.is_empty() {
            tracing::debug!(
                chunks = self.unconfirmed.len(),
                "sending unconfirmed audio again"
            );
        }
        let replay: Vec<Bytes> = self.unconfirmed.iter().map(|(_, a)| a.clone()).collect();
        for audio in replay {
            self.send(Outgoing::Audio(audio), now);
        }
        if std::mem::take(&mut self.finalize_due)
            && let Some(message) = self.speech.finalize()
        {
            self.send(Outgoing::Control(message), now);
        }
        if self.closing.is_some() {
            self.ask_to_close(now);
        }
    }

    /// The socket asked for could not be opened; `jitter` (in `0..=1`)
    /// spreads the backoff.
    pub(crate) fn handle_connect_failed(&mut self, error: ServiceError, jitter: f64, now: Instant) {
        if self.socket != Socket::Connecting {
            return;
        }
        if self.closing.is_some() {
            tracing::warn!(%error, "could not reconnect to finish the stream");
            self.stop_with(error);
            return;
        }
        if error.is_auth() || (error.is_refusal() && !self.ever_opened) {
            // Refused credentials, or a first request refused as it stands
            // (a model or language the provider does not have, no credit):
            // asking again will not heal it. The session ends rather than
            // run deaf.
            self.actions.push_back(SttAction::Fail(error));
            self.socket = Socket::Stopped;
            return;
        }
        self.failures += 1;
        let delay = self.retry.backoff(self.failures, jitter);
        tracing::warn!(provider = self.provider(), %error, ?delay, "transcription socket down; reconnecting");
        if self.failures == 1 {
            self.actions.push_back(SttAction::Report(error));
        }
        self.socket = Socket::Waiting(now + delay);
    }

    /// A text message from the provider.
    pub(crate) fn handle_message(&mut self, text: &str, _now: Instant) {
        if !matches!(self.socket, Socket::Open { .. }) {
            return;
        }
        self.proven = true;
        self.failures = 0;
        self.unanswered = None;
        match self.speech.parse(text) {
            Ok(Some(event)) => self.event(event),
            Ok(None) => {}
            Err(error) => {
                self.malformed = self.malformed.saturating_add(1);
                if self.malformed <= MAX_REPORTED_MALFORMED {
                    self.actions.push_back(SttAction::Report(error));
                } else if self.malformed == MAX_REPORTED_MALFORMED + 1 {
                    tracing::warn!(
                        provider = self.provider(),
                        "the provider keeps sending malformed messages: no longer reported"
                    );
                }
            }
        }
    }

    /// The provider closed the socket (a close frame).
    pub(crate) fn handle_closed(&mut self, code: Option<u16>, reason: &str, now: Instant) {
        if !matches!(self.socket, Socket::Open { .. }) {
            return;
        }
        if self.closing.is_some() {
            // The stream is finished: its last results have come.
            self.socket = Socket::Stopped;
            return;
        }
        tracing::warn!(provider = self.provider(), ?code, %reason, "transcription socket closed");
        self.lost(now);
    }

    /// The socket failed: a send or a read failed, or it ended without a
    /// close frame.
    pub(crate) fn handle_socket_lost(&mut self, error: &ServiceError, now: Instant) {
        if !matches!(self.socket, Socket::Open { .. }) {
            return;
        }
        tracing::warn!(provider = self.provider(), %error, "transcription socket failed");
        self.lost(now);
    }

    /// The pipeline's audio has ended: finish the stream.
    pub(crate) fn handle_end(&mut self, now: Instant) {
        if self.closing.is_some() {
            return;
        }
        self.closing = Some(Closing {
            attempts: 1,
            deadline: None,
        });
        match self.socket {
            Socket::Open { .. } => self.ask_to_close(now),
            Socket::Waiting(_) | Socket::Connecting if self.unconfirmed.is_empty() => {
                self.socket = Socket::Stopped;
            }
            Socket::Waiting(_) => self.connect(),
            Socket::Connecting | Socket::Stopped => {}
        }
    }

    /// A timer is due: reconnect, keep alive, or give up waiting for the
    /// provider to close.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        match (self.socket, self.closing) {
            (Socket::Waiting(at), _) if now >= at => self.connect(),
            (
                Socket::Open { .. },
                Some(Closing {
                    deadline: Some(deadline),
                    ..
                }),
            ) if now >= deadline => {
                tracing::warn!("the transcription stream did not close in time");
                self.actions.push_back(SttAction::Disconnect);
                self.socket = Socket::Stopped;
            }
            (Socket::Open { .. }, None) if self.silent_deadline().is_some_and(|at| now >= at) => {
                tracing::warn!(
                    provider = self.provider(),
                    after = ?self.read_timeout,
                    "the transcription socket answers nothing while sent audio; replacing it"
                );
                self.actions
                    .push_back(SttAction::Report(ServiceError::Timeout {
                        waiting_for: "data",
                        after: self.read_timeout,
                    }));
                self.lost(now);
                self.actions.push_back(SttAction::Disconnect);
            }
            (Socket::Open { last_sent }, None) if now >= last_sent + self.keepalive => {
                let keepalive = self.speech.keepalive();
                self.send(Outgoing::Control(keepalive), now);
            }
            _ => {}
        }
    }

    /// When the open socket's silence gives it up, if it has been sent
    /// enough audio unanswered.
    fn silent_deadline(&self) -> Option<Instant> {
        let (since, bytes) = self.unanswered?;
        let enough = UNANSWERED_AUDIO_SECS * f64::from(self.rate) * 2.0;
        (bytes as f64 >= enough).then_some(since + self.read_timeout)
    }

    fn connect(&mut self) {
        self.socket = Socket::Connecting;
        self.actions.push_back(SttAction::Connect);
    }

    fn send(&mut self, message: Outgoing, now: Instant) {
        if let Socket::Open { last_sent } = &mut self.socket {
            *last_sent = now;
            if let Outgoing::Audio(audio) = &message {
                let (_, bytes) = self.unanswered.get_or_insert((now, 0));
                *bytes += audio.len() as u64;
            }
            self.actions.push_back(SttAction::Send(message));
        }
    }

    fn stop_with(&mut self, error: ServiceError) {
        self.actions.push_back(SttAction::Report(error));
        self.socket = Socket::Stopped;
    }

    fn ask_to_close(&mut self, now: Instant) {
        let close = self.speech.close_stream();
        self.send(Outgoing::Control(close), now);
        if let Some(closing) = &mut self.closing {
            closing.deadline = Some(now + self.read_timeout);
        }
    }

    /// The open socket is gone: what was queued for it is dropped (the
    /// audio is still kept for the replay), and a new one is opened: at
    /// once if the socket had worked, else after a backoff, so a provider
    /// that accepts and then drops every socket is not sent the whole
    /// replay in a tight loop.
    fn lost(&mut self, now: Instant) {
        self.actions
            .retain(|a| !matches!(a, SttAction::Send(_) | SttAction::Disconnect));
        match &mut self.closing {
            None if self.proven => self.socket = Socket::Waiting(now),
            None => {
                self.failures += 1;
                let delay = self.retry.backoff(self.failures, 0.5);
                tracing::warn!(
                    provider = self.provider(),
                    ?delay,
                    "transcription socket lost before any result; reconnecting"
                );
                self.socket = Socket::Waiting(now + delay);
            }
            Some(_) if self.unconfirmed.is_empty() => self.socket = Socket::Stopped,
            Some(closing) if closing.attempts < 2 => {
                closing.attempts += 1;
                closing.deadline = None;
                self.connect();
            }
            Some(_) => self.socket = Socket::Stopped,
        }
    }

    fn event(&mut self, event: SttEvent) {
        let SttEvent::Transcript {
            text,
            is_final,
            speech_final,
            end,
        } = event;
        if is_final {
            // Everything up to the end of this result is transcribed for good.
            let end = session_offset(self.stream_base, end, self.rate);
            while self
                .unconfirmed
                .front()
                .is_some_and(|(at, audio)| at + audio.len() as u64 <= end)
            {
                self.unconfirmed.pop_front();
            }
        }
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        tracing::trace!(is_final, speech_final, text, "transcript");
        self.actions.push_back(SttAction::Transcript {
            text: text.to_owned(),
            is_final,
        });
    }
}

/// The session byte offset of `end` in a socket's stream that started at
/// byte `stream_base`, for 16-bit mono audio at `rate`. Saturating: the
/// time comes from the provider.
fn session_offset(stream_base: u64, end: Duration, rate: u32) -> u64 {
    let samples = (end.as_secs_f64() * f64::from(rate)).round() as u64;
    stream_base.saturating_add(samples.saturating_mul(2))
}

#[cfg(test)]
mod tests;
