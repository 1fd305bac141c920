//! A Twilio media stream over the server's WebSocket (axum): the upgrade's
//! limits, the handshake, the task writing what the sink queues, the
//! hang-up after the session and the close code that says why the stream
//! ended.
//!
//! ```text
//! upgrade(limits) ──▶ StreamSocket::accept ──▶ (the session runs on its ends) ──▶ StreamSocket::finish
//!                      │ reads up to `start`                                        │ stops reading
//!                      │ (never started: closed, code says why)                    │ hangs up if the call may be up
//!                      └ spawns the writer task                                     └ writer sends what is queued; close code
//! ```
//!
//! The server admits the connection, runs the session and counts the
//! hang-up; everything that touches the socket is here.

use axum::extract::ws::{
    CloseFrame, Message, OnFailedUpgrade, WebSocket, WebSocketUpgrade, close_code,
};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::transport::ends::TransportEnds;
use crate::transport::websocket::WsInbound;

use super::call::{AcceptError, CallHandle, CallOptions, TwilioCall};
use super::input::StreamEnd;
use super::protocol::StreamStart;
use super::rest::{HangUp, HangUpError, TwilioRest};

/// Outbound messages a call may have queued for its socket: about 10 s of
/// audio. The output releases each frame it is given whole, so a producer
/// that delivers seconds of audio in one frame sends it as a burst (Twilio
/// buffers it and plays it in order); a socket that falls this far behind
/// loses audio rather than growing memory or holding up the session.
const OUTBOUND_QUEUE: usize = 512;

/// How long a stream's end waits for the writer to send what is queued and
/// for the close to go out. A far end that reads takes milliseconds even
/// for a full queue (about 200 KB over loopback or a LAN); one that does
/// not read would otherwise hold the session's slot for good.
const WRITER_LIMIT: Duration = Duration::from_secs(5);

/// The socket's read buffer. Twilio's messages are a few hundred bytes (a
/// 20 ms `media` message is about 400); the WebSocket library zero-fills
/// the buffer's free space before every read, the one that finds nothing
/// included, so its default (128 KiB) would be most of a call's memory and
/// even 8 KiB cost 16 KiB of writes per message (0.8% of a 500-call
/// server's CPU, `perf`). 2 KiB holds a few messages. Larger messages, up
/// to the message limit, still arrive whole: the buffer grows for them.
const READ_BUFFER: usize = 2 * 1024;

type SocketWriter = SplitSink<WebSocket, Message>;

/// The upgrade of a media stream's connection, with its limits: messages
/// (and frames) up to `max_message_bytes`, a small read buffer.
pub fn upgrade(
    upgrade: WebSocketUpgrade,
    max_message_bytes: usize,
) -> WebSocketUpgrade<impl OnFailedUpgrade> {
    upgrade
        .read_buffer_size(READ_BUFFER)
        .max_message_size(max_message_bytes)
        .max_frame_size(max_message_bytes)
        .on_failed_upgrade(|err| tracing::warn!(error = %err, "WebSocket upgrade failed"))
}

/// The call a dropped stream hangs up: SIDs the server issued or verified,
/// never ones the stream's client sent unchecked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HangUpTarget {
    /// The account (`AC…`).
    pub account_sid: String,
    /// The call (`CA…`).
    pub call_sid: String,
}

/// A started media stream's socket, while its session runs.
pub struct StreamSocket {
    start: StreamStart,
    call: CallHandle,
    writer: JoinHandle<SocketWriter>,
    done: oneshot::Sender<()>,
}

impl StreamSocket {
    /// Reads `socket` up to Twilio's `start` (see [`TwilioCall::accept`]),
    /// then starts the task writing the sink's messages. Returns the
    /// session's transport ends; a stream that never started is closed here,
    /// with a code that says why, and `None` returned.
    pub async fn accept(
        socket: WebSocket,
        pipeline_rate: u32,
        options: CallOptions,
    ) -> Option<(TransportEnds, StreamSocket)> {
        let (ws_tx, ws_rx) = socket.split();
        let inbound = ws_rx.filter_map(|message| std::future::ready(WsInbound::from_axum(message)));
        let call = match TwilioCall::accept(inbound, pipeline_rate, options).await {
            Ok(call) => call,
            Err(err) => {
                tracing::info!(error = %err, "stream ended before it started");
                close(ws_tx, unstarted_code(&err)).await;
                return None;
            }
        };
        let start = call.start().clone();
        let (outbound_tx, outbound_rx) = mpsc::channel(OUTBOUND_QUEUE);
        let (done, done_rx) = oneshot::channel();
        let writer = tokio::spawn(write_loop(ws_tx, outbound_rx, done_rx).in_current_span());
        let (ends, call) = call.into_transport(outbound_tx);
        let socket = StreamSocket {
            start,
            call,
            writer,
            done,
        };
        Some((ends, socket))
    }

