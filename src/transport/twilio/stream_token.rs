//! The per-call stream token, without I/O: proof that a media stream was
//! opened by TwiML this server issued, independent of `X-Twilio-Signature`.
//!
//! The server puts a token in the `<Stream>`'s `<Parameter>`s
//! ([`STREAM_TOKEN_PARAMETER`]); Twilio hands it back in `start`'s
//! `customParameters`. The token names the account and the call it was
//! issued for (the `CallSid` of a signed voice webhook, or the id of a call
//! the server placed) and when it expires, and carries an HMAC-SHA256 of
//! those under a key derived from the account's auth token: a client
//! cannot make one, change what it names, or stretch its life. A call's
//! stream is accepted once ([`SeenTokens`]), so a stream cannot be opened
//! again with a token read from an earlier one, nor with a fresh one a
//! replayed voice webhook got.
//!
//! ```text
//! v1.<expiry unix secs>.<base64url account SID>.<base64url call id>.<base64url HMAC>
//! ```

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use ring::hmac;

use crate::config::TwilioSection;

/// The `<Parameter>` (and `customParameters` key) carrying the token.
pub const STREAM_TOKEN_PARAMETER: &str = "voxpipe_stream_token";

/// The longest account SID or call id a token names.
const MAX_ID: usize = 128;

/// The key that signs and checks stream tokens.
#[derive(Clone)]
pub struct StreamTokenKey(hmac::Key);

impl std::fmt::Debug for StreamTokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamTokenKey(..)")
    }
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamClaims {
    /// The account the call belongs to (`AC…`).
    pub account_sid: String,
    /// The call: its `CallSid`, or the server's own id for a call it placed.
    pub call_id: String,
    /// When the token stops being accepted, in Unix seconds.
    pub expires_at: u64,
}

impl StreamClaims {
    /// The id of the call's stream: the SHA-256 (base64url) of the account
    /// and the call, not of the expiry. A call has one stream, and a
    /// token minted again for it (a signed voice webhook replayed, which
    /// Twilio's signature cannot tell from the first) has the same id, so
    /// it opens none.
    pub fn id(&self) -> String {
        let named = format!("{}.{}", self.account_sid, self.call_id);
        let digest = ring::digest::digest(&ring::digest::SHA256, named.as_bytes());
        BASE64URL.encode(digest.as_ref())
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// No token in the `start` message.
    #[error("no stream token")]
    Missing,
    /// Not a token this server made, or altered.
    #[error("the stream token is not valid")]
    Invalid,
    /// Past its expiry.
    #[error("the stream token has expired")]
    Expired,
    /// Already used by another stream.
    #[error("the stream token was already used")]
    Replayed,
    /// Made for another call than the stream names.
    #[error("the stream token is for another call")]
    OtherCall,
}

impl TokenError {
    /// A short stable label for metrics and logs.
    pub fn kind(self) -> &'static str {
        match self {
            TokenError::Missing => "missing_stream_token",
            TokenError::Invalid => "bad_stream_token",
            TokenError::Expired => "expired_stream_token",
            TokenError::Replayed => "replayed_stream_token",
            TokenError::OtherCall => "other_call_stream_token",
        }
    }
}

impl StreamTokenKey {
    /// The key derived from the account's auth token, so that every server
    /// sharing that token accepts the others' tokens.
    pub fn from_auth_token(auth_token: &str) -> Self {
        let derive = hmac::Key::new(hmac::HMAC_SHA256, auth_token.as_bytes());
        let secret = hmac::sign(&derive, b"voxpipe stream token v1");
        StreamTokenKey(hmac::Key::new(hmac::HMAC_SHA256, secret.as_ref()))
    }

