//! [`WsWire`]: TTS over one WebSocket per session, a context per response.
//! It drives a [`ContextSocket`] (which decides everything: see there) over
//! a real socket, and only moves bytes and sleeps until the next deadline.
//! The provider adapter ([`WsSpeech`]) encodes the messages and parses the
//! replies.
//!
//! # Opening the socket beside the engine's commands
//!
//! A socket opened when text needs one (after the last was lost) is
//! opened in the background, in a task of its own: the handshake goes on
//! whatever the engine is doing (pushing audio into a full lane, reading a
//! command), not only while it waits on [`TtsWire::next_event`], so
//! `send_text`, `finish` and `cancel` return at once while it connects,
//! and the engine goes on reading its commands. The open socket is taken
//! up by the next call (`next_event` waits on it beside the socket's
//! reads), which sends what waited for it. An interruption while a
//! handshake is slow (up to `response_timeout` per try, retried) thus
//! drops the interrupted text at once, before it ever goes out, instead of
//! once the connect ends. Because `next_event` sends what waited for the
//! socket, every step here is cancel safe (but the closing one, which
//! `close` alone asks): an action leaves the queue only once done, a
//! message once the socket has taken it, and a flush cut short is finished
//! by the next call.
//!
//! # A stalled write
//!
//! A provider that stops reading stalls the write under way. The engine
//! cuts `next_event` short for each command, and the next call takes the
//! write up again: its deadline (`read_timeout`) is kept from when that
//! write began, so the socket is lost `read_timeout` after it stalled
//! however many commands come meanwhile, instead of the wait starting over
//! with each.
//!
//! The warm-up's socket is awaited in `warm_up` instead: the engine reads
//! no command before it returns (commands of responses interrupted
//! meanwhile are dropped at the engine's gate, never sent), and its
//! refusal must reach even a session that ends before it asks for events.

use async_trait::async_trait;
use futures_util::FutureExt as _;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::services::timer::{now, sleep_until};
use crate::services::websocket::{
    SocketRead, WsStream, WsTarget, connect, feed_before, flush_before, next_read,
};
use crate::services::{Connection, ServiceError};

use super::context_socket::{ContextSocket, SocketAction};
use super::wire::{TtsWire, WireEvent};
use super::ws_speech::WsSpeech;

/// A socket being opened, in a task of its own (see the module docs);
/// the attempt is dropped with it.
struct Opening(JoinHandle<Result<WsStream, ServiceError>>);

impl Opening {
    fn start(target: WsTarget, connection: Connection, provider: &'static str) -> Self {
        Opening(tokio::spawn(async move {
            connect(&target, &connection, provider).await
        }))
    }

    /// The socket, once opened (or the reason it could not be).
    ///
    /// # Cancel safety
    /// Cancel safe: the attempt goes on in its task.
    async fn outcome(&mut self) -> Result<WsStream, ServiceError> {
        match (&mut self.0).await {
            Ok(opened) => opened,
            // Only a panic in the handshake (the task is aborted only when
            // dropped, and then nothing awaits it).
            Err(error) => Err(ServiceError::Connect(format!(
                "the connection attempt failed: {error}"
            ))),
        }
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        // The session is over (or the wire gone): the socket is not wanted.
        self.0.abort();
    }
}

/// Speaks contexts over one socket. See the module docs.
pub(crate) struct WsWire<A> {
    state: ContextSocket<A>,
    connection: Connection,
    socket: Option<WsStream>,
    /// The socket being opened, if one is.
    opening: Option<Opening>,
    /// Messages the socket took are not all written out yet.
    unflushed: bool,
    /// When the write under way (a message fed, or a flush) must be done
    /// by, if one is under way: set when it begins, kept while it is cut
    /// short and taken up again, cleared once it is done or the socket is
    /// gone. See the module docs.
    write_deadline: Option<tokio::time::Instant>,
}

impl<A: WsSpeech> WsWire<A> {
    pub(crate) fn new(adapter: A, connection: Connection) -> Self {
        WsWire {
            state: ContextSocket::new(adapter, connection.read_timeout),
            connection,
            socket: None,
            opening: None,
            unflushed: false,
            write_deadline: None,
        }
    }

    /// Starts opening a socket to the adapter's target.
    fn start_opening(&mut self) {
        let adapter = self.state.adapter();
        self.opening = Some(Opening::start(
            adapter.target(),
            self.connection,
            adapter.provider(),
        ));
    }

