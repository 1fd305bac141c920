//! [`SttConnection`]: the state of a live-transcription connection (replay,
//! keep-alive, reconnection, the polite close), as a sans-IO state machine.
//!
//! It owns no socket and reads no clock: the driver (`connection_task.rs`)
//! feeds it what happened with `handle_*(…, now)` (audio from the
//! pipeline, a provider message, the socket opened, closed or failed, a
//! timer fired) and carries out what [`SttConnection::poll_action`] asks
//! (open a socket, send these bytes, push this transcript, report this
//! error, drop the socket), sleeping until [`SttConnection::poll_timeout`]
//! in between. The tests below script whole sessions from Deepgram
//! messages with explicit instants.
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
    /// Connection attempts failed in a row.
    failures: u32,
    /// A finalize was asked for while the socket was down.
    finalize_due: bool,
    actions: VecDeque<SttAction>,
}

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
            finalize_due: false,
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
            (Socket::Open { last_sent }, None) => Some(last_sent + self.keepalive),
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
        self.failures = 0;
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
        if error.is_auth() {
            // Refused credentials will not heal: report (the session
            // ends) and stop.
            self.stop_with(error);
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
        match self.speech.parse(text) {
            Ok(Some(event)) => self.event(event),
            Ok(None) => {}
            Err(error) => self.actions.push_back(SttAction::Report(error)),
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
            (Socket::Open { last_sent }, None) if now >= last_sent + self.keepalive => {
                let keepalive = self.speech.keepalive();
                self.send(Outgoing::Control(keepalive), now);
            }
            _ => {}
        }
    }

    fn connect(&mut self) {
        self.socket = Socket::Connecting;
        self.actions.push_back(SttAction::Connect);
    }

    fn send(&mut self, message: Outgoing, now: Instant) {
        if let Socket::Open { last_sent } = &mut self.socket {
            *last_sent = now;
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
    /// audio is still kept for the replay), and a new one is opened.
    fn lost(&mut self, now: Instant) {
        self.actions
            .retain(|a| !matches!(a, SttAction::Send(_) | SttAction::Disconnect));
        match &mut self.closing {
            None => self.socket = Socket::Waiting(now),
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
mod tests {
    use crate::services::stt::deepgram::DeepgramListen;

    use super::*;

    const RATE: u32 = 16_000;

    /// Deepgram's own messages, as its socket sends them.
    fn result(text: &str, start: f64, duration: f64, is_final: bool) -> String {
        format!(
            r#"{{"type":"Results","channel_index":[0,1],"duration":{duration},"start":{start},"is_final":{is_final},"speech_final":{is_final},"channel":{{"alternatives":[{{"transcript":"{text}","confidence":0.98,"words":[]}}]}}}}"#
        )
    }
    const METADATA: &str = r#"{"type":"Metadata","transaction_key":"deprecated","request_id":"r","sha256":"s","created":"2024-08-29T22:37:55.202Z","duration":0.0,"channels":0}"#;
    const KEEPALIVE: &str = r#"{"type":"KeepAlive"}"#;
    const FINALIZE: &str = r#"{"type":"Finalize"}"#;
    const CLOSE_STREAM: &str = r#"{"type":"CloseStream"}"#;

    fn connection() -> SttConnection {
        let options = Connection {
            read_timeout: Duration::from_secs(5),
            retry: RetryPolicy {
                initial: Duration::from_millis(250),
                max: Duration::from_secs(4),
                ..RetryPolicy::default()
            },
            ..Connection::default()
        };
        SttConnection::new(
            Box::new(DeepgramListen::fixture()),
            options,
            Duration::from_secs(4),
            Duration::from_secs(1),
            RATE,
        )
    }

    /// `ms` milliseconds of audio, every byte `fill`.
    fn audio(ms: u64, fill: u8) -> Bytes {
        Bytes::from(vec![fill; (ms * u64::from(RATE) / 1000 * 2) as usize])
    }

    fn actions(c: &mut SttConnection) -> Vec<SttAction> {
        std::iter::from_fn(|| c.poll_action()).collect()
    }

    /// What went out on the socket, audio as (length, fill byte).
    #[derive(Debug, PartialEq)]
    enum Sent {
        Audio(usize, u8),
        Control(&'static str),
    }

    fn sent(actions: &[SttAction]) -> Vec<Sent> {
        actions
            .iter()
            .filter_map(|a| match a {
                SttAction::Send(Outgoing::Audio(a)) => Some(Sent::Audio(a.len(), a[0])),
                SttAction::Send(Outgoing::Control(c)) => Some(Sent::Control(
                    [KEEPALIVE, FINALIZE, CLOSE_STREAM]
                        .into_iter()
                        .find(|known| known == c)
                        .unwrap_or("?"),
                )),
                _ => None,
            })
            .collect()
    }

    fn transcripts(actions: &[SttAction]) -> Vec<(bool, &str)> {
        actions
            .iter()
            .filter_map(|a| match a {
                SttAction::Transcript { text, is_final } => Some((*is_final, text.as_str())),
                _ => None,
            })
            .collect()
    }

    /// A connection whose first socket is open at `t0`.
    fn open(t0: Instant) -> SttConnection {
        let mut c = connection();
        assert!(matches!(actions(&mut c)[..], [SttAction::Connect]));
        c.handle_connected(t0);
        assert!(actions(&mut c).is_empty());
        c
    }

    #[test]
    fn audio_streams_and_results_become_interim_then_final_transcripts() {
        let t0 = Instant::now();
        let mut c = open(t0);
        c.handle_audio(audio(100, 1), t0);
        c.handle_message(&result("Hel", 0.0, 0.1, false), t0);
        c.handle_message(METADATA, t0);
        c.handle_message(&result("  ", 0.0, 0.1, false), t0);
        c.handle_finalize(t0);
        c.handle_message(&result("Hello.", 0.0, 0.1, true), t0);
        let done = actions(&mut c);
        assert_eq!(sent(&done), [Sent::Audio(3200, 1), Sent::Control(FINALIZE)]);
        assert_eq!(transcripts(&done), [(false, "Hel"), (true, "Hello.")]);
        assert!(c.unconfirmed.is_empty(), "the final covered the audio");
    }

    #[test]
    fn a_reconnect_replays_only_the_audio_no_final_covered() {
        let t0 = Instant::now();
        let mut c = open(t0);
        for fill in 1..=3 {
            c.handle_audio(audio(100, fill), t0);
        }
        // The first 0.1 s is final; the rest is heard but not finalised.
        c.handle_message(&result("one", 0.0, 0.1, true), t0);
        actions(&mut c);
        c.handle_socket_lost(&ServiceError::Connect("reset".into()), t0);
        // Audio and a finalize while the socket is down wait for the next.
        c.handle_audio(audio(100, 4), t0);
        c.handle_finalize(t0);
        assert!(sent(&actions(&mut c)).is_empty());
        assert_eq!(c.poll_timeout(), Some(t0), "reconnects at once");
        c.handle_timeout(t0);
        assert!(matches!(actions(&mut c)[..], [SttAction::Connect]));
        c.handle_connected(t0);
        assert_eq!(
            sent(&actions(&mut c)),
            [
                Sent::Audio(3200, 2),
                Sent::Audio(3200, 3),
                Sent::Audio(3200, 4),
                Sent::Control(FINALIZE)
            ]
        );
        // The new socket's times count from the replay's start: 0.2 s in
        // it is the end of the third chunk of the session.
        c.handle_message(&result("two three", 0.0, 0.2, true), t0);
        assert_eq!(transcripts(&actions(&mut c)), [(true, "two three")]);
        assert_eq!(c.unconfirmed.len(), 1);
        assert_eq!(c.unconfirmed[0].1[0], 4);
    }

    #[test]
    fn queued_sends_for_a_lost_socket_are_dropped_not_replayed_twice() {
        let t0 = Instant::now();
        let mut c = open(t0);
        c.handle_audio(audio(100, 1), t0);
        c.handle_audio(audio(100, 2), t0);
        // The driver's first send failed: the second is not tried on it.
        assert!(matches!(c.poll_action(), Some(SttAction::Send(_))));
        c.handle_socket_lost(&ServiceError::Connect("broken pipe".into()), t0);
        assert!(actions(&mut c).is_empty());
        c.handle_timeout(t0);
        actions(&mut c);
        c.handle_connected(t0);
        assert_eq!(
            sent(&actions(&mut c)),
            [Sent::Audio(3200, 1), Sent::Audio(3200, 2)]
        );
    }

    #[test]
    fn unconfirmed_audio_is_kept_up_to_max_replay() {
        let t0 = Instant::now();
        let mut c = open(t0);
        for fill in 1..=12 {
            c.handle_audio(audio(100, fill), t0);
        }
        // 1 s of replay at most: the oldest chunks went.
        let kept: u64 = c.unconfirmed.iter().map(|(_, a)| a.len() as u64).sum();
        assert!(kept <= 32_000, "{kept}");
        assert_eq!(c.unconfirmed.front().map(|(_, a)| a[0]), Some(3));
    }

    #[test]
    fn a_quiet_socket_is_kept_alive() {
        let t0 = Instant::now();
        let mut c = open(t0);
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(4)));
        // Audio pushes the keep-alive back.
        let t1 = t0 + Duration::from_secs(3);
        c.handle_audio(audio(20, 1), t1);
        actions(&mut c);
        c.handle_timeout(t0 + Duration::from_secs(4));
        assert!(actions(&mut c).is_empty(), "too early");
        let due = t1 + Duration::from_secs(4);
        assert_eq!(c.poll_timeout(), Some(due));
        c.handle_timeout(due);
        assert_eq!(sent(&actions(&mut c)), [Sent::Control(KEEPALIVE)]);
        assert_eq!(c.poll_timeout(), Some(due + Duration::from_secs(4)));
    }

    #[test]
    fn failed_connections_back_off_and_only_the_first_is_reported() {
        let t0 = Instant::now();
        let mut c = connection();
        actions(&mut c);
        let refused = || ServiceError::Status {
            status: 503,
            message: "busy".into(),
            retry_after: None,
        };
        let mut now = t0;
        let mut waits = Vec::new();
        for attempt in 0..4 {
            c.handle_connect_failed(refused(), 1.0, now);
            let done = actions(&mut c);
            let reported = done.iter().any(|a| matches!(a, SttAction::Report(_)));
            assert_eq!(reported, attempt == 0, "attempt {attempt}");
            let at = c.poll_timeout().unwrap();
            waits.push(at - now);
            c.handle_timeout(at - Duration::from_millis(1));
            assert!(actions(&mut c).is_empty(), "not before the backoff");
            c.handle_timeout(at);
            assert!(matches!(actions(&mut c)[..], [SttAction::Connect]));
            now = at;
        }
        assert_eq!(
            waits,
            [250, 500, 1000, 2000].map(Duration::from_millis),
            "doubling, with full jitter"
        );
        c.handle_connected(now);
        c.handle_socket_lost(&ServiceError::Connect("reset".into()), now);
        c.handle_timeout(now);
        actions(&mut c);
        c.handle_connect_failed(refused(), 1.0, now);
        assert_eq!(c.poll_timeout(), Some(now + Duration::from_millis(250)));
        assert!(
            actions(&mut c)
                .iter()
                .any(|a| matches!(a, SttAction::Report(_))),
            "a new run of failures is reported again"
        );
    }

    #[test]
    fn refused_credentials_are_reported_and_stop_the_connection() {
        let t0 = Instant::now();
        let mut c = connection();
        actions(&mut c);
        c.handle_connect_failed(
            ServiceError::Status {
                status: 401,
                message: "bad key".into(),
                retry_after: None,
            },
            0.5,
            t0,
        );
        assert!(matches!(actions(&mut c)[..], [SttAction::Report(_)]));
        assert!(c.is_stopped());
        assert_eq!(c.poll_timeout(), None);
        c.handle_audio(audio(20, 1), t0);
        assert!(actions(&mut c).is_empty());
    }

    #[test]
    fn a_malformed_message_is_reported_and_the_stream_goes_on() {
        let t0 = Instant::now();
        let mut c = open(t0);
        c.handle_message("{", t0);
        c.handle_message(r#"{"type":"Error","description":"bad audio"}"#, t0);
        c.handle_message(&result("still here", 0.0, 0.1, false), t0);
        let done = actions(&mut c);
        assert!(matches!(
            &done[..],
            [SttAction::Report(ServiceError::Protocol(_)), SttAction::Report(ServiceError::Remote(m)), SttAction::Transcript { .. }]
            if m == "bad audio"
        ));
    }

    #[test]
    fn the_end_closes_the_stream_and_pushes_its_last_results() {
        let t0 = Instant::now();
        let mut c = open(t0);
        c.handle_audio(audio(100, 1), t0);
        actions(&mut c);
        let t1 = t0 + Duration::from_secs(1);
        c.handle_end(t1);
        assert_eq!(sent(&actions(&mut c)), [Sent::Control(CLOSE_STREAM)]);
        assert_eq!(
            c.poll_timeout(),
            Some(t1 + Duration::from_secs(5)),
            "no keep-alive"
        );
        c.handle_message(&result("Last words.", 0.0, 0.1, true), t1);
        assert_eq!(transcripts(&actions(&mut c)), [(true, "Last words.")]);
        c.handle_closed(Some(1000), "", t1);
        assert!(c.is_stopped());
    }

    #[test]
    fn a_socket_lost_while_finishing_is_reopened_once_with_the_replay() {
        let t0 = Instant::now();
        let mut c = open(t0);
        c.handle_audio(audio(100, 1), t0);
        c.handle_end(t0);
        actions(&mut c);
        c.handle_socket_lost(&ServiceError::Connect("reset".into()), t0);
        assert!(matches!(actions(&mut c)[..], [SttAction::Connect]));
        c.handle_connected(t0);
        assert_eq!(
            sent(&actions(&mut c)),
            [Sent::Audio(3200, 1), Sent::Control(CLOSE_STREAM)]
        );
        c.handle_socket_lost(&ServiceError::Connect("reset".into()), t0);
        assert!(actions(&mut c).is_empty());
        assert!(c.is_stopped(), "only once");
    }

    #[test]
    fn the_end_with_the_socket_down_reconnects_at_once_only_for_unconfirmed_audio() {
        let t0 = Instant::now();
        let mut c = open(t0);
        c.handle_socket_lost(&ServiceError::Connect("reset".into()), t0);
        c.handle_end(t0);
        assert!(c.is_stopped(), "nothing to finish");

        let mut c = open(t0);
        c.handle_audio(audio(100, 1), t0);
        actions(&mut c);
        c.handle_socket_lost(&ServiceError::Connect("reset".into()), t0);
        c.handle_timeout(t0);
        c.handle_connect_failed(ServiceError::Connect("refused".into()), 0.0, t0);
        actions(&mut c);
        // In the backoff: the end does not wait for it.
        c.handle_end(t0);
        assert!(matches!(actions(&mut c)[..], [SttAction::Connect]));
        c.handle_connect_failed(ServiceError::Connect("refused".into()), 0.0, t0);
        assert!(matches!(actions(&mut c)[..], [SttAction::Report(_)]));
        assert!(c.is_stopped());
    }

    #[test]
    fn a_provider_that_never_closes_is_given_up_on() {
        let t0 = Instant::now();
        let mut c = open(t0);
        c.handle_end(t0);
        actions(&mut c);
        let deadline = t0 + Duration::from_secs(5);
        c.handle_timeout(deadline - Duration::from_millis(1));
        assert!(!c.is_stopped());
        c.handle_timeout(deadline);
        assert!(matches!(actions(&mut c)[..], [SttAction::Disconnect]));
        assert!(c.is_stopped());
    }

    #[test]
    fn result_times_map_to_session_bytes_without_overflow() {
        assert_eq!(
            session_offset(3200, Duration::from_millis(500), 16_000),
            3200 + 16_000
        );
        assert_eq!(session_offset(3200, Duration::MAX, 16_000), u64::MAX);
        assert_eq!(
            session_offset(u64::MAX - 1, Duration::from_secs(1), 8_000),
            u64::MAX
        );
    }
}
