//! Opening a provider's WebSocket: one place for the handshake, its
//! timeout, its retries and its errors (a refused handshake is an HTTP
//! status with the provider's message, like any HTTP error).

use std::fmt;
use std::time::{Duration, SystemTime};

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::HeaderName;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::error::{ServiceError, error_message};
use super::http::install_crypto_provider;
use super::options::Connection;
use super::retry::{parse_retry_after, retrying};

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
    let connecting = tokio_tungstenite::connect_async_with_config(request, None, true);
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

fn error_message_str(text: &str) -> String {
    error_message(text.as_bytes())
}
