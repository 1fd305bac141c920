//! `[transport.twilio]`: options of the Twilio Media Streams transport.
//!
//! ```toml
//! [transport.twilio]
//! auth_token_env = "TWILIO_AUTH_TOKEN"   # verify webhooks, hang up calls
//! account_sid_env = "TWILIO_ACCOUNT_SID" # place calls ([outbound])
//! api_base_url = "https://api.twilio.com"
//! hang_up = true
//! # With an auth token, a media stream must prove it comes from Twilio
//! # (both on by default; turn off only to test locally without Twilio):
//! stream_signature = true     # X-Twilio-Signature on the /twilio/ws upgrade
//! stream_token = true         # the per-call token the TwiML hands the stream
//! # /twilio/messaging must be signed: without an auth token it refuses
//! # every message (false takes unsigned ones: only to test locally).
//! messaging_signature = true
//! stream_token_ttl_secs = 300 # how long that token opens a stream
//! send_ahead_secs = 0.5       # bot audio sent ahead of the caller's playback
//! read_interval_secs = 0.04   # how often a call's socket is read (0: per message)
//! ```

use serde::Deserialize;

use super::seconds::Seconds;

/// `[transport.twilio]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioSection {
    /// The environment variable holding the account's auth token. With it,
    /// `POST /twilio/voice` verifies `X-Twilio-Signature` (403 when bad or
    /// missing) and calls are hung up through the REST API. Read when the
    /// server starts.
    #[serde(default)]
    pub auth_token_env: Option<String>,
    /// The environment variable holding the account SID (`AC…`): placing
    /// calls (`[outbound]`) needs it with the auth token.
    #[serde(default)]
    pub account_sid_env: Option<String>,
    /// The base URL of Twilio's REST API; tests point it at a local server.
    #[serde(default)]
    pub api_base_url: BaseUrl,
    /// Whether to hang up the call (REST `Status=completed`) when the
    /// pipeline ends it. Without this, closing the stream only ends the
    /// `<Connect>`, and Twilio goes on with the TwiML after it, if any.
    #[serde(default = "default_true")]
    pub hang_up: bool,
    /// With an auth token, refuse (403) a `/twilio/ws` upgrade without a
    /// valid `X-Twilio-Signature` for the stream's `wss://` URL.
    #[serde(default = "default_true")]
    pub stream_signature: bool,
    /// With an auth token, the TwiML the server issues carries a per-call
    /// token as a `<Parameter>`, and a stream whose `start` lacks a valid,
    /// unused one is closed before its session starts.
    #[serde(default = "default_true")]
    pub stream_token: bool,
    /// `POST /twilio/messaging` must carry a valid `X-Twilio-Signature`:
    /// without an auth token to check it, every message is refused (403).
    /// False takes messages unsigned (and unchecked, token or not): anyone
    /// who can reach the server could then post as any sender, continue
    /// their conversation and read its answer. Only to test locally.
    #[serde(default = "default_true")]
    pub messaging_signature: bool,
    /// How long a stream token is accepted after the TwiML is issued (an
    /// outbound call's rings and answering-machine detection come first).
    #[serde(default = "default_token_ttl")]
    pub stream_token_ttl_secs: Seconds<1, 3600>,
    /// How far ahead of the caller's playback bot audio may be sent (0: at
    /// its time). Twilio buffers it, so a server that wakes late by up to
    /// this much less two frames is not heard; a barge-in's `clear` drops
    /// it.
    #[serde(default = "default_send_ahead")]
    pub send_ahead_secs: Seconds<0, 2>,
    /// How often a call's socket is read (0: as each message arrives).
    /// Twilio sends a message every 20 ms; reading every 40 ms takes two
    /// at a time, in one wake-up of the call, at up to that much more
    /// delay (about 20 ms on average) before the VAD hears them. A call's
    /// wake-ups, not its arithmetic, were the larger part of the server's
    /// CPU: at 1,000 calls this cut it by a tenth (`docs/architecture.md`).
    #[serde(default = "default_read_interval")]
    pub read_interval_secs: Seconds<0, 1>,
}

fn default_send_ahead() -> Seconds<0, 2> {
    Seconds::from_millis(500)
}

fn default_read_interval() -> Seconds<0, 1> {
    Seconds::from_millis(40)
}

fn default_token_ttl() -> Seconds<1, 3600> {
    Seconds::from_millis(300_000)
}

impl Default for TwilioSection {
    fn default() -> Self {
        TwilioSection {
            auth_token_env: None,
            account_sid_env: None,
            api_base_url: BaseUrl::default(),
            hang_up: true,
            stream_signature: true,
            stream_token: true,
            messaging_signature: true,
            stream_token_ttl_secs: default_token_ttl(),
            send_ahead_secs: default_send_ahead(),
            read_interval_secs: default_read_interval(),
        }
    }
}

fn default_true() -> bool {
    true
}

/// An `http://` or `https://` URL without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct BaseUrl(String);

impl BaseUrl {
    /// The URL, without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for BaseUrl {
    fn default() -> Self {
        BaseUrl("https://api.twilio.com".to_owned())
    }
}

impl TryFrom<String> for BaseUrl {
    type Error = String;

    fn try_from(url: String) -> Result<Self, Self::Error> {
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        match rest {
            Some(rest) if !rest.is_empty() && !rest.contains(char::is_whitespace) => {
                Ok(BaseUrl(url.trim_end_matches('/').to_owned()))
            }
            _ => Err(format!("expected an http:// or https:// URL, not `{url}`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_http_and_lose_their_trailing_slash() {
        let url = BaseUrl::try_from("http://127.0.0.1:9000/".to_owned()).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9000");
        assert!(BaseUrl::try_from("api.twilio.com".to_owned()).is_err());
        assert!(BaseUrl::try_from("https://".to_owned()).is_err());
    }
}
