//! [`IceServers`]: `[transport.webrtc] ice_servers` with their credentials,
//! for the server's own connections and for the clients it hands them to
//! (`iceConfig` in `POST /start`, `GET /api/ice-config`), so both peers
//! negotiate against the same STUN and TURN servers.
//!
//! A TURN server's credential is either fixed (`credential_env`) or made
//! per request from a secret shared with the TURN server (`secret_env`),
//! as the TURN REST API (draft-uberti-behave-turn-rest, coturn's
//! `use-auth-secret`) has it: the user name is `expiry:username`, expiry
//! in Unix seconds, and the credential is the base64 HMAC-SHA1 of that
//! user name under the secret. The TURN server checks both without asking
//! us, so a client holding them can relay only until they expire. The time
//! is passed in: [`IceServers::at`] is pure.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::Serialize;
use webrtc::peer_connection::RTCIceServer;

use crate::config::IceServerConfig;
use crate::pipeline::EnvSource;

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// A TURN server without a user name or credential, or with both a
    /// fixed credential and a shared secret.
    #[error(
        "transport.webrtc.ice_servers[{index}]: a TURN server needs `username` and one of `credential_env` or `secret_env`"
    )]
    TurnCredentials {
        /// The entry's index.
        index: usize,
    },
    /// `credential_env` or `secret_env` names a variable that is not set.
    #[error("transport.webrtc.ice_servers[{index}]: environment variable {var} is not set")]
    MissingEnv {
        /// The entry's index.
        index: usize,
        /// The variable.
        var: String,
    },
}

/// One server as a client's `RTCIceServer` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IceServer {
    /// `stun:`, `stuns:`, `turn:` or `turns:` URLs.
    pub urls: Vec<String>,
    /// The TURN user name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The TURN credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

enum Credential {
    None,
    Fixed {
        username: String,
        credential: String,
    },
    Shared {
        username: String,
        secret: ring::hmac::Key,
        ttl: Duration,
    },
}

struct Entry {
    urls: Vec<String>,
    credential: Credential,
}

/// The configured STUN and TURN servers, their secrets resolved.
#[derive(Default)]
pub struct IceServers {
    entries: Vec<Entry>,
}

impl fmt::Debug for IceServers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URLs only: credentials and secrets stay out of logs.
        f.debug_list()
            .entries(self.entries.iter().map(|e| &e.urls))
            .finish()
    }
}

