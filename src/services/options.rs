//! `connection = { ... }`: timeouts and retries, the same keys for every
//! service.

use std::time::Duration;

use serde::Deserialize;

use crate::config::Seconds;
use crate::pipeline::BuildError;

use super::retry::RetryPolicy;

/// How a service talks to its provider, from the optional `connection`
/// table of its TOML:
///
/// ```toml
/// connection = { response_timeout_secs = 10, read_timeout_secs = 10, max_retries = 2 }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionOptions {
    /// Connecting and getting the response headers (or opening the
    /// WebSocket), in seconds (above 0, at most 300). Default 10.
    pub response_timeout_secs: Seconds<1, 300>,
    /// The longest silence while a response streams, in seconds (above 0,
    /// at most 300). Default 15. For an LLM's event stream it is the
    /// longest wait for an event once the answer's content has begun:
    /// keep-alive comments are not progress then (before it, they hold the
    /// wait open for up to 120 s, as a model thinks).
    pub read_timeout_secs: Seconds<1, 300>,
    /// Retries of a request refused with 429 or 5xx before any output
    /// (and, for an LLM, of a stream that fails before its content: an
    /// error event, a reset connection), both counted against this one
    /// bound: at most `max_retries + 1` requests. Default 2.
    pub max_retries: u32,
    /// The first backoff, in seconds (above 0, at most 60); it doubles per
    /// retry. Default 0.25.
    pub retry_initial_secs: Seconds<1, 60>,
    /// The longest backoff, in seconds (above 0, at most 300). Default 4.
    pub retry_max_secs: Seconds<1, 300>,
    /// A `Retry-After` longer than this fails the request instead of
    /// waiting, in seconds (above 0, at most 3600). Default 10.
    pub max_retry_after_secs: Seconds<1, 3600>,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        ConnectionOptions {
            response_timeout_secs: Seconds::from_millis(10_000),
            read_timeout_secs: Seconds::from_millis(15_000),
            max_retries: 2,
            retry_initial_secs: Seconds::from_millis(250),
            retry_max_secs: Seconds::from_millis(4_000),
            max_retry_after_secs: Seconds::from_millis(10_000),
        }
    }
}

/// [`ConnectionOptions`], checked and in the units the code uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Connection {
    /// Until response headers or an open socket.
    pub response_timeout: Duration,
    /// Between two pieces of a streamed response.
    pub read_timeout: Duration,
    /// Retries.
    pub retry: RetryPolicy,
}

impl Default for Connection {
    fn default() -> Self {
        ConnectionOptions::default().connection()
    }
}

impl ConnectionOptions {
    /// The values in the units the code uses (the durations were checked
    /// when the file was read).
    fn connection(&self) -> Connection {
        Connection {
            response_timeout: self.response_timeout_secs.duration(),
            read_timeout: self.read_timeout_secs.duration(),
            retry: RetryPolicy {
                max_retries: self.max_retries,
                initial: self.retry_initial_secs.duration(),
                max: self.retry_max_secs.duration(),
                max_retry_after: self.max_retry_after_secs.duration(),
            },
        }
    }

    /// Checks the values and converts them.
    pub fn resolve(&self) -> Result<Connection, BuildError> {
        if self.max_retries > 10 {
            return Err(BuildError::Invalid(format!(
                "connection.max_retries must be at most 10, not {}",
                self.max_retries
            )));
        }
        Ok(self.connection())
    }
}
