//! [`SessionKey`]: the session ids `POST /start` hands out, signed and
//! self-expiring (sans-IO: the time is passed in).
//!
//! The `sessionId` a client gets is `{id}.{expires}.{tag}`: the session's
//! id (32 hex digits, the call id in logs and in the store), the Unix
//! second after which no first offer is taken, and a 128-bit HMAC-SHA256
//! tag of both under the server's key. Pipecat's clients put it in the
//! offer's path (`/sessions/{sessionId}/api/offer`), so the path itself is
//! the capability: no header or cookie that a stock client would not
//! send. A forged or altered id fails its tag and is answered as unknown
//! (404); a genuine one past its time is answered as expired (401), even
//! after the server has forgotten the session. The key is
//! `[server] session_key_env`, or random per process.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ring::hmac;

/// Bytes of the tag kept: 128 bits.
const TAG_BYTES: usize = 16;

/// Why a session id was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    /// Not an id this server signed.
    #[error("unknown session")]
    Unknown,
    /// Signed, but its time is over.
    #[error("the session has expired; start a new one")]
    Expired,
}

/// A session id whose tag checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignedSession {
    /// The session's own id.
    pub(crate) id: String,
    /// Whether its time for a first offer is over.
    pub(crate) expired: bool,
}

/// Signs and checks session ids.
pub(crate) struct SessionKey {
    key: hmac::Key,
}

impl SessionKey {
    pub(crate) fn new(secret: &[u8]) -> Self {
        SessionKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// A random key, for one process, from the system's cryptographic
    /// random source (`crate::random` is not one). `None` when the system
    /// cannot give randomness.
    pub(crate) fn random() -> Option<Self> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new()).ok()?;
        Some(SessionKey { key })
    }

    /// The `sessionId` for `id`, valid for a first offer until `now + ttl`.
    pub(crate) fn sign(&self, id: &str, now: SystemTime, ttl: Duration) -> String {
        let expires = unix_secs(now) + ttl.as_secs().max(1);
        let claim = format!("{id}.{expires}");
        let tag = self.tag(&claim);
        format!("{claim}.{tag}")
    }

    /// Checks `token` at `now`.
    pub(crate) fn verify(&self, token: &str, now: SystemTime) -> Result<SignedSession, TokenError> {
        let (claim, tag) = token.rsplit_once('.').ok_or(TokenError::Unknown)?;
        let (id, expires) = claim.rsplit_once('.').ok_or(TokenError::Unknown)?;
        let expires: u64 = expires.parse().map_err(|_| TokenError::Unknown)?;
        if id.is_empty() || !same(tag.as_bytes(), self.tag(claim).as_bytes()) {
            return Err(TokenError::Unknown);
        }
        Ok(SignedSession {
            id: id.to_owned(),
            expired: unix_secs(now) > expires,
        })
    }

    fn tag(&self, claim: &str) -> String {
        let tag = hmac::sign(&self.key, claim.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&tag.as_ref()[..TAG_BYTES])
    }
}

fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// Equal, in time that does not depend on where they differ.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    #[test]
    fn a_signed_id_is_accepted_until_it_expires() {
        let key = SessionKey::new(b"k");
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let token = key.sign("abc123", t0, TTL);
        assert!(token.starts_with("abc123.1700000060."), "{token}");
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "safe in a URL path: {token}"
        );
        let ok = key.verify(&token, t0 + TTL).unwrap();
        assert_eq!(ok.id, "abc123");
        assert!(!ok.expired);
        assert!(
            key.verify(&token, t0 + TTL + Duration::from_secs(1))
                .unwrap()
                .expired
        );
    }

    #[test]
    fn forged_altered_or_foreign_ids_are_unknown() {
        let key = SessionKey::new(b"k");
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let token = key.sign("abc123", t0, TTL);
        let later = token.replace(".1700000060.", ".1800000060.");
        let other = token.replace("abc123", "abc124");
        for bad in [
            "abc123",
            "",
            "..",
            later.as_str(),
            other.as_str(),
            &token[..token.len() - 1],
        ] {
            assert_eq!(key.verify(bad, t0), Err(TokenError::Unknown), "{bad}");
        }
        let foreign = SessionKey::new(b"other").sign("abc123", t0, TTL);
        assert_eq!(key.verify(&foreign, t0), Err(TokenError::Unknown));
        let random = SessionKey::random().unwrap();
        assert!(random.verify(&random.sign("x", t0, TTL), t0).is_ok());
    }
}
