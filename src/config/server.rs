//! `[server]`: how `voxpipe serve` takes sessions.
//!
//! ```toml
//! [server]
//! max_sessions = 200            # concurrent sessions; more are refused
//! max_message_bytes = 65536     # largest WebSocket message accepted
//! idle_timeout_secs = 10        # a stream silent this long is over
//! shutdown_deadline_secs = 30   # on SIGTERM, calls may go on this long...
//! shutdown_grace_secs = 5       # ...then are ended, and cancelled after this
//! max_connections = 10000       # open connections (capped by the open-file limit)
//! http_idle_timeout_secs = 30   # a connection that sends no byte this long is closed
//! http_header_timeout_secs = 10 # a request's headers must arrive within this (keep-alives too)
//! http_body_timeout_secs = 30   # a request's body must arrive within this
//! public_host = "voice.example.com"  # the host Twilio reaches us at
//!
//! # Browser pages on other origins that may call (CORS). Default: none,
//! # same-origin only: an open offer endpoint lets any site spend your
//! # provider keys. "*" allows every origin.
//! cors_origins = ["https://app.example.com"]
//! # Offers, /start and /api/ice-config per client address: a token bucket
//! # refilled at this rate (0: no limit) holding up to `rate_limit_burst`.
//! rate_limit_per_minute = 30
//! rate_limit_burst = 10
//! rate_limit_addresses = 10000  # addresses remembered at most
//! # When set, /start, /api/ice-config and /api/offer need
//! # `Authorization: Bearer <the variable's value>` (server to server).
//! start_token_env = "VOXPIPE_START_TOKEN"
//! # Signs the session ids /start hands out (default: random per process).
//! session_key_env = "VOXPIPE_SESSION_KEY"
//! session_ttl_secs = 60   # a session from /start must send its offer by then
//! # The management API (/api/calls, /api/campaigns, /api/analytics) needs
//! # `Authorization: Bearer <the variable's value>`; without a key it is off,
//! # unless `api_open = true` (local development only).
//! api_token_env = "VOXPIPE_API_TOKEN"
//! api_open = false
//! # Behind a load balancer: this process's id, put in front of the session
//! # ids /start hands out (`s1-<32 hex>.<expires>.<tag>`), so a proxy routes
//! # a session's follow-up requests to the process that holds it.
//! server_id = "s1"
//! ```
//!
//! Every key is optional. A file run (`voxpipe run`) ignores the section.

use std::num::{NonZeroU32, NonZeroUsize};

use serde::Deserialize;