    /// What Twilio said about the stream.
    pub fn start(&self) -> &StreamStart {
        &self.start
    }

    /// Closes a started stream that may not have a session (it failed
    /// authentication), with close code 1008 (policy), dropping its ends.
    pub async fn refuse(self, ends: TransportEnds) {
        drop(ends);
        self.call.stop_reading();
        let _writer_gone = self.done.send(());
        close_after_writer(self.writer, close_code::POLICY, WRITER_LIMIT).await;
    }

    /// Ends the stream after its session: stops reading; hangs the call
    /// `target` up through `rest` when it may still be up (the pipeline
    /// ended the session, or the socket failed without `stop`); lets the writer send
    /// what is still queued; closes the socket with a code that says why
    /// (`server_shutdown`: the server ended the session as it shuts down).
    /// Returns the hang-up's result, `None` when none was tried.
    pub async fn finish(
        self,
        rest: Option<&TwilioRest>,
        target: Option<&HangUpTarget>,
        server_shutdown: bool,
    ) -> Option<Result<HangUp, HangUpError>> {
        self.call.stop_reading();
        let hung_up = if self.call.call_may_be_up() {
            hang_up(rest, target).await
        } else {
            None
        };
        // The writer sends what is still queued, then gives the socket back.
        let _writer_gone = self.done.send(());
        let code = end_code(self.call.ended_by(), server_shutdown);
        close_after_writer(self.writer, code, WRITER_LIMIT).await;
        hung_up
    }
}

/// The close code for a stream that never started.
fn unstarted_code(err: &AcceptError) -> u16 {
    match err {
        AcceptError::TooLarge { .. } => close_code::SIZE,
        AcceptError::Protocol(_) => close_code::UNSUPPORTED,
        _ => close_code::NORMAL,
    }
}

/// The close code for a stream whose session is over: what ended the
/// stream, if it was bad input, else whether the server is going away.
fn end_code(ended_by: Option<StreamEnd>, server_shutdown: bool) -> u16 {
    match ended_by {
        Some(StreamEnd::TooLarge) => close_code::SIZE,
        Some(StreamEnd::ProtocolError) => close_code::UNSUPPORTED,
        _ if server_shutdown => close_code::AWAY,
        _ => close_code::NORMAL,
    }
}

/// Sends queued messages in order, flushing once per burst; stops when told
/// to (sending what is already queued first), when every sender is gone, or
/// when the socket fails (closing the queue, so the sink stops queueing).
async fn write_loop(
    mut ws_tx: SocketWriter,
    mut outbound: mpsc::Receiver<String>,
    mut done: oneshot::Receiver<()>,
) -> SocketWriter {
    let mut finishing = false;
    loop {
        let first = tokio::select! {
            biased;
            message = outbound.recv() => message,
            _ = &mut done, if !finishing => {
                // Take what is queued, then stop.
                finishing = true;
                outbound.close();
                outbound.recv().await
            }
        };
        let Some(first) = first else {
            break;
        };
        let mut batch = Some(first);
        let mut failed = false;
        while let Some(message) = batch.take() {
            if let Err(err) = ws_tx.feed(Message::Text(message.into())).await {
                tracing::debug!(error = %err, "the socket is closed; outbound audio dropped");
                failed = true;
                break;
            }
            batch = outbound.try_recv().ok();
        }
        if failed || ws_tx.flush().await.is_err() {
            break;
        }
    }
    ws_tx
}

