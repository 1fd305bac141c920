//! `[server]`: how `voxpipe serve` takes sessions.
//!
//! ```toml
//! [server]
//! max_sessions = 200            # concurrent sessions; more are refused
//! max_message_bytes = 65536     # largest WebSocket message accepted
//! idle_timeout_secs = 10        # a stream silent this long is over
//! shutdown_deadline_secs = 30   # on SIGTERM, calls may go on this long...
//! shutdown_grace_secs = 5       # ...then are ended, and cancelled after this
//! public_host = "voice.example.com"  # the host Twilio reaches us at
//! ```
//!
//! Every key is optional. A file run (`voxpipe run`) ignores the section.

use std::num::NonZeroUsize;

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
    /// The host (and port, if not 443) that callers' providers reach this
    /// server at, e.g. `voice.example.com`. Without it, the host comes from
    /// each request's `X-Forwarded-Host` or `Host` header.
    pub public_host: Option<PublicHost>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            max_sessions: NonZeroUsize::new(200).unwrap_or(NonZeroUsize::MIN),
            max_message_bytes: MessageBytes::default(),
            idle_timeout_secs: Seconds::from_millis(10_000),
            shutdown_deadline_secs: Seconds::from_millis(30_000),
            shutdown_grace_secs: Seconds::from_millis(5_000),
            public_host: None,
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
    fn a_scheme_is_refused_with_a_hint() {
        let err = PublicHost::try_from("https://voice.example.com".to_owned()).unwrap_err();
        assert!(err.contains("`voice.example.com`"), "{err}");
    }
}
