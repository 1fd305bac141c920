//! The link: the task that owns a live-transcription socket, streams
//! audio into it, pushes the results, keeps it alive and reopens it.
//!
//! # Reconnection without losing the utterance in flight
//!
//! The link keeps the audio sent since the end of the last final result
//! (up to `max_replay`). If the socket drops, it reconnects with backoff
//! and sends that audio again first, so words the provider had heard but
//! not yet finalised are transcribed from the new socket; audio that came
//! meanwhile is kept and follows. Result times are mapped from each
//! socket's stream back to the session's audio, so the next final trims
//! the right amount.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::frame::{FrameBody, TranscriptionFrame};
use crate::pipeline::ProcessorContext;
use crate::services::retry::jitter;
use crate::services::task::report;
use crate::services::websocket::{WsStream, WsTarget, connect, send_within};
use crate::services::{Connection, ServiceError};

use super::streaming::{StreamingSpeech, SttEvent};

/// What the processor asks of the link.
pub(crate) enum LinkCommand {
    /// Audio to stream.
    Audio(Bytes),
    /// The user stopped speaking: ask for final results now.
    Finalize,
}

/// The task that owns the socket. See the module docs.
pub(crate) struct Link {
    speech: Box<dyn StreamingSpeech>,
    target: WsTarget,
    connection: Connection,
    keepalive: Duration,
    rate: u32,
    max_replay_bytes: usize,
    /// Audio not yet covered by a final result: (session byte offset, audio).
    unconfirmed: VecDeque<(u64, Bytes)>,
    /// Audio bytes received from the pipeline so far.
    received: u64,
    /// The session byte offset where the current socket's stream starts.
    stream_base: u64,
    socket: Option<WsStream>,
    last_sent: Instant,
    /// A finalize was asked for while the socket was down.
    finalize_due: bool,
    ctx: ProcessorContext,
}

impl Link {
    /// A link for 16-bit mono audio at `rate`, not yet connected.
    pub(crate) fn new(
        speech: Box<dyn StreamingSpeech>,
        connection: Connection,
        keepalive: Duration,
        max_replay: Duration,
        rate: u32,
        ctx: ProcessorContext,
    ) -> Self {
        Link {
            target: speech.target(rate),
            speech,
            connection,
            keepalive,
            rate,
            max_replay_bytes: (max_replay.as_secs_f64() * f64::from(rate) * 2.0) as usize,
            unconfirmed: VecDeque::new(),
            received: 0,
            stream_base: 0,
            socket: None,
            last_sent: Instant::now(),
            finalize_due: false,
            ctx,
        }
    }

