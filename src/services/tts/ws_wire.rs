//! [`WsWire`]: TTS over one WebSocket per session, a context per response
//! (ElevenLabs multi-context, Cartesia contexts). The provider adapter
//! ([`WsSpeech`]) encodes the messages and parses the replies.
//!
//! The socket opens when the session starts and is reused by every
//! response. If it closes, every open context fails (and is reported done,
//! so the response ends cleanly) and the next text opens a new socket.

use std::collections::{HashSet, VecDeque};

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::services::websocket::{WsStream, WsTarget, connect, send_within};
use crate::services::{Connection, ServiceError};

use super::wire::{TtsWire, WireEvent};

/// How a provider's streaming TTS socket is spoken. Pure: messages in and
/// out as text.
pub(crate) trait WsSpeech: Send + 'static {
    /// The provider's name.
    fn provider(&self) -> &'static str;

    /// The rate of the PCM it sends back.
    fn sample_rate(&self) -> u32;

    /// Where the socket goes.
    fn target(&self) -> WsTarget;

    /// The messages sending `text` to `context`; `first` when the context
    /// is new on this socket.
    fn text(&self, context: &str, text: &str, first: bool) -> Vec<String>;

    /// The messages saying no more text is coming for `context`.
    fn finish(&self, context: &str) -> Vec<String>;

    /// The messages dropping `context` at once.
    fn cancel(&self, context: &str) -> Vec<String>;

    /// The message closing the socket politely, if the provider has one.
    fn close(&self) -> Option<String>;

    /// What one text message from the provider says.
    fn parse(&mut self, message: &str) -> Result<Vec<WireEvent>, ServiceError>;

    /// A new socket: forget per-socket parsing state.
    fn reset(&mut self);
}

/// Speaks contexts over one socket. See the module docs.
pub(crate) struct WsWire<A> {
    adapter: A,
    connection: Connection,
    socket: Option<WsStream>,
    /// Contexts opened on the current socket and not yet done.
    open: HashSet<String>,
    /// Open contexts with all their text sent, waiting for their last audio:
    /// while any waits, silence from the socket is a failure.
    finishing: HashSet<String>,
    events: VecDeque<WireEvent>,
}

impl<A: WsSpeech> WsWire<A> {
    pub(crate) fn new(adapter: A, connection: Connection) -> Self {
        WsWire {
            adapter,
            connection,
            socket: None,
            open: HashSet::new(),
            finishing: HashSet::new(),
            events: VecDeque::new(),
        }
    }

    async fn socket(&mut self) -> Result<&mut WsStream, ServiceError> {
        if self.socket.is_none() {
            let socket = connect(
                &self.adapter.target(),
                &self.connection,
                self.adapter.provider(),
            )
            .await?;
            self.adapter.reset();
            self.open.clear();
            self.finishing.clear();
            self.socket = Some(socket);
        }
        self.socket
            .as_mut()
            .ok_or_else(|| ServiceError::Connect("no socket".into()))
    }

    async fn send_all(&mut self, messages: Vec<String>) -> Result<(), ServiceError> {
        let timeout = self.connection.read_timeout;
        let socket = self.socket().await?;
        for message in messages {
            if let Err(error) = send_within(socket, Message::text(message), timeout).await {
                self.lost(None);
                return Err(error);
            }
        }
        Ok(())
    }

    /// The socket is gone: every open context is done.
    fn lost(&mut self, error: Option<ServiceError>) {
        self.socket = None;
        self.finishing.clear();
        if let Some(error) = error
            && !self.open.is_empty()
        {
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

#[async_trait]
impl<A: WsSpeech> TtsWire for WsWire<A> {
    fn provider(&self) -> &'static str {
        self.adapter.provider()
    }

    fn sample_rate(&self) -> u32 {
        self.adapter.sample_rate()
    }

    async fn warm_up(&mut self) -> Result<(), ServiceError> {
        self.socket().await.map(|_| ())
    }

    async fn send_text(&mut self, context: &str, text: &str) -> Result<(), ServiceError> {
        self.socket().await?;
        let first = self.open.insert(context.to_owned());
        let messages = self.adapter.text(context, text, first);
        self.send_all(messages).await
    }

    async fn finish(&mut self, context: &str) -> Result<(), ServiceError> {
        if !self.open.contains(context) {
            // Nothing was sent on this socket (or it was lost): done now.
            self.events.push_back(WireEvent::Done {
                context: context.to_owned(),
            });
            return Ok(());
        }
        let messages = self.adapter.finish(context);
        self.finishing.insert(context.to_owned());
        self.send_all(messages).await
    }

    async fn cancel(&mut self, context: &str) {
        self.finishing.remove(context);
        if self.open.remove(context) {
            let messages = self.adapter.cancel(context);
            if let Err(error) = self.send_all(messages).await {
                tracing::debug!(%error, "could not cancel a context: the socket is gone");
            }
        }
        self.events
            .retain(|e| !matches!(e, WireEvent::Done { context: c } if c == context));
    }

    async fn next_event(&mut self) -> WireEvent {
        loop {
            if let Some(event) = self.events.pop_front() {
                return event;
            }
            let read_timeout = self.connection.read_timeout;
            // A context still taking text may be quiet for long (a tool
            // runs); one waiting for its last audio may not.
            let waiting = !self.finishing.is_empty();
            let Some(socket) = self.socket.as_mut() else {
                return std::future::pending().await;
            };
            let message = if waiting {
                match tokio::time::timeout(read_timeout, socket.next()).await {
                    Ok(message) => message,
                    Err(_) => {
                        self.lost(Some(ServiceError::Timeout {
                            waiting_for: "audio",
                            after: read_timeout,
                        }));
                        continue;
                    }
                }
            } else {
                socket.next().await
            };
            match message {
                Some(Ok(Message::Text(text))) => match self.adapter.parse(&text) {
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
                },
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame.map_or((None, String::new()), |f| {
                        (Some(u16::from(f.code)), f.reason.to_string())
                    });
                    tracing::debug!(provider = self.adapter.provider(), ?code, %reason, "socket closed");
                    self.lost(Some(ServiceError::Closed { code, reason }));
                }
                Some(Ok(_)) => {} // binary, ping, pong: nothing to act on
                Some(Err(error)) => self.lost(Some(error.into())),
                None => self.lost(Some(ServiceError::Closed {
                    code: None,
                    reason: String::new(),
                })),
            }
        }
    }

    async fn close(&mut self) {
        let timeout = self.connection.read_timeout;
        if let Some(message) = self.adapter.close()
            && let Some(socket) = self.socket.as_mut()
        {
            // A socket already gone (or stalled) needs no goodbye.
            let _gone = send_within(socket, Message::text(message), timeout).await;
        }
        if let Some(mut socket) = self.socket.take() {
            let _gone = tokio::time::timeout(timeout, socket.close(None)).await;
        }
    }
}
