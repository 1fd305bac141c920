//! [`WebRtcSettings`]: `[transport.webrtc]` with its secrets resolved, as
//! every connection of a server uses it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use rtc::ice::mdns::MulticastDnsMode;
use webrtc::peer_connection::{RTCIceCandidateType, SettingEngine, SettingEngineBuilder};

use crate::config::{MdnsMode, WebRtcSection};
use crate::pipeline::EnvSource;

use super::ice_servers::{IceServers, SettingsError};

/// How long ICE may see nothing from the browser before the connection is
/// `disconnected`, and then before it is `failed` (which ends the call).
const ICE_DISCONNECTED_AFTER: Duration = Duration::from_secs(5);
const ICE_FAILED_AFTER: Duration = Duration::from_secs(10);

/// Everything a connection needs from the server's configuration.
#[derive(Debug, Clone)]
pub struct WebRtcSettings {
    pub(crate) ice_servers: Arc<IceServers>,
    pub(crate) udp_addrs: Vec<SocketAddr>,
    pub(crate) public_ips: Vec<String>,
    pub(crate) gather_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    mdns: MdnsMode,
    /// Set once a connection could not open its multicast socket (`auto`).
    multicast_failed: Arc<AtomicBool>,
}

impl WebRtcSettings {
    /// Resolves `section`, reading TURN credentials from `env`.
    ///
    /// # Errors
    /// A TURN server without credentials, or a credential variable not set.
    pub fn from_config(section: &WebRtcSection, env: &EnvSource) -> Result<Self, SettingsError> {
        Ok(WebRtcSettings {
            ice_servers: Arc::new(IceServers::from_config(&section.ice_servers, env)?),
            udp_addrs: section.udp_addrs.clone(),
            public_ips: section.public_ips.iter().map(ToString::to_string).collect(),
            gather_timeout: section.gather_timeout_ms.duration(),
            idle_timeout: section.idle_timeout_secs.duration(),
            mdns: section.mdns,
            multicast_failed: Arc::default(),
        })
    }

    /// Settings for a browser on this machine: loopback only, no ICE
    /// servers, the section's defaults otherwise (tests, benchmarks).
    pub fn loopback() -> Self {
        let section = WebRtcSection::default();
        WebRtcSettings {
            ice_servers: Arc::default(),
            udp_addrs: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            public_ips: Vec::new(),
            gather_timeout: section.gather_timeout_ms.duration(),
            idle_timeout: section.idle_timeout_secs.duration(),
            mdns: section.mdns,
            multicast_failed: Arc::default(),
        }
    }

    /// The STUN and TURN servers, for clients too.
    pub fn ice_servers(&self) -> &IceServers {
        &self.ice_servers
    }

    /// The servers for a connection made now.
    pub(crate) fn rtc_ice_servers(&self) -> Vec<webrtc::peer_connection::RTCIceServer> {
        self.ice_servers.rtc_at(SystemTime::now())
    }

    /// Whether the next connection should try multicast DNS.
    pub(crate) fn mdns_wanted(&self) -> bool {
        match self.mdns {
            MdnsMode::Query => true,
            MdnsMode::Off => false,
            MdnsMode::Auto => !self.multicast_failed.load(Ordering::Relaxed),
        }
    }

    /// Whether a connection that failed with mDNS may be tried again
    /// without it.
    pub(crate) fn mdns_optional(&self) -> bool {
        self.mdns == MdnsMode::Auto
    }

    /// A connection could not be made with mDNS but could without: later
    /// ones go without at once.
    pub(crate) fn multicast_unavailable(&self) {
        if !self.multicast_failed.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "no multicast here: connections go on without mDNS (browsers' `.local` candidates are ignored)"
            );
        }
    }

    /// A call whose browser sends nothing (no audio, no data channel
    /// message) for this long ends.
    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// The setting engine of a connection, with or without mDNS (which
    /// opens a multicast socket on port 5353).
    pub(crate) fn setting_engine(&self, mdns: bool) -> SettingEngine {
        let mode = if mdns {
            MulticastDnsMode::QueryOnly
        } else {
            MulticastDnsMode::Disabled
        };
        let mut builder = SettingEngineBuilder::new()
            .with_ice_timeouts(Some(ICE_DISCONNECTED_AFTER), Some(ICE_FAILED_AFTER), None)
            .with_multicast_dns_mode(mode);
        if !self.public_ips.is_empty() {
            builder = builder.with_nat_1to1_ips(self.public_ips.clone(), RTCIceCandidateType::Host);
        }
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_mdns_stops_trying_once_multicast_failed() {
        let settings = WebRtcSettings::loopback();
        assert!(settings.mdns_optional());
        assert!(settings.mdns_wanted());
        settings.clone().multicast_unavailable();
        assert!(!settings.mdns_wanted(), "clones share what was learnt");
        let off = WebRtcSettings {
            mdns: MdnsMode::Off,
            ..WebRtcSettings::loopback()
        };
        assert!(!off.mdns_wanted() && !off.mdns_optional());
    }
}
