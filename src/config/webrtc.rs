//! `[transport.webrtc]`: how browser sessions connect.
//!
//! ```toml
//! [transport.webrtc]
//! # STUN finds the server's public address behind a NAT; TURN relays
//! # media when no direct path exists. Secrets come from the environment.
//! ice_servers = [
//!   { urls = ["stun:stun.l.google.com:19302"] },
//!   { urls = ["turn:turn.example.com:3478"], username = "voxpipe", credential_env = "TURN_CREDENTIAL" },
//!   # A TURN server sharing a secret with us (coturn's `use-auth-secret`):
//!   # each client is given its own credentials, valid for `credential_ttl_secs`
//!   # (TURN REST API: the user name is `expiry:username`, the credential
//!   # its HMAC-SHA1 under the secret).
//!   { urls = ["turns:turn.example.com:5349"], username = "voxpipe", secret_env = "TURN_SECRET", credential_ttl_secs = 3600 },
//! ]
//! # Local UDP addresses to gather host candidates on. Default: every
//! # interface (`0.0.0.0:0`) plus loopback, so a browser on the same
//! # machine connects too. A port of 0 picks a fresh port per call.
//! udp_addrs = ["0.0.0.0:0", "127.0.0.1:0"]
//! # Behind a 1:1 NAT (a cloud VM), advertise these public addresses.
//! public_ips = ["203.0.113.7"]
//! # The most an answer waits for the server's candidates (STUN, TURN).
//! gather_timeout_ms = 2000
//! # A call whose browser sends nothing (audio, data channel) this long
//! # ends. Longer than a Twilio stream's: a browser that lost its network
//! # takes about ten seconds to restart its connection.
//! idle_timeout_secs = 30
//! # mDNS (RFC 6762 `.local` candidates) needs a multicast route. "auto"
//! # resolves browsers' `.local` candidates where the host can multicast
//! # and goes without where it cannot; "query" insists; "off" never tries.
//! mdns = "auto"
//! ```
//!
//! Every key is optional. A file run (`voxpipe run`) ignores the section.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

use super::seconds::Seconds;

/// `[transport.webrtc]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebRtcSection {
    /// STUN and TURN servers offered to ICE.
    #[serde(default)]
    pub ice_servers: Vec<IceServerConfig>,
    /// Local UDP addresses to bind, one socket each; a wildcard address
    /// stands for every non-loopback interface.
    #[serde(default = "default_udp_addrs")]
    pub udp_addrs: Vec<SocketAddr>,
    /// Public addresses to advertise instead of the host ones (1:1 NAT).
    #[serde(default)]
    pub public_ips: Vec<IpAddr>,
    /// The most an answer waits for candidate gathering to complete.
    #[serde(default = "default_gather_timeout")]
    pub gather_timeout_ms: GatherTimeout,
    /// A call that receives nothing usable (audio that decodes, a
    /// data-channel message that parses) for this long ends, in seconds (1
    /// to 86400).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: Seconds<1000>,
    /// Whether connections use multicast DNS.
    #[serde(default)]
    pub mdns: MdnsMode,
}

/// `mdns`: whether connections resolve the browser's mDNS (`.local`)
/// candidates, which takes a multicast socket on port 5353. The server's
/// own candidates are always plain addresses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MdnsMode {
    /// Resolve `.local` candidates while the host can multicast; once a
    /// connection cannot open its multicast socket (a container or a
    /// network namespace with no multicast route), go on without, for
    /// that connection and every later one.
    #[default]
    Auto,
    /// Always resolve `.local` candidates; a host that cannot multicast
    /// cannot answer offers (500).
    Query,
    /// Never use multicast: `.local` candidates are ignored, and the
    /// browser's other candidates (host, srflx, relay) are used.
    Off,
}

impl Default for WebRtcSection {
    fn default() -> Self {
        WebRtcSection {
            ice_servers: Vec::new(),
            udp_addrs: default_udp_addrs(),
            public_ips: Vec::new(),
            gather_timeout_ms: default_gather_timeout(),
            idle_timeout_secs: default_idle_timeout(),
            mdns: MdnsMode::default(),
        }
    }
}

