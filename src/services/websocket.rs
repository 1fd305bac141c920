//! Opening a provider's WebSocket: one place for the handshake, its
//! timeout, its retries and its errors (a refused handshake is an HTTP
//! status with the provider's message, like any HTTP error).
//!
//! What a provider sends is bounded: a message (or frame) over
//! [`MAX_PROVIDER_MESSAGE_BYTES`] fails the read, and the socket is dropped
//! as lost (speech-to-text reconnects and replays its unconfirmed audio;
//! text-to-speech fails the utterance), so one message cannot take more
//! than that much memory. Nothing queues between the socket and its
//! consumer: a message is read only once the one before it has been
//! handled and its frames pushed on (the pipeline's bounded downstream
//! lane), so a provider flooding messages is held back by TCP, not
//! buffered.

use std::fmt;
use std::time::{Duration, SystemTime};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::HeaderName;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::error::{ServiceError, error_message};
use super::http::install_crypto_provider;
use super::options::Connection;
use super::retry::{parse_retry_after, retrying};

/// The largest message (and frame) read from a provider: far above any
/// real one (a text-to-speech chunk of base64 audio is tens of KB; tungstenite
/// would take up to 64 MiB).
pub(crate) const MAX_PROVIDER_MESSAGE_BYTES: usize = 2 * 1024 * 1024;

/// An open provider socket.
pub(crate) type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Where a socket goes: the URL and the headers of its handshake
/// (credentials among them, so `Debug` shows only their names).
#[derive(Clone)]
pub(crate) struct WsTarget {
    pub(crate) url: String,
    pub(crate) headers: Vec<(&'static str, String)>,
}

impl fmt::Debug for WsTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| *name).collect();
        f.debug_struct("WsTarget")
            .field("url", &self.url)
            .field("headers", &names)
            .finish()
    }
}

/// Opens a socket to `target`, retrying a handshake refused with 429 or
/// 5xx as `connection` says.
pub(crate) async fn connect(
    target: &WsTarget,
    connection: &Connection,
    provider: &str,
) -> Result<WsStream, ServiceError> {
    retrying(&connection.retry, provider, || {
        connect_once(target, connection.response_timeout)
    })
    .await
}

async fn connect_once(target: &WsTarget, timeout: Duration) -> Result<WsStream, ServiceError> {
    install_crypto_provider();
    let mut request = target.url.as_str().into_client_request()?;
    for (name, value) in &target.headers {
        let value = HeaderValue::from_str(value).map_err(|_| {
            ServiceError::Connect(format!(
                "the `{name}` header has characters a header cannot carry"
            ))
        })?;
        request
            .headers_mut()
            .insert(HeaderName::from_static(name), value);
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_PROVIDER_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_PROVIDER_MESSAGE_BYTES));
    let connecting = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    match tokio::time::timeout(timeout, connecting).await {
        Err(_) => Err(ServiceError::Timeout {
            waiting_for: "connection",
            after: timeout,
        }),
        Ok(Ok((stream, _response))) => Ok(stream),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            // Deepgram puts its reason in a `dg-error` header as well.
            let message = match response.body() {
                Some(body) if !body.is_empty() => error_message(body),
                _ => response
                    .headers()
                    .get("dg-error")
                    .and_then(|v| v.to_str().ok())
                    .map_or_else(|| "the handshake was refused".to_owned(), error_message_str),
            };
            Err(ServiceError::Status {
                status: response.status().as_u16(),
                message,
                retry_after,
            })
        }
        Ok(Err(tokio_tungstenite::tungstenite::Error::Io(error))) => {
            Err(ServiceError::Connect(error.to_string()))
        }
        Ok(Err(error)) => Err(error.into()),
    }
}

/// Sends `message` on `socket`, giving up after `timeout`.
///
/// A provider that stops reading fills the TCP window, and a plain send
/// would then wait for ever, holding up everything queued behind it and
/// the end of the session. After `timeout` without progress the send fails
/// and the caller drops the socket as lost (a send cut short leaves it
/// unusable).
pub(crate) async fn send_within(
    socket: &mut WsStream,
    message: Message,
    timeout: Duration,
) -> Result<(), ServiceError> {
    within(timeout, socket.send(message)).await
}

