//! The task driving an [`SttConnection`] over a real socket: it only moves
//! bytes and sleeps until the next deadline; every decision (what to send,
//! when to reconnect, what a result means) is the connection's.

use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::frame::{FrameBody, TranscriptionFrame};
use crate::pipeline::ProcessorContext;
use crate::services::Connection;
use crate::services::retry::jitter;
use crate::services::task::report;
use crate::services::timer::{now, sleep_until};
use crate::services::websocket::{SocketRead, WsStream, connect, next_read, send_within};

use super::connection::{Outgoing, SttAction, SttConnection};

/// What the processor asks of the connection task.
pub(crate) enum SttCommand {
    /// Audio to stream.
    Audio(bytes::Bytes),
    /// The user stopped speaking: ask for final results now.
    Finalize,
}

/// Runs `state` until it is done: after the processor closed `commands`
/// (the end of the session), once the stream is finished.
pub(crate) async fn drive(
    mut state: SttConnection,
    options: Connection,
    mut commands: mpsc::UnboundedReceiver<SttCommand>,
    ctx: ProcessorContext,
) {
    let provider = state.provider();
    let target = state.target();
    let mut socket: Option<WsStream> = None;
    let mut commands_open = true;
    loop {
        while let Some(action) = state.poll_action() {
            match action {
                SttAction::Connect => match connect(&target, &options, provider).await {
                    Ok(opened) => {
                        socket = Some(opened);
                        state.handle_connected(now());
                    }
                    Err(error) => state.handle_connect_failed(error, jitter(), now()),
                },
                SttAction::Send(outgoing) => {
                    let Some(open) = socket.as_mut() else {
                        continue;
                    };
                    let message = match outgoing {
                        Outgoing::Audio(audio) => Message::Binary(audio),
                        Outgoing::Control(text) => Message::text(text),
                    };
                    if let Err(error) = send_within(open, message, options.read_timeout).await {
                        socket = None;
                        state.handle_socket_lost(&error, now());
                    }
                }
                SttAction::Transcript { text, is_final } => {
                    let frame = TranscriptionFrame {
                        text,
                        user_id: None,
                        language: None,
                        at: ctx.now(),
                    };
                    let body = if is_final {
                        FrameBody::Transcription(frame)
                    } else {
                        FrameBody::InterimTranscription(frame)
                    };
                    ctx.push_downstream(body).await;
                }
                SttAction::Report(error) => {
                    report(error.into_processor_error(provider), &ctx).await;
                }
                SttAction::Fail(error) => {
                    report(error.into_error_with(provider, true), &ctx).await;
                }
                SttAction::Disconnect => socket = None,
            }
        }
        if state.is_stopped() {
            return;
        }
        let deadline = state.poll_timeout();
        tokio::select! {
            // A due reconnect or keep-alive first, then the pipeline's
            // audio, then the provider's results.
            biased;
            () = sleep_until(deadline) => state.handle_timeout(now()),
            command = commands.recv(), if commands_open => match command {
                Some(SttCommand::Audio(audio)) => state.handle_audio(audio, now()),
                Some(SttCommand::Finalize) => state.handle_finalize(now()),
                None => {
                    commands_open = false;
                    state.handle_end(now());
                }
            },
            read = next_read(&mut socket) => match read {
                SocketRead::Text(text) => state.handle_message(&text, now()),
                SocketRead::Closed { code, reason } => state.handle_closed(code, &reason, now()),
                SocketRead::Lost(error) => state.handle_socket_lost(&error, now()),
                SocketRead::Other => {}
            },
        }
    }
}