use super::seconds::Seconds;

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// The most sessions (calls) at once; a call over the limit gets a busy
    /// signal (TwiML `<Reject reason="busy">`) or a 503 on the WebSocket
    /// upgrade.
    pub max_sessions: NonZeroUsize,
    /// The largest WebSocket message accepted; a larger one ends its session
    /// (cleanly: its turns are kept).
    pub max_message_bytes: MessageBytes,
    /// A stream that sends nothing for this long is over (Twilio sends audio
    /// every 20 ms for as long as a call lasts, silence included).
    pub idle_timeout_secs: Seconds<1>,
    /// On SIGTERM or ctrl-c, how long calls may go on before they are ended.
    pub shutdown_deadline_secs: Seconds<1>,
    /// After calls are ended at the deadline, how long they may take to
    /// drain (finish their turns) before they are cancelled.
    pub shutdown_grace_secs: Seconds<1>,
    /// The most client connections at once (never more than the open-file
    /// limit allows, less a reserve); at the cap a new connection closes
    /// the one idle longest.
    pub max_connections: NonZeroUsize,
    /// A connection that sends no byte for this long is closed: half-sent
    /// headers or bodies, idle keep-alives, quiet WebSockets.
    pub http_idle_timeout_secs: Seconds<1>,
    /// A request's headers must be complete this long after the server
    /// starts waiting for them (the connection opened, or the previous
    /// response went out), or the connection is closed: a client dripping
    /// its headers a byte at a time never counts as idle. Idle keep-alive
    /// connections are closed after this long too.
    pub http_header_timeout_secs: Seconds<1>,
    /// A request's body must be received in full this long after the
    /// request started, or the request fails (400) and the connection is
    /// closed.
    pub http_body_timeout_secs: Seconds<1>,
    /// The host (and port, if not 443) that callers' providers reach this
    /// server at, e.g. `voice.example.com`. Without it, the host comes from
    /// each request's `X-Forwarded-Host` or `Host` header.
    pub public_host: Option<PublicHost>,
    /// Origins of pages on other sites allowed to call the server (CORS),
    /// or `"*"` for every origin. None by default: same-origin only.
    pub cors_origins: Vec<CorsOrigin>,
    /// Offers, `/start` and `/api/ice-config` allowed per client address
    /// and minute, on average; 0 for no limit.
    pub rate_limit_per_minute: u32,
    /// How many of those may come at once.
    pub rate_limit_burst: NonZeroU32,
    /// The most client addresses the limiter remembers (its memory bound).
    pub rate_limit_addresses: NonZeroUsize,
    /// The environment variable holding the bearer key `/start`,
    /// `/api/ice-config` and `/api/offer` then require.
    pub start_token_env: Option<String>,
    /// The environment variable holding the key that signs session ids
    /// (shared by the processes behind one load balancer); random per
    /// process when unset.
    pub session_key_env: Option<String>,
    /// How long a session made by `/start` waits for its first offer.
    pub session_ttl_secs: Seconds<1>,
    /// The environment variable holding the bearer key of the management
    /// API (`/api/calls`, `/api/campaigns`, `/api/analytics`).
    pub api_token_env: Option<String>,
    /// Opens the management API without a key: for local development only.
    pub api_open: bool,
    /// This process's id among those behind one load balancer, in front of
    /// every WebRTC session id it hands out.
    pub server_id: Option<ServerId>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            max_sessions: NonZeroUsize::new(200).unwrap_or(NonZeroUsize::MIN),
            max_message_bytes: MessageBytes::default(),
            idle_timeout_secs: Seconds::from_millis(10_000),
            shutdown_deadline_secs: Seconds::from_millis(30_000),
            shutdown_grace_secs: Seconds::from_millis(5_000),
            max_connections: NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN),
            http_idle_timeout_secs: Seconds::from_millis(30_000),
            http_header_timeout_secs: Seconds::from_millis(10_000),
            http_body_timeout_secs: Seconds::from_millis(30_000),
            public_host: None,
            cors_origins: Vec::new(),
            rate_limit_per_minute: 30,
            rate_limit_burst: NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN),
            rate_limit_addresses: NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN),
            start_token_env: None,
            session_key_env: None,
            session_ttl_secs: Seconds::from_millis(60_000),
            api_token_env: None,
            api_open: false,
            server_id: None,
        }
    }
}

/// A server's id in session ids: 1 to 32 ASCII letters and digits (no `-`:
/// it ends the id in `{server_id}-{session}`, where a proxy's pattern
/// stops).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ServerId(String);

impl ServerId {
    /// The id as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ServerId {
    type Error = String;

    fn try_from(id: String) -> Result<Self, Self::Error> {
        if (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(ServerId(id))
        } else {
            Err(format!(
                "`{id}` is not a server id: write 1 to 32 ASCII letters and digits, e.g. `s1`"
            ))
        }
    }
}

/// A WebSocket message size limit: 1 KiB to 16 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u64")]
pub struct MessageBytes(usize);

impl MessageBytes {
    /// In bytes.
    pub fn bytes(self) -> usize {
        self.0
    }
}

impl Default for MessageBytes {
    fn default() -> Self {
        MessageBytes(64 * 1024)
    }
}

impl TryFrom<u64> for MessageBytes {
    type Error = String;

