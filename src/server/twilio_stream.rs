//! `GET /twilio/ws`: a Twilio media stream, run as one session.
//!
//! The connection takes a session slot before the WebSocket upgrade (over
//! the limit: 503, and Twilio ends the `<Connect>`), then:
//!
//! 1. reads up to `start` (skipping what does not belong before it);
//! 2. runs the session with the Twilio transport's ends, a writer task
//!    sending what the sink queues;
//! 3. when the session is over and the call may still be up (the pipeline
//!    ended it, or the socket failed without `stop`), hangs up through the
//!    REST API;
//! 4. closes the WebSocket, with a close code that says why, and frees the
//!    slot.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

use crate::transport::WsInbound;
use crate::transport::twilio::{
    AcceptError, CallOptions, HangUp, StreamEnd, TwilioCall, protocol::StreamStart,
};

use super::registry::SessionPermit;
use super::session::run_session;
use super::shutdown::SHUTDOWN_REASON;
use super::state::ServerState;

/// Outbound messages a call may have queued for its socket: about 10 s of
/// audio. The output releases each frame it is given whole, so a producer
/// that delivers seconds of audio in one frame sends it as a burst (Twilio
/// buffers it and plays it in order); a socket that falls this far behind
/// loses audio rather than growing memory or holding up the session.
const OUTBOUND_QUEUE: usize = 512;

/// The socket's read buffer. Twilio's messages are a few hundred bytes; the
/// WebSocket library's default (128 KiB, zero-filled on first read) would
/// be most of a call's memory. Larger messages, up to `max_message_bytes`,
/// still arrive whole: the buffer grows for them.
const READ_BUFFER: usize = 8 * 1024;

/// `GET /twilio/ws`.
pub(crate) async fn stream(
    State(state): State<Arc<ServerState>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let permit = match state.registry.admit() {
        Ok(permit) => permit,
        Err(refusal) => {
            tracing::warn!(reason = %refusal, "media stream refused");
            state.metrics.session_refused("twilio", refusal.kind());
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                refusal.to_string(),
            )
                .into_response();
        }
    };
    let span = tracing::info_span!(
        "call",
        call_id = %permit.session_id(),
        transport = "twilio",
        call_sid = tracing::field::Empty,
    );
    let limit = state.config.server.max_message_bytes.bytes();
    upgrade
        .read_buffer_size(READ_BUFFER)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_failed_upgrade(|err| tracing::warn!(error = %err, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| serve_call(state, permit, socket).instrument(span))
}

/// Axum's messages as the transport sees them; pings and pongs are
/// answered by the WebSocket layer and need nothing here.
fn inbound(message: Result<Message, axum::Error>) -> Option<WsInbound> {
    match message {
        Ok(Message::Text(text)) => Some(WsInbound::Text(text.into())),
        Ok(Message::Binary(bytes)) => Some(WsInbound::Binary(bytes.len())),
        Ok(Message::Close(_)) => Some(WsInbound::Closed),
        Ok(Message::Ping(_) | Message::Pong(_)) => None,
        Err(err) => {
            let err = err.into_inner();
            match err.downcast_ref::<tungstenite::Error>() {
                Some(tungstenite::Error::Capacity(
                    tungstenite::error::CapacityError::MessageTooLong { size, max_size },
                )) => Some(WsInbound::TooLarge {
                    size: *size,
                    max: *max_size,
                }),
                Some(
                    tungstenite::Error::ConnectionClosed
                    | tungstenite::Error::AlreadyClosed
                    | tungstenite::Error::Protocol(
                        tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                    ),
                ) => Some(WsInbound::Closed),
                _ => Some(WsInbound::Failed(err)),
            }
        }
    }
}

