//! A WebSocket as the telephony transports see it: whatever library serves
//! it, its inbound side is a stream of [`WsInbound`], and its outbound side
//! a channel of text messages that a writer task sends in order.

use std::error::Error as StdError;

use bytes::Bytes;

/// One thing that happened on the inbound side of a WebSocket.
#[derive(Debug)]
pub enum WsInbound {
    /// A text message: its bytes as the WebSocket layer read them (and
    /// checked as UTF-8), not copied. Its parser reads the bytes.
    Text(Bytes),
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