    /// A token for the call `call_id` of `account_sid`, good until
    /// `expires_at` (Unix seconds). `None` when an id is empty or too long.
    pub fn issue(&self, account_sid: &str, call_id: &str, expires_at: u64) -> Option<String> {
        if !is_id(account_sid) || !is_id(call_id) {
            return None;
        }
        let body = format!(
            "v1.{expires_at}.{}.{}",
            BASE64URL.encode(account_sid),
            BASE64URL.encode(call_id)
        );
        let tag = hmac::sign(&self.0, body.as_bytes());
        Some(format!("{body}.{}", BASE64URL.encode(tag.as_ref())))
    }

    /// What `token` says, if this key made it and it has not expired at
    /// `now` (Unix seconds). The comparison takes constant time.
    pub fn verify(&self, token: &str, now: u64) -> Result<StreamClaims, TokenError> {
        let (body, tag) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
        let tag = BASE64URL.decode(tag).map_err(|_| TokenError::Invalid)?;
        hmac::verify(&self.0, body.as_bytes(), &tag).map_err(|_| TokenError::Invalid)?;
        let mut parts = body.split('.');
        let (Some("v1"), Some(expiry), Some(account_sid), Some(call_id), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenError::Invalid);
        };
        let expires_at: u64 = expiry.parse().map_err(|_| TokenError::Invalid)?;
        if now >= expires_at {
            return Err(TokenError::Expired);
        }
        let text = |part: &str| {
            let bytes = BASE64URL.decode(part).map_err(|_| TokenError::Invalid)?;
            String::from_utf8(bytes).map_err(|_| TokenError::Invalid)
        };
        Ok(StreamClaims {
            account_sid: text(account_sid)?,
            call_id: text(call_id)?,
            expires_at,
        })
    }
}

/// What issues stream tokens: the key and how long a token lives.
#[derive(Debug, Clone)]
pub struct StreamTokens {
    /// Signs and checks the tokens.
    pub key: StreamTokenKey,
    /// A token's life, in seconds.
    pub ttl_secs: u64,
}

impl StreamTokens {
    /// The tokens `[transport.twilio]` asks for, given the account's auth
    /// token: `None` when `stream_token = false`.
    pub fn from_config(section: &TwilioSection, auth_token: &str) -> Option<Self> {
        section.stream_token.then(|| StreamTokens {
            key: StreamTokenKey::from_auth_token(auth_token),
            ttl_secs: section.stream_token_ttl_secs.duration().as_secs().max(1),
        })
    }

    /// These tokens, living at least `secs`: an outbound call's token is
    /// issued when the call is asked for, and must outlive its rings.
    pub fn living_at_least(mut self, secs: u64) -> Self {
        self.ttl_secs = self.ttl_secs.max(secs);
        self
    }

    /// The `<Parameter>` carrying a token for the call `call_id` of
    /// `account_sid`, issued at `now` (Unix seconds).
    pub fn parameter(
        &self,
        account_sid: &str,
        call_id: &str,
        now: u64,
    ) -> Option<(String, String)> {
        let token = self
            .key
            .issue(account_sid, call_id, now.saturating_add(self.ttl_secs))?;
        Some((STREAM_TOKEN_PARAMETER.to_owned(), token))
    }
}

fn is_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID
}

/// How long a call's stream is remembered after it started, at least: as
/// long as a Twilio call can last (`TimeLimit` is at most 24 hours), so
/// that a replayed voice webhook's fresh token opens no second stream
/// while the call may still be live. Past both this and its token's
/// expiry a call is forgotten.
pub const CALL_STREAM_MEMORY_SECS: u64 = 24 * 3600;

/// Until when the use of `claims`' token at `now` must be remembered.
pub fn remember_until(claims: &StreamClaims, now: u64) -> u64 {
    claims
        .expires_at
        .max(now.saturating_add(CALL_STREAM_MEMORY_SECS))
}

/// The calls whose stream started here, each kept [`remember_until`]: a
/// call opens one stream, whatever token it comes with. Only valid tokens
/// are kept, so its size is bounded by the calls the server answered in a
/// day.
#[derive(Debug, Default)]
pub struct SeenTokens {
    used: Mutex<HashMap<String, u64>>,
}

