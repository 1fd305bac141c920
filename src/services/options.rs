//! `connection = { ... }`: timeouts and retries, the same keys for every
//! service.

use std::time::Duration;

use serde::Deserialize;

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
    /// WebSocket), in seconds. Default 10.
    pub response_timeout_secs: f64,
    /// The longest silence while a response streams, in seconds. Default 15.
    pub read_timeout_secs: f64,
    /// Retries of a request refused with 429 or 5xx before any output.
    /// Default 2.
    pub max_retries: u32,
    /// The first backoff, in seconds; it doubles per retry. Default 0.25.
    pub retry_initial_secs: f64,
    /// The longest backoff, in seconds. Default 4.
    pub retry_max_secs: f64,
    /// A `Retry-After` longer than this fails the request instead of
    /// waiting, in seconds. Default 10.
    pub max_retry_after_secs: f64,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        ConnectionOptions {
            response_timeout_secs: 10.0,
            read_timeout_secs: 15.0,
            max_retries: 2,
            retry_initial_secs: 0.25,
            retry_max_secs: 4.0,
            max_retry_after_secs: 10.0,
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
        // The defaults are in range by construction.
        ConnectionOptions::default()
            .resolve()
            .unwrap_or(Connection {
                response_timeout: Duration::from_secs(10),
                read_timeout: Duration::from_secs(15),
                retry: RetryPolicy::default(),
            })
    }
}

impl ConnectionOptions {
    /// Checks the values and converts them.
    pub fn resolve(&self) -> Result<Connection, BuildError> {
        let secs = |name: &str, value: f64, max: f64| {
            if value.is_finite() && value > 0.0 && value <= max {
                Ok(Duration::from_secs_f64(value))
            } else {
                Err(BuildError::Invalid(format!(
                    "connection.{name} must be above 0 and at most {max}, not {value}"
                )))
            }
        };
        if self.max_retries > 10 {
            return Err(BuildError::Invalid(format!(
                "connection.max_retries must be at most 10, not {}",
                self.max_retries
            )));
        }
        Ok(Connection {
            response_timeout: secs("response_timeout_secs", self.response_timeout_secs, 300.0)?,
            read_timeout: secs("read_timeout_secs", self.read_timeout_secs, 300.0)?,
            retry: RetryPolicy {
                max_retries: self.max_retries,
                initial: secs("retry_initial_secs", self.retry_initial_secs, 60.0)?,
                max: secs("retry_max_secs", self.retry_max_secs, 300.0)?,
                max_retry_after: secs("max_retry_after_secs", self.max_retry_after_secs, 3600.0)?,
            },
        })
    }
}
