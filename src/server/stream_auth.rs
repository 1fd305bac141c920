//! Who may open a Twilio media stream, and which call a stream may hang up.
//!
//! With an auth token configured, two independent checks, each on by
//! default (`[transport.twilio] stream_signature`, `stream_token`):
//!
//! - the WebSocket upgrade must carry a valid `X-Twilio-Signature` for the
//!   stream's `wss://` URL (a GET: no parameters), else 403 before a slot
//!   is taken;
//! - the TwiML the server issues gives each call a short-lived token
//!   ([`crate::transport::twilio::stream_token`]) as a `<Parameter>`; the
//!   `start` must bring it back, for the call it names, unused and in
//!   time, else the stream is closed before its session starts.
//!
//! A call's stream is accepted once, whatever token it brings (a replayed
//! voice webhook mints a fresh one for the same call): by this server at
//! once (`SeenTokens`), and,
//! when the pipeline keeps a context store, by every server sharing it
//! (the store's `first_use_of_stream_token`, checked by the caller with
//! the [`UsedToken`] the check returns). Should the store fail, the local
//! check stands alone, logged: a store outage does not refuse calls.
//!
//! The hang-up when a stream drops uses the SIDs a check vouched for: the
//! token's account and call (an outbound call's SID from the server's own
//! record). The signature alone vouches for none: it signs the stream's
//! URL, which says nothing of the call, so no hang-up is tried and the
//! stream's close ends the `<Connect>`. SIDs only a client's `start` names
//! are never used: anyone knowing a `CallSid` could otherwise hang that
//! call up.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, Uri};

use crate::config::TwilioSection;
use crate::outbound::CALL_ID_PARAMETER;
use crate::transport::twilio::protocol::StreamStart;
use crate::transport::twilio::stream_token::{
    STREAM_TOKEN_PARAMETER, SeenTokens, StreamTokens, TokenError, remember_until,
};

use super::request::public_scheme;

/// The checks a stream must pass.
#[derive(Debug)]
pub(crate) struct StreamAuth {
    /// Verify `X-Twilio-Signature` on the upgrade (an auth token is set).
    signature: bool,
    tokens: Option<StreamTokens>,
    seen: SeenTokens,
}

/// A token a started stream used: what the store records so that no other
/// server accepts it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UsedToken {
    /// A hash of the account and the call the token names: one call, one
    /// stream, and no SIDs in the store's keys.
    pub(crate) id: String,
    /// Until when its use is remembered, in Unix seconds (see
    /// `remember_until`).
    pub(crate) remember_until: u64,
}

impl UsedToken {
    /// How long the store must remember it.
    pub(crate) fn ttl_ms(&self) -> u64 {
        self.remember_until
            .saturating_sub(unix_now())
            .saturating_add(1)
            .saturating_mul(1_000)
    }
}

/// What vouches for a started stream's call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StreamProof {
    /// A token for the inbound call `call_sid` of `account_sid`.
    Call {
        account_sid: String,
        call_sid: String,
    },
    /// A token for the call `call_id` this server placed for `account_sid`.
    Placed { account_sid: String },
    /// The signed upgrade alone. It signs the stream's URL, not the call:
    /// the `start`'s SIDs are the client's word.
    Signed,
    /// No check is configured.
    Unchecked,
}

impl StreamAuth {
    /// The checks `section` asks for, with the account's `auth_token`.
    pub(crate) fn new(section: &TwilioSection, auth_token: Option<&str>) -> Self {
        StreamAuth {
            signature: auth_token.is_some() && section.stream_signature,
            tokens: auth_token.and_then(|token| StreamTokens::from_config(section, token)),
            seen: SeenTokens::default(),
        }
    }

    /// The `<Parameter>` giving the call `call_sid` of `account_sid` its
    /// stream token; `None` with tokens off.
    pub(crate) fn token_parameter(
        &self,
        account_sid: &str,
        call_sid: &str,
    ) -> Option<(String, String)> {
        self.tokens
            .as_ref()?
            .parameter(account_sid, call_sid, unix_now())
    }

    /// Whether streams need a token (the webhook then needs the call's
    /// SIDs to issue one).
    pub(crate) fn tokens_on(&self) -> bool {
        self.tokens.is_some()
    }

    /// The URL an upgrade's `X-Twilio-Signature` must sign (the stream's
    /// `wss://` URL, no parameters), when signatures are checked.
    pub(crate) fn signed_upgrade_url(
        &self,
        host: Option<&str>,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Option<String> {
        if !self.signature {
            return None;
        }
        let scheme = match public_scheme(headers) {
            "http" => "ws",
            _ => "wss",
        };
        let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
        Some(format!(
            "{scheme}://{}{path_and_query}",
            host.unwrap_or("-")
        ))
    }

    /// Checks a started stream: its token, when tokens are on, must be
    /// valid, unused, and for the call the `start` names (its `CallSid`, or
    /// for a call this server placed, its `call_id` parameter).
    /// With tokens on, the token used comes with the proof, for the store.
    pub(crate) fn verify_start(
        &self,
        start: &StreamStart,
    ) -> Result<(StreamProof, Option<UsedToken>), TokenError> {
        let Some(tokens) = &self.tokens else {
            let proof = if self.signature {
                StreamProof::Signed
            } else {
                StreamProof::Unchecked
            };
            return Ok((proof, None));
        };
        let token = start
            .custom_parameters
            .get(STREAM_TOKEN_PARAMETER)
            .ok_or(TokenError::Missing)?;
        let now = unix_now();
        let claims = tokens.key.verify(token, now)?;
        let proof = if start.call_sid.as_deref() == Some(claims.call_id.as_str()) {
            StreamProof::Call {
                account_sid: claims.account_sid.clone(),
                call_sid: claims.call_id.clone(),
            }
        } else if start.custom_parameters.get(CALL_ID_PARAMETER) == Some(&claims.call_id) {
            StreamProof::Placed {
                account_sid: claims.account_sid.clone(),
            }
        } else {
            return Err(TokenError::OtherCall);
        };
        if !self.seen.first_use(&claims, now) {
            return Err(TokenError::Replayed);
        }
        let used = UsedToken {
            id: claims.id(),
            remember_until: remember_until(&claims, now),
        };
        Ok((proof, Some(used)))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
