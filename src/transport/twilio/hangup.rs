//! Hanging up through Twilio's Calls REST resource:
//! `POST {base}/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json` with
//! the form `Status=completed`, authenticated with the account SID and the
//! auth token (HTTP basic).
//!
//! A call that has already ended answers 404 (Twilio error 20404), which is
//! the outcome we wanted. Rate limiting (429), server errors and network
//! failures are retried twice with a short backoff; anything else is
//! reported at once.

use std::time::Duration;

/// How many times a hang-up is tried.
const ATTEMPTS: u32 = 3;
/// The wait before the first retry; doubled for the next.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait for one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What a hang-up did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangUp {
    /// Twilio completed the call.
    Completed,
    /// The call had already ended.
    AlreadyEnded,
}

impl HangUp {
    /// A short stable label for metrics: `completed`, `already_ended`.
    pub fn label(self) -> &'static str {
        match self {
            HangUp::Completed => "completed",
            HangUp::AlreadyEnded => "already_ended",
        }
    }
}

/// Why a hang-up failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HangUpError {
    /// The stream's `start` named no account or no call.
    #[error("the stream's `start` named no account or call")]
    MissingSid,
    /// A SID from the stream is not a SID (it goes into the URL path).
    #[error("`{0}` is not a Twilio SID")]
    BadSid(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The request did not get an answer.
    #[error("request failed: {0}")]
    Request(#[source] reqwest::Error),
    /// Twilio answered with an error.
    #[error("Twilio answered {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
}

impl HangUpError {
    fn is_transient(&self) -> bool {
        match self {
            HangUpError::Request(_) => true,
            HangUpError::Status { status, .. } => *status == 429 || *status >= 500,
            HangUpError::MissingSid | HangUpError::BadSid(_) | HangUpError::Client(_) => false,
        }
    }
}

/// A client of Twilio's REST API for one account's calls.
#[derive(Debug, Clone)]
pub struct TwilioRest {
    http: reqwest::Client,
    base_url: String,
    auth_token: String,
}

impl TwilioRest {
    /// A client of the API at `base_url` (e.g. `https://api.twilio.com`),
    /// authenticating with `auth_token`.
    pub fn new(base_url: &str, auth_token: String) -> Result<Self, HangUpError> {
        // reqwest is built without a default TLS provider; ring is the one
        // the rest of the tree uses. Installed once per process.
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("voxpipe/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(HangUpError::Client)?;
        Ok(TwilioRest {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            auth_token,
        })
    }

    /// Ends the call `call_sid` of the account `account_sid`.
    pub async fn hang_up(&self, account_sid: &str, call_sid: &str) -> Result<HangUp, HangUpError> {
        for sid in [account_sid, call_sid] {
            if !is_sid(sid) {
                return Err(HangUpError::BadSid(sid.chars().take(64).collect()));
            }
        }
        let url = format!(
            "{}/2010-04-01/Accounts/{account_sid}/Calls/{call_sid}.json",
            self.base_url
        );
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            match self.post(&url, account_sid).await {
                Err(err) if err.is_transient() && attempt < ATTEMPTS => {
                    tracing::debug!(error = %err, attempt, "hang-up failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn post(&self, url: &str, account_sid: &str) -> Result<HangUp, HangUpError> {
        let response = self
            .http
            .post(url)
            .basic_auth(account_sid, Some(&self.auth_token))
            .form(&[("Status", "completed")])
            .send()
            .await
            .map_err(HangUpError::Request)?;
        let status = response.status().as_u16();
        match status {
            200..=299 => Ok(HangUp::Completed),
            404 => Ok(HangUp::AlreadyEnded),
            _ => {
                let body = response.text().await.unwrap_or_default();
                Err(HangUpError::Status {
                    status,
                    body: body.chars().take(200).collect(),
                })
            }
        }
    }
}

/// Two letters and 32 hex digits: `AC…`, `CA…`.
fn is_sid(sid: &str) -> bool {
    sid.len() == 34
        && sid.as_bytes()[..2].iter().all(u8::is_ascii_uppercase)
        && sid.as_bytes()[2..].iter().all(u8::is_ascii_hexdigit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_are_two_letters_and_32_hex_digits() {
        assert!(is_sid("CA7c4b5e3e9a0e4c2b8f5d1a6e3c9b0a7f"));
        assert!(is_sid("ACd5a6a5c1b9f6a1e6f6bc2c7e4a1b8e3f"));
        assert!(!is_sid("CA7c4b5e3e9a0e4c2b8f5d1a6e3c9b0a7"));
        assert!(!is_sid("CA7c4b5e3e9a0e4c2b8f5d1a6e3c9b0a7/"));
        assert!(!is_sid("../../../etc/passwd/aaaaaaaaaaaaaaaaaa"));
    }
}
