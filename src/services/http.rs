//! The one HTTP client every service shares, and the request loop around
//! it: a timeout until the response headers, retries of 429 and 5xx with
//! backoff (honouring `Retry-After`), errors read from the provider's error
//! body, and a read timeout between the pieces of a streamed body.
//!
//! Retries of statuses happen only here, before a response is accepted; a
//! streamed body that fails before any of it was used may be asked for
//! again by its reader (the LLM's round). Once a body has started to be
//! used (spoken, shown), a failure is reported and never retried, so
//! nothing is said twice.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::error::{ServiceError, error_message};
use super::options::Connection;
use super::retry::{parse_retry_after, retrying_counted};

/// The largest error body read, in bytes.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Installs the TLS crypto provider once per process (ring).
pub(crate) fn install_crypto_provider() {
    // Fails only if a provider is already installed, which is fine.
    let _already = rustls::crypto::ring::default_provider().install_default();
}

/// The process-wide HTTP client: one connection pool for every session.
pub(crate) fn client() -> Result<&'static reqwest::Client, ServiceError> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    built_once(&CLIENT, |builder| builder)
}

/// The client in `cell`, built the first time with the shared settings and
/// what `adjust` adds.
fn built_once(
    cell: &'static OnceLock<Result<reqwest::Client, String>>,
    adjust: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
) -> Result<&'static reqwest::Client, ServiceError> {
    cell.get_or_init(|| {
        install_crypto_provider();
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true);
        adjust(builder).build().map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| ServiceError::Connect(format!("cannot set up the HTTP client: {e}")))
}

/// A client that never follows redirects, for requests whose 3xx must be
/// seen as it is: on a 301, 302 or 303 a client that follows turns a POST
/// into a body-less GET, and the landing page's 200 would pass for the
/// receiver's answer (webhook deliveries). Its own pool, built once.
pub(crate) fn client_without_redirects() -> Result<&'static reqwest::Client, ServiceError> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    built_once(&CLIENT, |builder| {
        builder.redirect(reqwest::redirect::Policy::none())
    })
}

/// Sends the request `build` makes (called again for each attempt) and
/// returns a successful response, retrying 429 and 5xx as `connection`
/// says.
pub(crate) async fn send(
    build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    connection: &Connection,
    provider: &str,
) -> Result<reqwest::Response, ServiceError> {
    send_counted(build, connection, provider, &mut 0).await
}

/// [`send`], counting its retries in `retries` with those its caller made
/// before (a stream asked again): all of them keep to one bound,
/// `max_retries`.
pub(crate) async fn send_counted(
    build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    connection: &Connection,
    provider: &str,
    retries: &mut u32,
) -> Result<reqwest::Response, ServiceError> {
    let client = client()?;
    let build = &build;
    retrying_counted(&connection.retry, provider, retries, || async move {
        match tokio::time::timeout(connection.response_timeout, build(client).send()).await {
            Err(_) => Err(ServiceError::Timeout {
                waiting_for: "response",
                after: connection.response_timeout,
            }),
            Ok(Err(error)) if error.is_connect() => {
                Err(ServiceError::Connect(super::error_chain(&error)))
            }
            Ok(Err(error)) => Err(ServiceError::Request(error)),
            Ok(Ok(response)) if response.status().is_success() => Ok(response),
            Ok(Ok(response)) => Err(status_error(response, connection).await),
        }
    })
    .await
}

/// The error an unsuccessful response stands for, with the provider's
/// message from its body.
async fn status_error(response: reqwest::Response, connection: &Connection) -> ServiceError {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while body.len() < MAX_ERROR_BODY {
        match next_chunk(&mut stream, connection.read_timeout).await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    ServiceError::Status {
        status,
        message: error_message(&body),
        retry_after,
    }
}

/// The next piece of a streamed body, waiting at most `read_timeout`;
/// `None` at its end.
///
/// # Cancel safety
/// Cancel safe: a piece not yet returned stays in the stream.
pub(crate) async fn next_chunk<S>(
    stream: &mut S,
    read_timeout: Duration,
) -> Result<Option<Bytes>, ServiceError>
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + read_timeout;
    next_chunk_before(stream, deadline, "data", read_timeout).await
}

/// The next piece of a streamed body, waiting until `deadline` at the
/// latest; `None` at its end. For a body whose pieces are not all progress
/// (an event stream's keep-alive comments): the caller moves `deadline`
/// only when something counts. A timeout says it waited `bound` for
/// `waiting_for`.
///
/// # Cancel safety
/// Cancel safe: a piece not yet returned stays in the stream.
pub(crate) async fn next_chunk_before<S>(
    stream: &mut S,
    deadline: tokio::time::Instant,
    waiting_for: &'static str,
    bound: Duration,
) -> Result<Option<Bytes>, ServiceError>
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Unpin,
{
    match tokio::time::timeout_at(deadline, stream.next()).await {
        Err(_) => Err(ServiceError::Timeout {
            waiting_for,
            after: bound,
        }),
        Ok(None) => Ok(None),
        Ok(Some(Ok(chunk))) => Ok(Some(chunk)),
        Ok(Some(Err(error))) => Err(ServiceError::Request(error)),
    }
}