impl SeenTokens {
    /// Records the start of the stream of `claims`' call at `now`; `false`
    /// when the call had one before.
    pub fn first_use(&self, claims: &StreamClaims, now: u64) -> bool {
        let key = claims.id();
        let mut used = self
            .used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        used.retain(|_, until| *until > now);
        match used.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(call) => {
                call.insert(remember_until(claims, now));
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "AC00000000000000000000000000000001";
    const CALL: &str = "CA00000000000000000000000000000001";

    #[test]
    fn a_token_says_what_it_was_issued_for_until_it_expires() {
        let key = StreamTokenKey::from_auth_token("secret");
        let token = key.issue(ACCOUNT, CALL, 1_000).unwrap();
        let claims = key.verify(&token, 999).unwrap();
        assert_eq!(claims.account_sid, ACCOUNT);
        assert_eq!(claims.call_id, CALL);
        assert_eq!(key.verify(&token, 1_000), Err(TokenError::Expired));
    }

    #[test]
    fn another_key_or_any_change_is_refused() {
        let key = StreamTokenKey::from_auth_token("secret");
        let token = key.issue(ACCOUNT, CALL, 1_000).unwrap();
        let other = StreamTokenKey::from_auth_token("other");
        assert_eq!(other.verify(&token, 0), Err(TokenError::Invalid));
        let stretched = token.replacen("1000", "9000", 1);
        assert_eq!(key.verify(&stretched, 0), Err(TokenError::Invalid));
        let other_call = key.issue(ACCOUNT, "CA2", 1_000).unwrap();
        let (body, _) = token.rsplit_once('.').unwrap();
        let (_, other_tag) = other_call.rsplit_once('.').unwrap();
        let spliced = format!("{body}.{other_tag}");
        assert_eq!(key.verify(&spliced, 0), Err(TokenError::Invalid));
        for junk in ["", ".", "v1.1.a.b.", "v1.1.a.b.!!", "x"] {
            assert_eq!(key.verify(junk, 0), Err(TokenError::Invalid), "{junk}");
        }
    }

    #[test]
    fn any_call_id_round_trips_but_empty_or_huge_ones_get_no_token() {
        let key = StreamTokenKey::from_auth_token("secret");
        let token = key.issue(ACCOUNT, "camp.1-2-3", 10).unwrap();
        assert_eq!(key.verify(&token, 0).unwrap().call_id, "camp.1-2-3");
        assert!(key.issue("", CALL, 1).is_none());
        assert!(key.issue(ACCOUNT, &"x".repeat(500), 1).is_none());
    }

    #[test]
    fn a_call_opens_one_stream_whatever_its_token_and_is_forgotten_a_day_later() {
        let key = StreamTokenKey::from_auth_token("secret");
        let claims = key
            .verify(&key.issue(ACCOUNT, CALL, 100).unwrap(), 0)
            .unwrap();
        let seen = SeenTokens::default();
        assert!(seen.first_use(&claims, 10));
        assert!(!seen.first_use(&claims, 20));
        // A replayed voice webhook mints a token with a later expiry for
        // the same call: it opens nothing either.
        let replayed = key
            .verify(&key.issue(ACCOUNT, CALL, 700).unwrap(), 600)
            .unwrap();
        assert_ne!(replayed, claims);
        assert!(!seen.first_use(&replayed, 600));
        let day = CALL_STREAM_MEMORY_SECS;
        let other = key
            .verify(&key.issue(ACCOUNT, "CA2", day + 300).unwrap(), day + 20)
            .unwrap();
        assert!(seen.first_use(&other, day + 20));
        assert_eq!(
            seen.used.lock().unwrap().len(),
            1,
            "the first call is forgotten a day after its stream started"
        );
    }
}