    fn try_from(bytes: u64) -> Result<Self, Self::Error> {
        const RANGE: std::ops::RangeInclusive<u64> = 1024..=16 * 1024 * 1024;
        match usize::try_from(bytes) {
            Ok(n) if RANGE.contains(&bytes) => Ok(MessageBytes(n)),
            _ => Err(format!(
                "expected a size from 1024 to 16777216 bytes, not {bytes}"
            )),
        }
    }
}

/// An origin allowed to call from a page on another site: `*`, or
/// `scheme://host[:port]` exactly as a browser sends it in `Origin` (no
/// path, no trailing slash).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct CorsOrigin(String);

impl CorsOrigin {
    /// The origin as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether it is `*`.
    pub fn is_any(&self) -> bool {
        self.0 == "*"
    }
}

impl TryFrom<String> for CorsOrigin {
    type Error = String;

    fn try_from(origin: String) -> Result<Self, Self::Error> {
        if origin == "*" {
            return Ok(CorsOrigin(origin));
        }
        let host = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        match host {
            Some(host) if is_url_host(host) => Ok(CorsOrigin(origin)),
            _ => Err(format!(
                "`{origin}` is not an origin: write `https://host[:port]` (no path, no trailing slash) or `*`"
            )),
        }
    }
}

/// A host name or address with an optional port, as it appears in a URL:
/// `voice.example.com`, `voice.example.com:8443`, `[2001:db8::1]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PublicHost(String);

impl PublicHost {
    /// The host as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PublicHost {
    type Error = String;

    fn try_from(host: String) -> Result<Self, Self::Error> {
        if host.contains("://") {
            return Err(format!(
                "write the host only, without a scheme: `{}`",
                host.split("://").nth(1).unwrap_or_default()
            ));
        }
        if is_url_host(&host) {
            Ok(PublicHost(host))
        } else {
            Err(format!(
                "`{host}` is not a host name with an optional port (no path, no spaces)"
            ))
        }
    }
}

/// True for `name`, `name:port`, `[v6]` and `[v6]:port` made of the
/// characters a URL authority allows (no user info, no path).
pub(crate) fn is_url_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(':') && !port.contains(']') => (name, Some(port)),
        _ => (host, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok());
    let name_ok = if let Some(v6) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        !v6.is_empty()
            && v6
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
    } else {
        !name.is_empty()
            && name.len() <= 253
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    };
    port_ok && name_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ids_are_short_letters_and_digits() {
        assert_eq!(ServerId::try_from("s1".to_owned()).unwrap().as_str(), "s1");
        for bad in ["", "s-1", "s.1", "ü", &"x".repeat(33)] {
            let err = ServerId::try_from(bad.to_owned()).unwrap_err();
            assert!(err.contains("not a server id"), "{err}");
        }
    }

    #[test]
    fn hosts_are_names_or_addresses_with_an_optional_port() {
        for good in [
            "voice.example.com",
            "voice.example.com:8443",
            "127.0.0.1:8080",
            "[2001:db8::1]",
            "[2001:db8::1]:443",
            "abc123.ngrok-free.app",
        ] {
            assert!(is_url_host(good), "{good}");
        }
        for bad in [
            "",
            "voice.example.com/path",
            "a b",
            "host:port",
            "host:99999",
            "user@host",
            "host:",
            "[::1",
            "x\"><Evil/>",
        ] {
            assert!(!is_url_host(bad), "{bad}");
        }
    }

    #[test]
    fn origins_are_a_scheme_and_a_host_or_a_star() {
        for good in ["*", "https://app.example.com", "http://127.0.0.1:5173"] {
            assert!(CorsOrigin::try_from(good.to_owned()).is_ok(), "{good}");
        }
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "ftp://x",
            "https://a b",
        ] {
            assert!(CorsOrigin::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_scheme_is_refused_with_a_hint() {
        let err = PublicHost::try_from("https://voice.example.com".to_owned()).unwrap_err();
        assert!(err.contains("`voice.example.com`"), "{err}");
    }
}
