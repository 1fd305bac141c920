//! A WebSocket as the telephony transports see it: its inbound side is a
//! stream of [`WsInbound`] (text as axum's `Utf8Bytes`, so that the UTF-8
//! check the WebSocket layer made is not made again), and its outbound side
//! a channel of text messages that a writer task sends in order.
//! [`WsInbound::from_axum`] reads axum's messages (the server's WebSockets)
//! this way.

use std::error::Error as StdError;

use axum::extract::ws::{Message, Utf8Bytes};

/// One thing that happened on the inbound side of a WebSocket.
#[derive(Debug)]
pub enum WsInbound {
    /// A text message as the WebSocket layer read it and checked it as
    /// UTF-8, not copied.
    Text(Utf8Bytes),
    /// A binary message, of this many bytes.
    Binary(usize),
    /// The far end closed the socket, or the connection dropped.
    Closed,
    /// A message larger than the server accepts; the socket cannot be read
    /// any further.
    TooLarge {
        /// Its size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The socket failed.
    Failed(Box<dyn StdError + Send + Sync>),
}

impl WsInbound {
    /// Axum's messages as a transport sees them; pings and pongs are
    /// answered by the WebSocket layer and need nothing here.
    pub fn from_axum(message: Result<Message, axum::Error>) -> Option<WsInbound> {
        match message {
            Ok(Message::Text(text)) => Some(WsInbound::Text(text)),
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
}