    /// Runs until the processor closes the command channel, then finishes
    /// the stream.
    pub(crate) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<LinkCommand>) {
        let mut retry = 0u32;
        let mut reconnect_at = Some(Instant::now());
        loop {
            if self.socket.is_none() && reconnect_at.is_none() {
                reconnect_at = Some(Instant::now());
            }
            let keepalive_at = self.last_sent + self.keepalive;
            let connected = self.socket.is_some();
            tokio::select! {
                biased;
                () = sleep_until_some(reconnect_at), if !connected => {
                    match self.reconnect().await {
                        Ok(()) => {
                            retry = 0;
                            reconnect_at = None;
                        }
                        Err(error) if error.is_auth() => {
                            // Refused credentials will not heal: report (the
                            // session ends) and stop.
                            report(error.into_processor_error(self.speech.provider()), &self.ctx).await;
                            return;
                        }
                        Err(error) => {
                            retry += 1;
                            let delay = self.connection.retry.backoff(retry, jitter());
                            tracing::warn!(provider = self.speech.provider(), %error, ?delay, "transcription socket down; reconnecting");
                            if retry == 1 {
                                report(error.into_processor_error(self.speech.provider()), &self.ctx).await;
                            }
                            reconnect_at = Some(Instant::now() + delay);
                        }
                    }
                }
                command = commands.recv() => match command {
                    Some(LinkCommand::Audio(audio)) => self.audio(audio).await,
                    Some(LinkCommand::Finalize) => self.finalize().await,
                    None => break,
                },
                message = next_message(&mut self.socket), if connected => self.message(message).await,
                () = tokio::time::sleep_until(keepalive_at), if connected => {
                    let keepalive = self.speech.keepalive();
                    self.send_text(keepalive).await;
                }
            }
        }
        self.close().await;
    }

    /// Asks for final results now; sent after the replay if the socket is
    /// down.
    async fn finalize(&mut self) {
        let Some(message) = self.speech.finalize() else {
            return;
        };
        if self.socket.is_some() {
            self.send_text(message).await;
        } else {
            self.finalize_due = true;
        }
    }

    /// Opens a socket and sends the unconfirmed audio again.
    async fn reconnect(&mut self) -> Result<(), ServiceError> {
        let mut socket = connect(&self.target, &self.connection, self.speech.provider()).await?;
        self.stream_base = self
            .unconfirmed
            .front()
            .map_or(self.received, |(at, _)| *at);
        let replay: Vec<Bytes> = self
            .unconfirmed
            .iter()
            .map(|(_, audio)| audio.clone())
            .collect();
        if !replay.is_empty() {
            tracing::debug!(chunks = replay.len(), "sending unconfirmed audio again");
        }
        let timeout = self.connection.read_timeout;
        for audio in replay {
            send_within(&mut socket, Message::Binary(audio), timeout).await?;
        }
        if std::mem::take(&mut self.finalize_due)
            && let Some(message) = self.speech.finalize()
        {
            send_within(&mut socket, Message::text(message), timeout).await?;
        }
        self.socket = Some(socket);
        self.last_sent = Instant::now();
        Ok(())
    }

    async fn audio(&mut self, audio: Bytes) {
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
        if let Some(socket) = self.socket.as_mut() {
            let sent = send_within(socket, Message::Binary(audio), self.connection.read_timeout);
            if let Err(error) = sent.await {
                tracing::warn!(%error, "sending audio failed; reconnecting");
                self.socket = None;
            } else {
                self.last_sent = Instant::now();
            }
        }
    }

    async fn send_text(&mut self, text: String) {
        if let Some(socket) = self.socket.as_mut() {
            let sent = send_within(socket, Message::text(text), self.connection.read_timeout);
            if let Err(error) = sent.await {
                tracing::warn!(%error, "sending a control message failed; reconnecting");
                self.socket = None;
            } else {
                self.last_sent = Instant::now();
            }
        }
    }

    async fn message(&mut self, message: Option<Result<Message, ServiceError>>) {
        match message {
            Some(Ok(Message::Text(text))) => match self.speech.parse(&text) {
                Ok(Some(event)) => self.event(event).await,
                Ok(None) => {}
                Err(error) => {
                    report(
                        error.into_processor_error(self.speech.provider()),
                        &self.ctx,
                    )
                    .await
                }
            },
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = frame.map_or((None, String::new()), |f| {
                    (Some(u16::from(f.code)), f.reason.to_string())
                });
                tracing::warn!(provider = self.speech.provider(), ?code, %reason, "transcription socket closed");
                self.socket = None;
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => {
                tracing::warn!(provider = self.speech.provider(), %error, "transcription socket failed");
                self.socket = None;
            }
            None => self.socket = None,
        }
    }

    async fn event(&mut self, event: SttEvent) {
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
        let frame = TranscriptionFrame {
            text: text.to_owned(),
            user_id: None,
            language: None,
            at: self.ctx.now(),
        };
        let body = if is_final {
            FrameBody::Transcription(frame)
        } else {
            FrameBody::InterimTranscription(frame)
        };
        self.ctx.push_downstream(body).await;
    }

    /// The session ends: finish the stream and push its last results. A
    /// socket that drops while finishing is reopened once with the audio
    /// still unconfirmed.
    async fn close(&mut self) {
        for _ in 0..2 {
            if self.socket.is_none() {
                if self.unconfirmed.is_empty() {
                    return;
                }
                if let Err(error) = self.reconnect().await {
                    tracing::warn!(%error, "could not reconnect to finish the stream");
                    report(
                        error.into_processor_error(self.speech.provider()),
                        &self.ctx,
                    )
                    .await;
                    return;
                }
            }
            let close = self.speech.close_stream();
            self.send_text(close).await;
            if self.drain().await {
                return;
            }
        }
    }

    /// Reads the last results until the provider closes the socket. True
    /// when it is done: closed cleanly, or nothing is left unconfirmed, or
    /// it took too long.
    async fn drain(&mut self) -> bool {
        let deadline = Instant::now() + self.connection.read_timeout;
        loop {
            let Some(socket) = self.socket.as_mut() else {
                return self.unconfirmed.is_empty();
            };
            match tokio::time::timeout_at(deadline, socket.next()).await {
                Err(_) => {
                    tracing::warn!("the transcription stream did not close in time");
                    self.socket = None;
                    return true;
                }
                Ok(Some(Ok(Message::Close(_)))) => {
                    self.socket = None;
                    return true;
                }
                Ok(Some(Ok(message))) => self.message(Some(Ok(message))).await,
                Ok(Some(Err(_)) | None) => {
                    self.socket = None;
                    return self.unconfirmed.is_empty();
                }
            }
        }
    }
}

/// The session byte offset of `end` in a socket's stream that started at
/// byte `stream_base`, for 16-bit mono audio at `rate`. Saturating: the
/// time comes from the provider.
fn session_offset(stream_base: u64, end: Duration, rate: u32) -> u64 {
    let samples = (end.as_secs_f64() * f64::from(rate)).round() as u64;
    stream_base.saturating_add(samples.saturating_mul(2))
}

/// The next message of the socket, if there is one.
///
/// # Cancel safety
/// Cancel safe.
async fn next_message(socket: &mut Option<WsStream>) -> Option<Result<Message, ServiceError>> {
    match socket {
        Some(socket) => socket.next().await.map(|m| m.map_err(ServiceError::from)),
        None => std::future::pending().await,
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