/// Waits for the writer to send what is queued and give the socket back,
/// then closes it with `code`; all within `limit`. A far end that stops
/// reading blocks the writer once the socket's buffers are full, and
/// nothing else would ever end that wait: the session's slot and the
/// connection would be held for good. Past `limit` the writer is aborted
/// and the socket dropped, which closes the connection.
async fn close_after_writer<W>(mut writer: JoinHandle<W>, code: u16, limit: Duration)
where
    W: futures_util::Sink<Message> + Unpin,
{
    let closed = tokio::time::timeout(limit, async {
        match (&mut writer).await {
            Ok(ws_tx) => close(ws_tx, code).await,
            Err(err) => tracing::error!(error = %err, "the socket writer failed"),
        }
    })
    .await;
    if closed.is_err() {
        writer.abort();
        tracing::warn!(
            limit_secs = limit.as_secs_f64(),
            "the far end stopped reading: socket dropped without a close"
        );
    }
}

async fn close<W>(mut ws_tx: W, code: u16)
where
    W: futures_util::Sink<Message> + Unpin,
{
    let frame = CloseFrame {
        code,
        reason: "".into(),
    };
    // The far end may already be gone; there is nothing left to tell it.
    let _gone = ws_tx.send(Message::Close(Some(frame))).await;
    let _gone = ws_tx.close().await;
}

/// Hangs up the call `target` names, logging how it went; `None` without a
/// REST client (closing the stream then ends the `<Connect>`).
async fn hang_up(
    rest: Option<&TwilioRest>,
    target: Option<&HangUpTarget>,
) -> Option<Result<HangUp, HangUpError>> {
    let Some(rest) = rest else {
        tracing::debug!("no REST hang-up for this stream: closing it ends the <Connect>");
        return None;
    };
    let result = match target {
        Some(target) => rest.hang_up(&target.account_sid, &target.call_sid).await,
        None => Err(HangUpError::MissingSid),
    };
    match &result {
        Ok(HangUp::Completed) => tracing::info!("call hung up"),
        Ok(HangUp::AlreadyEnded) => tracing::info!("call had already ended"),
        Err(err) => tracing::warn!(error = %err, "hang-up failed"),
    }
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::twilio::protocol::ProtocolError;

    #[test]
    fn close_codes_say_why_the_stream_ended() {
        let too_large = AcceptError::TooLarge { size: 2, max: 1 };
        assert_eq!(unstarted_code(&too_large), close_code::SIZE);
        let unknown = AcceptError::Protocol(ProtocolError::UnknownEvent("x".into()));
        assert_eq!(unstarted_code(&unknown), close_code::UNSUPPORTED);
        assert_eq!(unstarted_code(&AcceptError::Closed), close_code::NORMAL);

        // Bad input says so even while the server shuts down.
        assert_eq!(end_code(Some(StreamEnd::TooLarge), true), close_code::SIZE);
        assert_eq!(
            end_code(Some(StreamEnd::ProtocolError), false),
            close_code::UNSUPPORTED
        );
        assert_eq!(end_code(None, true), close_code::AWAY);
        assert_eq!(
            end_code(Some(StreamEnd::Stopped), false),
            close_code::NORMAL
        );
        assert_eq!(end_code(None, false), close_code::NORMAL);
    }

    /// A writer's socket that records what is sent to it.
    fn recording_sink(
        sent: std::sync::mpsc::Sender<Message>,
    ) -> impl futures_util::Sink<Message, Error = std::convert::Infallible> + Unpin {
        Box::pin(futures_util::sink::unfold(
            sent,
            |sent, message| async move {
                let _ = sent.send(message);
                Ok(sent)
            },
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn the_socket_is_closed_with_the_code_once_the_writer_is_done() {
        let (sent, seen) = std::sync::mpsc::channel();
        let writer = tokio::spawn(async move { recording_sink(sent) });
        let started = tokio::time::Instant::now();
        close_after_writer(writer, close_code::AWAY, Duration::from_secs(5)).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
        match seen.try_recv() {
            Ok(Message::Close(Some(frame))) => assert_eq!(frame.code, close_code::AWAY),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_writer_stuck_on_a_far_end_that_does_not_read_is_aborted_at_the_limit() {
        let writer = tokio::spawn(async {
            std::future::pending::<futures_util::sink::Drain<Message>>().await
        });
        let abort = writer.abort_handle();
        let started = tokio::time::Instant::now();
        close_after_writer(writer, close_code::NORMAL, Duration::from_secs(5)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        tokio::task::yield_now().await;
        assert!(abort.is_finished(), "the stuck writer still runs");
    }
}