/// Hands `message` to `socket`, queued to be written but not yet flushed
/// (see [`flush_before`]), giving up at `deadline` as [`send_within`]
/// does after its timeout; a failure says it waited `bound`. A deadline,
/// not a timeout: a caller cut short and called again keeps the deadline
/// of the write that stalled, instead of starting the wait over.
///
/// # Cancel safety
/// Cancel safe: the socket takes the message in the same poll that
/// completes this, so a call cancelled before then took nothing.
pub(crate) async fn feed_before(
    socket: &mut WsStream,
    message: Message,
    deadline: tokio::time::Instant,
    bound: Duration,
) -> Result<(), ServiceError> {
    before(deadline, bound, socket.feed(message)).await
}

/// Writes out what `socket` has queued, giving up at `deadline` as
/// [`feed_before`] does.
///
/// # Cancel safety
/// Cancel safe: what is not yet written stays queued for the next flush.
pub(crate) async fn flush_before(
    socket: &mut WsStream,
    deadline: tokio::time::Instant,
    bound: Duration,
) -> Result<(), ServiceError> {
    before(deadline, bound, socket.flush()).await
}

async fn within<E: Into<ServiceError>>(
    timeout: Duration,
    writing: impl Future<Output = Result<(), E>>,
) -> Result<(), ServiceError> {
    before(tokio::time::Instant::now() + timeout, timeout, writing).await
}

async fn before<E: Into<ServiceError>>(
    deadline: tokio::time::Instant,
    bound: Duration,
    writing: impl Future<Output = Result<(), E>>,
) -> Result<(), ServiceError> {
    match tokio::time::timeout_at(deadline, writing).await {
        Ok(written) => written.map_err(Into::into),
        Err(_) => Err(ServiceError::Timeout {
            waiting_for: "progress sending",
            after: bound,
        }),
    }
}

/// What reading a provider socket gave.
#[derive(Debug)]
pub(crate) enum SocketRead {
    /// A text message.
    Text(Utf8Bytes),
    /// The provider closed the socket with a close frame.
    Closed { code: Option<u16>, reason: String },
    /// The socket failed, or ended without a close frame.
    Lost(ServiceError),
    /// Binary, ping or pong: nothing a provider protocol here acts on.
    Other,
}

/// Reads the next message of `socket`, dropping the socket when that was
/// its last; pending for ever while there is none, so that a `select!` can
/// wait on it beside other work.
///
/// # Cancel safety
/// Cancel safe.
pub(crate) async fn next_read(socket: &mut Option<WsStream>) -> SocketRead {
    let Some(open) = socket.as_mut() else {
        return std::future::pending().await;
    };
    let read = match open.next().await {
        Some(Ok(Message::Text(text))) => return SocketRead::Text(text),
        Some(Ok(Message::Close(frame))) => {
            let (code, reason) = frame.map_or((None, String::new()), |f| {
                (Some(u16::from(f.code)), f.reason.to_string())
            });
            SocketRead::Closed { code, reason }
        }
        Some(Ok(_)) => return SocketRead::Other,
        Some(Err(error)) => SocketRead::Lost(error.into()),
        None => SocketRead::Lost(ServiceError::Closed {
            code: None,
            reason: String::new(),
        }),
    };
    *socket = None;
    read
}

fn error_message_str(text: &str) -> String {
    error_message(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;
    use tokio_tungstenite::MaybeTlsStream;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_send_to_a_provider_that_stops_reading_gives_up() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            // Shakes hands, then never reads again.
            let socket = tokio_tungstenite::accept_async(tcp).await.unwrap();
            std::future::pending::<()>().await;
            drop(socket);
        });
        let tcp = TcpStream::connect(url.trim_start_matches("ws://").trim_end_matches('/'))
            .await
            .unwrap();
        let (mut socket, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp))
            .await
            .unwrap();
        let chunk = bytes::Bytes::from(vec![0u8; 1 << 20]);
        let timeout = Duration::from_secs(5);
        let mut sent = 0;
        let error = loop {
            match send_within(&mut socket, Message::Binary(chunk.clone()), timeout).await {
                Ok(()) => sent += 1,
                Err(error) => break error,
            }
            assert!(sent < 1024, "a GiB went into a socket nobody reads");
        };
        assert!(matches!(error, ServiceError::Timeout { after, .. } if after == timeout));
        server.abort();
    }
}
