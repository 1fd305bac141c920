//! [`WebRtcSettings`]: `[transport.webrtc]` with its secrets resolved, as
//! every connection of a server uses it.

use std::net::SocketAddr;
use std::time::Duration;

use webrtc::peer_connection::{
    RTCIceCandidateType, RTCIceServer, SettingEngine, SettingEngineBuilder,
};

use crate::config::WebRtcSection;
use crate::pipeline::EnvSource;

/// How long ICE may see nothing from the browser before the connection is
/// `disconnected`, and then before it is `failed` (which ends the call).
const ICE_DISCONNECTED_AFTER: Duration = Duration::from_secs(5);
const ICE_FAILED_AFTER: Duration = Duration::from_secs(10);

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// A TURN server without a user name or credential.
    #[error(
        "transport.webrtc.ice_servers[{index}]: a TURN server needs `username` and `credential_env`"
    )]
    TurnCredentials {
        /// The entry's index.
        index: usize,
    },
    /// `credential_env` names a variable that is not set.
    #[error(
        "transport.webrtc.ice_servers[{index}].credential_env: environment variable {var} is not set"
    )]
    MissingEnv {
        /// The entry's index.
        index: usize,
        /// The variable.
        var: String,
    },
}

/// Everything a connection needs from the server's configuration.
#[derive(Debug, Clone)]
pub struct WebRtcSettings {
    pub(crate) ice_servers: Vec<RTCIceServer>,
    pub(crate) udp_addrs: Vec<SocketAddr>,
    pub(crate) public_ips: Vec<String>,
    pub(crate) gather_timeout: Duration,
    pub(crate) idle_timeout: Duration,
}

impl WebRtcSettings {
    /// Resolves `section`, reading TURN credentials from `env`.
    ///
    /// # Errors
    /// A TURN server without credentials, or a credential variable not set.
    pub fn from_config(section: &WebRtcSection, env: &EnvSource) -> Result<Self, SettingsError> {
        let mut ice_servers = Vec::with_capacity(section.ice_servers.len());
        for (index, server) in section.ice_servers.iter().enumerate() {
            let credential = match &server.credential_env {
                Some(var) => Some(lookup(env, var).ok_or_else(|| SettingsError::MissingEnv {
                    index,
                    var: var.clone(),
                })?),
                None => None,
            };
            let is_turn = server.urls.iter().any(|u| u.is_turn());
            if is_turn && (server.username.is_none() || credential.is_none()) {
                return Err(SettingsError::TurnCredentials { index });
            }
            ice_servers.push(RTCIceServer {
                urls: server.urls.iter().map(|u| u.as_str().to_owned()).collect(),
                username: server.username.clone().unwrap_or_default(),
                credential: credential.unwrap_or_default(),
            });
        }
        Ok(WebRtcSettings {
            ice_servers,
            udp_addrs: section.udp_addrs.clone(),
            public_ips: section.public_ips.iter().map(ToString::to_string).collect(),
            gather_timeout: section.gather_timeout_ms.duration(),
            idle_timeout: section.idle_timeout_secs.duration(),
        })
    }

    /// Settings for a browser on this machine: loopback only, no ICE
    /// servers, the section's defaults otherwise (tests, benchmarks).
    pub fn loopback() -> Self {
        let section = WebRtcSection::default();
        WebRtcSettings {
            ice_servers: Vec::new(),
            udp_addrs: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            public_ips: Vec::new(),
            gather_timeout: section.gather_timeout_ms.duration(),
            idle_timeout: section.idle_timeout_secs.duration(),
        }
    }

    /// A call whose browser sends nothing (no audio, no data channel
    /// message) for this long ends.
    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    pub(crate) fn setting_engine(&self) -> SettingEngine {
        let mut builder = SettingEngineBuilder::new().with_ice_timeouts(
            Some(ICE_DISCONNECTED_AFTER),
            Some(ICE_FAILED_AFTER),
            None,
        );
        if !self.public_ips.is_empty() {
            builder = builder.with_nat_1to1_ips(self.public_ips.clone(), RTCIceCandidateType::Host);
        }
        builder.build()
    }
}

/// A set, non-empty variable (an empty one is as good as unset, as in
/// [`SessionSetup::env_var`](crate::pipeline::SessionSetup::env_var)).
fn lookup(env: &EnvSource, var: &str) -> Option<String> {
    env.get(var).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;
    use crate::config::{IceServerConfig, IceUrl};

    fn turn(credential_env: Option<&str>) -> WebRtcSection {
        WebRtcSection {
            ice_servers: vec![IceServerConfig {
                urls: vec![IceUrl::try_from("turn:turn.example.com:3478".to_owned()).unwrap()],
                username: Some("voxpipe".into()),
                credential_env: credential_env.map(Into::into),
            }],
            ..WebRtcSection::default()
        }
    }

    #[test]
    fn turn_credentials_come_from_the_environment() {
        let env = EnvSource::Fixed(Arc::new(HashMap::from([(
            "TURN_SECRET".to_owned(),
            "s3cret".to_owned(),
        )])));
        let settings = WebRtcSettings::from_config(&turn(Some("TURN_SECRET")), &env).unwrap();
        assert_eq!(settings.ice_servers[0].credential, "s3cret");
        assert!(matches!(
            WebRtcSettings::from_config(&turn(Some("UNSET")), &env),
            Err(SettingsError::MissingEnv { index: 0, .. })
        ));
        assert!(matches!(
            WebRtcSettings::from_config(&turn(None), &env),
            Err(SettingsError::TurnCredentials { index: 0 })
        ));
    }
}