async fn serve_call(state: Arc<ServerState>, permit: SessionPermit, socket: WebSocket) {
    let (ws_tx, ws_rx) = socket.split();
    let options = CallOptions {
        idle_timeout: state.config.server.idle_timeout_secs.duration(),
        stats: Arc::clone(&state.twilio.stats),
    };
    let rate = state.config.pipeline.sample_rate.hz();
    let inbound = ws_rx.filter_map(|message| std::future::ready(inbound(message)));
    let call = match TwilioCall::accept(inbound, rate, options).await {
        Ok(call) => call,
        Err(err) => {
            tracing::info!(error = %err, "stream ended before it started");
            let code = match err {
                AcceptError::TooLarge { .. } => close_code::SIZE,
                AcceptError::Protocol(_) => close_code::UNSUPPORTED,
                _ => close_code::NORMAL,
            };
            close(ws_tx, code).await;
            return;
        }
    };
    let start = call.start().clone();
    tracing::Span::current().record("call_sid", start.call_sid.as_deref().unwrap_or("-"));
    tracing::info!(
        stream_sid = %start.stream_sid,
        parameters = ?start.custom_parameters.keys().collect::<Vec<_>>(),
        "media stream started"
    );

    let (outbound_tx, outbound_rx) = mpsc::channel(OUTBOUND_QUEUE);
    let (done_tx, done_rx) = oneshot::channel();
    let writer = tokio::spawn(write_loop(ws_tx, outbound_rx, done_rx).in_current_span());
    let (ends, call) = call.into_transport(outbound_tx);

    let mut setup = state.config.session_setup(Arc::clone(permit.session_id()));
    setup.env = state.env.clone();
    setup.custom_parameters = start.custom_parameters.clone();
    let report = run_session(&state, &permit, "twilio", setup, ends, Vec::new()).await;
    call.stop_reading();

    if call.call_may_be_up() {
        hang_up(&state, &start).await;
    }
    // The writer sends what is still queued, then gives the socket back.
    let _writer_gone = done_tx.send(());
    let code = match (call.ended_by(), &report) {
        (Some(StreamEnd::TooLarge), _) => close_code::SIZE,
        (Some(StreamEnd::ProtocolError), _) => close_code::UNSUPPORTED,
        (_, Some(report)) if report.end_reason == SHUTDOWN_REASON => close_code::AWAY,
        _ => close_code::NORMAL,
    };
    match writer.await {
        Ok(ws_tx) => close(ws_tx, code).await,
        Err(err) => tracing::error!(error = %err, "the socket writer failed"),
    }
    drop(permit);
}

/// Sends queued messages in order, flushing once per burst; stops when told
/// to (sending what is already queued first), when every sender is gone, or
/// when the socket fails (closing the queue, so the sink stops queueing).
async fn write_loop(
    mut ws_tx: SplitSink<WebSocket, Message>,
    mut outbound: mpsc::Receiver<String>,
    mut done: oneshot::Receiver<()>,
) -> SplitSink<WebSocket, Message> {
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

async fn close(mut ws_tx: SplitSink<WebSocket, Message>, code: u16) {
    let frame = CloseFrame {
        code,
        reason: "".into(),
    };
    // The far end may already be gone; there is nothing left to tell it.
    let _gone = ws_tx.send(Message::Close(Some(frame))).await;
    let _gone = ws_tx.close().await;
}

async fn hang_up(state: &ServerState, start: &StreamStart) {
    let Some(rest) = &state.twilio.rest else {
        tracing::debug!("no REST hang-up configured: closing the stream ends the <Connect>");
        return;
    };
    let (Some(account_sid), Some(call_sid)) = (&start.account_sid, &start.call_sid) else {
        tracing::warn!("cannot hang up: the stream's start named no account or call");
        state.metrics.hang_up("failed");
        return;
    };
    match rest.hang_up(account_sid, call_sid).await {
        Ok(HangUp::Completed) => {
            tracing::info!("call hung up");
            state.metrics.hang_up("completed");
        }
        Ok(HangUp::AlreadyEnded) => {
            tracing::info!("call had already ended");
            state.metrics.hang_up("already_ended");
        }
        Err(err) => {
            tracing::warn!(error = %err, "hang-up failed");
            state.metrics.hang_up("failed");
        }
    }
}