impl IceServers {
    /// Resolves `servers`, reading credentials and secrets from `env`.
    ///
    /// # Errors
    /// A TURN server with neither or both of `credential_env` and
    /// `secret_env`, or without `username`; a variable not set.
    pub fn from_config(
        servers: &[IceServerConfig],
        env: &EnvSource,
    ) -> Result<Self, SettingsError> {
        let mut entries = Vec::with_capacity(servers.len());
        for (index, server) in servers.iter().enumerate() {
            let read = |var: &String| {
                env.get(var)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| SettingsError::MissingEnv {
                        index,
                        var: var.clone(),
                    })
            };
            if !server.credentials_fit() {
                return Err(SettingsError::TurnCredentials { index });
            }
            let credential = match (&server.username, &server.credential_env, &server.secret_env) {
                (Some(username), Some(var), None) => Credential::Fixed {
                    username: username.clone(),
                    credential: read(var)?,
                },
                (Some(username), None, Some(var)) => Credential::Shared {
                    username: username.clone(),
                    secret: ring::hmac::Key::new(
                        ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
                        read(var)?.as_bytes(),
                    ),
                    ttl: server.credential_ttl_secs.duration(),
                },
                _ => Credential::None,
            };
            entries.push(Entry {
                urls: server.urls.iter().map(|u| u.as_str().to_owned()).collect(),
                credential,
            });
        }
        Ok(IceServers { entries })
    }

    /// The servers with credentials valid from `now`.
    pub fn at(&self, now: SystemTime) -> Vec<IceServer> {
        let unix = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        self.entries
            .iter()
            .map(|entry| {
                let (username, credential) = match &entry.credential {
                    Credential::None => (None, None),
                    Credential::Fixed {
                        username,
                        credential,
                    } => (Some(username.clone()), Some(credential.clone())),
                    Credential::Shared {
                        username,
                        secret,
                        ttl,
                    } => {
                        let name = format!("{}:{username}", (unix + *ttl).as_secs());
                        let tag = ring::hmac::sign(secret, name.as_bytes());
                        let credential =
                            base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
                        (Some(name), Some(credential))
                    }
                };
                IceServer {
                    urls: entry.urls.clone(),
                    username,
                    credential,
                }
            })
            .collect()
    }

    /// The servers as the `webrtc` crate takes them, credentials valid
    /// from `now`.
    pub(crate) fn rtc_at(&self, now: SystemTime) -> Vec<RTCIceServer> {
        self.at(now)
            .into_iter()
            .map(|server| RTCIceServer {
                urls: server.urls,
                username: server.username.unwrap_or_default(),
                credential: server.credential.unwrap_or_default(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;
    use crate::config::IceUrl;

    fn env() -> EnvSource {
        EnvSource::Fixed(Arc::new(HashMap::from([
            ("TURN_CREDENTIAL".to_owned(), "s3cret".to_owned()),
            ("TURN_SECRET".to_owned(), "north".to_owned()),
        ])))
    }

    fn server(
        urls: &[&str],
        username: Option<&str>,
        credential: Option<&str>,
        secret: Option<&str>,
    ) -> IceServerConfig {
        IceServerConfig {
            urls: urls
                .iter()
                .map(|u| IceUrl::try_from(u.to_string()).unwrap())
                .collect(),
            username: username.map(Into::into),
            credential_env: credential.map(Into::into),
            secret_env: secret.map(Into::into),
            credential_ttl_secs: crate::config::Seconds::from_millis(3_600_000),
        }
    }

    #[test]
    fn fixed_credentials_come_from_the_environment() {
        let turn = server(
            &["turn:t.example.com"],
            Some("voxpipe"),
            Some("TURN_CREDENTIAL"),
            None,
        );
        let servers = IceServers::from_config(&[turn], &env()).unwrap();
        let json = serde_json::to_value(servers.at(SystemTime::now())).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{"urls": ["turn:t.example.com"], "username": "voxpipe", "credential": "s3cret"}])
        );
        assert!(!format!("{servers:?}").contains("s3cret"));
    }

    #[test]
    fn a_shared_secret_makes_time_limited_credentials() {
        let turn = server(
            &["turn:t.example.com"],
            Some("voxpipe"),
            None,
            Some("TURN_SECRET"),
        );
        let servers = IceServers::from_config(&[turn], &env()).unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let minted = &servers.at(now)[0];
        // An hour later, by default; coturn checks exactly this HMAC.
        assert_eq!(minted.username.as_deref(), Some("1700003600:voxpipe"));
        let expected = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"north"),
            b"1700003600:voxpipe",
        );
        assert_eq!(
            minted.credential.as_deref(),
            Some(
                base64::engine::general_purpose::STANDARD
                    .encode(expected.as_ref())
                    .as_str()
            )
        );
        assert_ne!(servers.at(now + Duration::from_secs(1))[0], *minted);
    }

    #[test]
    fn turn_needs_one_kind_of_credential_and_stun_none() {
        let stun = server(&["stun:s.example.com"], None, None, None);
        let servers = IceServers::from_config(&[stun], &env()).unwrap();
        assert_eq!(
            serde_json::to_value(servers.at(SystemTime::now())).unwrap(),
            serde_json::json!([{"urls": ["stun:s.example.com"]}])
        );
        for (username, credential, secret) in [
            (Some("u"), Some("TURN_CREDENTIAL"), Some("TURN_SECRET")),
            (Some("u"), None, None),
            (None, None, Some("TURN_SECRET")),
        ] {
            let turn = server(&["turn:t.example.com"], username, credential, secret);
            assert!(matches!(
                IceServers::from_config(&[turn], &env()),
                Err(SettingsError::TurnCredentials { index: 0 })
            ));
        }
        let unset = server(&["turn:t.example.com"], Some("u"), None, Some("UNSET"));
        assert!(matches!(
            IceServers::from_config(&[unset], &env()),
            Err(SettingsError::MissingEnv { index: 0, .. })
        ));
    }
}
