//! [`WsWire`]: TTS over one WebSocket per session, a context per response.
//! It drives a [`ContextSocket`] (which decides everything: see there) over
//! a real socket, and only moves bytes and sleeps until the next deadline.
//! The provider adapter ([`WsSpeech`]) encodes the messages and parses the
//! replies.

use async_trait::async_trait;
use tokio_tungstenite::tungstenite::Message;

use crate::services::timer::{now, sleep_until};
use crate::services::websocket::{SocketRead, WsStream, connect, next_read, send_within};
use crate::services::{Connection, ServiceError};

use super::context_socket::{ContextSocket, SocketAction};
use super::wire::{TtsWire, WireEvent};
use super::ws_speech::WsSpeech;

/// Speaks contexts over one socket. See the module docs.
pub(crate) struct WsWire<A> {
    state: ContextSocket<A>,
    connection: Connection,
    socket: Option<WsStream>,
}

impl<A: WsSpeech> WsWire<A> {
    pub(crate) fn new(adapter: A, connection: Connection) -> Self {
        WsWire {
            state: ContextSocket::new(adapter, connection.read_timeout),
            connection,
            socket: None,
        }
    }

    /// Carries out what the state machine asks, in order.
    ///
    /// # Cancel safety
    /// Cancel safe when only `Disconnect` is queued, as after a message or
    /// a timer (it never awaits then); not otherwise.
    async fn carry_out(&mut self) {
        let timeout = self.connection.read_timeout;
        while let Some(action) = self.state.poll_action() {
            match action {
                SocketAction::Connect => {
                    let adapter = self.state.adapter();
                    let target = adapter.target();
                    match connect(&target, &self.connection, adapter.provider()).await {
                        Ok(socket) => {
                            self.socket = Some(socket);
                            self.state.handle_connected(now());
                        }
                        Err(error) => self.state.handle_connect_failed(error, now()),
                    }
                }
                SocketAction::Send(text) => {
                    let Some(socket) = self.socket.as_mut() else {
                        continue;
                    };
                    if let Err(error) = send_within(socket, Message::text(text), timeout).await {
                        self.socket = None;
                        self.state.handle_socket_lost(error, now());
                    }
                }
                SocketAction::Disconnect => self.socket = None,
                SocketAction::Close => {
                    if let Some(mut socket) = self.socket.take() {
                        // A socket already gone (or stalled) needs no goodbye.
                        let _gone = tokio::time::timeout(timeout, socket.close(None)).await;
                    }
                }
            }
        }
    }
}

#[async_trait]
impl<A: WsSpeech> TtsWire for WsWire<A> {
    fn provider(&self) -> &'static str {
        self.state.adapter().provider()
    }

    fn sample_rate(&self) -> u32 {
        self.state.adapter().sample_rate()
    }

    fn contexts_expire(&self) -> bool {
        self.state.adapter().contexts_expire()
    }

    async fn warm_up(&mut self) -> Result<(), ServiceError> {
        self.state.handle_warm_up(now());
        self.carry_out().await;
        // Nothing waited for this socket, so a refusal is the only event
        // there can be; returned now, for a session that ends before it
        // asks the wire for events would never see it.
        match self.state.poll_event() {
            Some(WireEvent::Failed { error, .. }) => Err(error),
            _ => Ok(()),
        }
    }

    async fn send_text(&mut self, context: &str, text: &str) -> Result<(), ServiceError> {
        self.state.handle_text(context, text, now());
        self.carry_out().await;
        Ok(())
    }

    async fn finish(&mut self, context: &str) -> Result<(), ServiceError> {
        self.state.handle_finish(context, now());
        self.carry_out().await;
        Ok(())
    }

    async fn cancel(&mut self, context: &str) {
        self.state.handle_cancel(context, now());
        self.carry_out().await;
    }

    async fn next_event(&mut self) -> WireEvent {
        loop {
            // Only `Disconnect` can be queued here: see `carry_out`.
            self.carry_out().await;
            if let Some(event) = self.state.poll_event() {
                return event;
            }
            let deadline = self.state.poll_timeout();
            tokio::select! {
                read = next_read(&mut self.socket) => match read {
                    SocketRead::Text(text) => self.state.handle_message(&text, now()),
                    SocketRead::Closed { code, reason } => {
                        self.state.handle_closed(code, &reason, now());
                    }
                    SocketRead::Lost(error) => self.state.handle_socket_lost(error, now()),
                    SocketRead::Other => self.state.handle_heard(now()),
                },
                () = sleep_until(deadline) => self.state.handle_timeout(now()),
            }
        }
    }

    async fn close(&mut self) {
        self.state.handle_close(now());
        self.carry_out().await;
    }
}