fn default_udp_addrs() -> Vec<SocketAddr> {
    vec![
        SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    ]
}

fn default_gather_timeout() -> GatherTimeout {
    GatherTimeout(Duration::from_secs(2))
}

fn default_idle_timeout() -> Seconds<1000> {
    Seconds::from_millis(30_000)
}

/// How long an answer may wait for candidates: 1 ms to 30 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u64")]
pub struct GatherTimeout(Duration);

impl GatherTimeout {
    /// The timeout.
    pub fn duration(self) -> Duration {
        self.0
    }
}

impl TryFrom<u64> for GatherTimeout {
    type Error = String;

    fn try_from(ms: u64) -> Result<Self, Self::Error> {
        if (1..=30_000).contains(&ms) {
            Ok(GatherTimeout(Duration::from_millis(ms)))
        } else {
            Err(format!(
                "gather_timeout_ms must be between 1 and 30000, not {ms}"
            ))
        }
    }
}

/// One `ice_servers` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceServerConfig {
    /// `stun:`, `stuns:`, `turn:` or `turns:` URLs of one server.
    pub urls: Vec<IceUrl>,
    /// The TURN user name.
    #[serde(default)]
    pub username: Option<String>,
    /// The environment variable holding the TURN credential.
    #[serde(default)]
    pub credential_env: Option<String>,
    /// The environment variable holding a secret shared with the TURN
    /// server, from which time-limited credentials are made (instead of
    /// `credential_env`).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// How long credentials made from `secret_env` are valid: 1 minute to
    /// a day, one hour by default.
    #[serde(default = "default_credential_ttl")]
    pub credential_ttl_secs: Seconds<60_000>,
}

impl IceServerConfig {
    /// Whether the entry's credential keys fit its servers, whatever the
    /// environment holds: a TURN server needs `username` and one of
    /// `credential_env` or `secret_env`, and no entry may set both.
    pub fn credentials_fit(&self) -> bool {
        let is_turn = self.urls.iter().any(IceUrl::is_turn);
        match (&self.username, &self.credential_env, &self.secret_env) {
            (_, Some(_), Some(_)) => false,
            (Some(_), Some(_), None) | (Some(_), None, Some(_)) => true,
            _ => !is_turn,
        }
    }
}

fn default_credential_ttl() -> Seconds<60_000> {
    Seconds::from_millis(3_600_000)
}

/// A STUN or TURN URL (RFC 7064, RFC 7065), checked for its scheme.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct IceUrl(String);

impl IceUrl {
    /// The URL as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether it names a TURN server (which needs credentials).
    pub fn is_turn(&self) -> bool {
        self.0.starts_with("turn:") || self.0.starts_with("turns:")
    }
}

impl fmt::Debug for IceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl TryFrom<String> for IceUrl {
    type Error = String;

    fn try_from(url: String) -> Result<Self, Self::Error> {
        let host = ["stun:", "stuns:", "turn:", "turns:"]
            .iter()
            .find_map(|scheme| url.strip_prefix(scheme));
        match host {
            Some(rest) if !rest.is_empty() && !rest.contains(char::is_whitespace) => {
                Ok(IceUrl(url))
            }
            Some(_) => Err(format!("`{url}` names no host")),
            None => Err(format!(
                "`{url}` is not a STUN or TURN URL (stun:, stuns:, turn: or turns:)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_need_a_known_scheme_and_a_host() {
        assert!(IceUrl::try_from("stun:stun.example.com:3478".to_owned()).is_ok());
        let turn = IceUrl::try_from("turns:t.example.com?transport=tcp".to_owned()).unwrap();
        assert!(turn.is_turn());
        assert!(IceUrl::try_from("http://example.com".to_owned()).is_err());
        assert!(IceUrl::try_from("stun:".to_owned()).is_err());
    }

    #[test]
    fn defaults_bind_every_interface_and_loopback() {
        let section = WebRtcSection::default();
        assert!(section.udp_addrs.iter().any(|a| a.ip().is_loopback()));
        assert!(section.udp_addrs.iter().any(|a| a.ip().is_unspecified()));
        assert_eq!(section.gather_timeout_ms.duration(), Duration::from_secs(2));
    }
}