    /// Takes up the socket being opened if its attempt has ended, without
    /// waiting for it.
    fn take_opened(&mut self) {
        let Some(opening) = self.opening.as_mut() else {
            return;
        };
        if !opening.0.is_finished() {
            return;
        }
        // Finished, so ready at once; left in place should the runtime's
        // budget make it wait a turn.
        if let Some(opened) = opening.outcome().now_or_never() {
            self.opening = None;
            self.opened(opened);
        }
    }

    /// The socket asked for opened, or could not be.
    fn opened(&mut self, opened: Result<WsStream, ServiceError>) {
        match opened {
            Ok(socket) => {
                self.socket = Some(socket);
                self.unflushed = false;
                self.write_deadline = None;
                self.state.handle_connected(now());
            }
            Err(error) => self.state.handle_connect_failed(error, now()),
        }
    }

    /// The socket failed while writing.
    fn lose(&mut self, error: ServiceError) {
        self.socket = None;
        self.unflushed = false;
        self.write_deadline = None;
        self.state.handle_socket_lost(error, now());
    }

    /// Carries out what the state machine asks, in order.
    ///
    /// # Cancel safety
    /// Cancel safe unless `Close` is queued (only `close` queues it): see
    /// the module docs.
    async fn carry_out(&mut self) {
        let timeout = self.connection.read_timeout;
        self.take_opened();
        loop {
            if self.unflushed
                && let Some(socket) = self.socket.as_mut()
            {
                let deadline = write_deadline(&mut self.write_deadline, timeout);
                match flush_before(socket, deadline, timeout).await {
                    Ok(()) => {
                        self.unflushed = false;
                        self.write_deadline = None;
                    }
                    Err(error) => self.lose(error),
                }
                continue;
            }
            let Some(action) = self.state.peek_action() else {
                return;
            };
            match action {
                SocketAction::Connect => {
                    self.state.poll_action();
                    self.start_opening();
                }
                SocketAction::Send(text) => {
                    let message = Message::text(text.as_str());
                    let Some(socket) = self.socket.as_mut() else {
                        self.state.poll_action();
                        continue;
                    };
                    let deadline = write_deadline(&mut self.write_deadline, timeout);
                    let fed = feed_before(socket, message, deadline, timeout).await;
                    // Taken off the queue only now: a call cancelled while
                    // the socket was not ready leaves the message queued.
                    self.state.poll_action();
                    match fed {
                        Ok(()) => {
                            self.unflushed = true;
                            self.write_deadline = None;
                        }
                        Err(error) => self.lose(error),
                    }
                }
                SocketAction::Disconnect => {
                    self.state.poll_action();
                    self.socket = None;
                    self.unflushed = false;
                    self.write_deadline = None;
                }
                SocketAction::Close => {
                    self.state.poll_action();
                    self.unflushed = false;
                    self.write_deadline = None;
                    if let Some(mut socket) = self.socket.take() {
                        // A socket already gone (or stalled) needs no goodbye.
                        let _gone = tokio::time::timeout(timeout, socket.close(None)).await;
                    }
                }
            }
        }
    }
}

/// The deadline of the write under way (`deadline`), starting one of
/// `timeout` now if none is under way.
fn write_deadline(
    deadline: &mut Option<tokio::time::Instant>,
    timeout: std::time::Duration,
) -> tokio::time::Instant {
    *deadline.get_or_insert_with(|| tokio::time::Instant::now() + timeout)
}

/// The socket being opened, once it is (or could not be); pending for ever
/// when none is, so that a `select!` can wait on it beside other work.
///
/// # Cancel safety
/// Cancel safe: the attempt goes on in its task.
async fn opening(opening: &mut Option<Opening>) -> Result<WsStream, ServiceError> {
    match opening {
        Some(opening) => opening.outcome().await,
        None => std::future::pending().await,
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
        // Awaited here, not beside the commands: see the module docs.
        if let Some(mut socket) = self.opening.take() {
            let opened = socket.outcome().await;
            self.opened(opened);
            self.carry_out().await;
        }
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
                opened = opening(&mut self.opening) => {
                    self.opening = None;
                    self.opened(opened);
                }
                () = sleep_until(deadline) => self.state.handle_timeout(now()),
            }
        }
    }

    async fn close(&mut self) {
        self.state.handle_close(now());
        self.carry_out().await;
    }
}

#[cfg(test)]
mod tests;
