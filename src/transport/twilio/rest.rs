//! Twilio's Calls REST resource, authenticated with the account SID and
//! the auth token (HTTP basic), over one HTTP client:
//!
//! - placing a call: `POST {base}/2010-04-01/Accounts/{AccountSid}/Calls.json`
//!   (the form [`CreateCall::form`] builds), answered 201 with the call's
//!   `sid`; not retried here (the dialler's caller decides: a 429 says how
//!   long to wait in `Retry-After`);
//! - sending a message: `POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`
//!   (`To`, `From`, `Body`), answered as a call creation is;
//! - ending one: `POST {base}/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`
//!   with `Status=completed` (hang up) or `Status=canceled` (a call not yet
//!   answered). Twilio's `canceled` ends only a queued or ringing call and
//!   leaves one in progress alone, and a call thought unanswered may have
//!   been answered meanwhile: when Twilio's answer to a cancel shows the
//!   call `in-progress`, it is followed by `completed`. A call that has
//!   already ended answers 404 (Twilio error 20404), which is the outcome
//!   we wanted;
//! - reading one: `GET {base}/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`,
//!   answered 200 with the call (its `status`, `duration`, `answered_by`),
//!   or 404 (error 20404) for a call Twilio does not have.
//!
//! For an update or a read, rate limiting (429), server errors and
//! network failures are retried twice with a short backoff; anything else
//! is reported at once.

use std::time::Duration;

use serde::Deserialize;

use super::messaging::CreateMessage;

mod call_resource;

pub use call_resource::CallResource;

/// How many times a hang-up is tried.
const ATTEMPTS: u32 = 3;
/// The wait before the first retry; doubled for the next.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait for one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long making the connection may take, within `REQUEST_TIMEOUT`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

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

/// Why a hang-up, or a read of a call, failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HangUpError {
    /// No account and call the server issued or verified for the stream.
    #[error("no verified account and call SID for the stream")]
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
            // Its own limit, so that a connection never made is a connect
            // error (nothing sent: safe to try again), not the request's
            // timeout (perhaps sent: `Uncertain`).
            .connect_timeout(CONNECT_TIMEOUT)
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
        self.end_call(account_sid, call_sid, EndCall::Complete)
            .await
    }

    /// Ends the call `call_sid` as `how` says.
    pub async fn end_call(
        &self,
        account_sid: &str,
        call_sid: &str,
        how: EndCall,
    ) -> Result<HangUp, HangUpError> {
        let url = self.call_url(account_sid, call_sid)?;
        match self.update(&url, account_sid, how).await? {
            Updated::Ended(hang_up) => Ok(hang_up),
            Updated::StillInProgress => {
                tracing::info!("the call was answered before it was canceled: hanging it up");
                match self.update(&url, account_sid, EndCall::Complete).await? {
                    Updated::Ended(hang_up) => Ok(hang_up),
                    // Only a cancel leaves a call in progress.
                    Updated::StillInProgress => Ok(HangUp::Completed),
                }
            }
        }
    }

    /// The URL of the call `call_sid` of the account `account_sid`; both
    /// must be SIDs (they go into its path).
    fn call_url(&self, account_sid: &str, call_sid: &str) -> Result<String, HangUpError> {
        for sid in [account_sid, call_sid] {
            if !is_sid(sid) {
                return Err(HangUpError::BadSid(sid.chars().take(64).collect()));
            }
        }
        Ok(format!(
            "{}/2010-04-01/Accounts/{account_sid}/Calls/{call_sid}.json",
            self.base_url
        ))
    }

    /// One update of the call at `url`, tried again on transient errors.
    async fn update(
        &self,
        url: &str,
        account_sid: &str,
        how: EndCall,
    ) -> Result<Updated, HangUpError> {
        retried(|| self.post(url, account_sid, how)).await
    }

    /// The call `call_sid` of the account `account_sid` as Twilio has it
    /// now; `None` when Twilio has no such call (404).
    pub async fn fetch_call(
        &self,
        account_sid: &str,
        call_sid: &str,
    ) -> Result<Option<CallResource>, HangUpError> {
        let url = self.call_url(account_sid, call_sid)?;
        retried(|| self.get(&url, account_sid)).await
    }

    /// Asks Twilio to place `call` for the account `account_sid`; its SID
    /// (`CA…`) on success. One request, not retried.
    pub async fn create_call(
        &self,
        account_sid: &str,
        call: &CreateCall<'_>,
    ) -> Result<String, CreateCallError> {
        if !is_sid(account_sid) {
            return Err(CreateCallError::Refused {
                status: 0,
                code: None,
                message: "the account SID is not a Twilio SID".to_owned(),
            });
        }
        let url = format!(
            "{}/2010-04-01/Accounts/{account_sid}/Calls.json",
            self.base_url
        );
        self.create(&url, account_sid, &call.form()).await
    }

    /// Sends `message` from the account `account_sid` through the Messages
    /// resource (`POST …/Messages.json`); its SID (`SM…`) on success.
    /// Twilio answers as it answers a call creation (201 with the `sid`,
    /// or an error body with its code, e.g. 63016 for a WhatsApp message
    /// outside the 24-hour window). One request, not retried.
    pub async fn create_message(
        &self,
        account_sid: &str,
        message: &CreateMessage<'_>,
    ) -> Result<String, CreateCallError> {
        if !is_sid(account_sid) {
            return Err(CreateCallError::Refused {
                status: 0,
                code: None,
                message: "the account SID is not a Twilio SID".to_owned(),
            });
        }
        let url = format!(
            "{}/2010-04-01/Accounts/{account_sid}/Messages.json",
            self.base_url
        );
        self.create(&url, account_sid, &message.form()).await
    }

    /// Posts `form` to create a resource at `url`; the answer's `sid`.
    async fn create(
        &self,
        url: &str,
        account_sid: &str,
        form: &(impl serde::Serialize + ?Sized),
    ) -> Result<String, CreateCallError> {
        let response = self
            .http
            .post(url)
            .basic_auth(account_sid, Some(&self.auth_token))
            .form(form)
            .send()
            .await
            .map_err(|err| {
                if err.is_connect() {
                    CreateCallError::Unavailable(err.to_string())
                } else {
                    CreateCallError::Uncertain(err.to_string())
                }
            })?;
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers().get(reqwest::header::RETRY_AFTER));
        match response.text().await {
            Ok(body) => created_call(status, retry_after, &body),
            Err(err) => unread_answer(status, retry_after, &err.to_string()),
        }
    }

    async fn get(&self, url: &str, account_sid: &str) -> Result<Option<CallResource>, HangUpError> {
        let response = self
            .http
            .get(url)
            .basic_auth(account_sid, Some(&self.auth_token))
            .send()
            .await
            .map_err(HangUpError::Request)?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(HangUpError::Request)?;
        fetched_call(status, &body)
    }

    async fn post(
        &self,
        url: &str,
        account_sid: &str,
        how: EndCall,
    ) -> Result<Updated, HangUpError> {
        let response = self
            .http
            .post(url)
            .basic_auth(account_sid, Some(&self.auth_token))
            .form(&[("Status", how.status())])
            .send()
            .await
            .map_err(HangUpError::Request)?;
        let status = response.status().as_u16();
        match status {
            200..=299 => {
                // The call as Twilio now has it; a body that cannot be
                // read says nothing against the update.
                let body = response.text().await.unwrap_or_default();
                Ok(if still_in_progress(how, &body) {
                    Updated::StillInProgress
                } else {
                    Updated::Ended(HangUp::Completed)
                })
            }
            404 => Ok(Updated::Ended(HangUp::AlreadyEnded)),
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

/// What an update did to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Updated {
    /// Ended (or ending), or already over.
    Ended(HangUp),
    /// A cancel found the call answered: Twilio left it going.
    StillInProgress,
}

/// Runs `request` until it succeeds, fails for good, or has been tried
/// [`ATTEMPTS`] times, waiting [`FIRST_BACKOFF`] (doubled each time)
/// after a transient failure.
async fn retried<T, F, Fut>(mut request: F) -> Result<T, HangUpError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, HangUpError>>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match request().await {
            Err(err) if err.is_transient() && attempt < ATTEMPTS => {
                tracing::debug!(error = %err, attempt, "Twilio request failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// The answer to a read of a call, without I/O.
fn fetched_call(status: u16, body: &str) -> Result<Option<CallResource>, HangUpError> {
    let unreadable = || HangUpError::Status {
        status,
        body: body.chars().take(200).collect(),
    };
    match status {
        200..=299 => serde_json::from_str(body)
            .map(Some)
            .map_err(|_| unreadable()),
        404 => Ok(None),
        _ => Err(unreadable()),
    }
}

/// Whether Twilio's answer `body` to an update `how` shows a call that
/// update left going: a cancel of a call already answered.
fn still_in_progress(how: EndCall, body: &str) -> bool {
    #[derive(Deserialize)]
    struct Call {
        status: Option<String>,
    }
    how == EndCall::Cancel
        && serde_json::from_str::<Call>(body)
            .ok()
            .and_then(|call| call.status)
            .is_some_and(|status| status == "in-progress")
}

/// How to end a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndCall {
    /// `Status=completed`: hang up a call in progress.
    Complete,
    /// `Status=canceled`: stop a call that is queued or ringing.
    Cancel,
}

impl EndCall {
    fn status(self) -> &'static str {
        match self {
            EndCall::Complete => "completed",
            EndCall::Cancel => "canceled",
        }
    }
}

/// The status callback events asked for: every step of the call.
pub const STATUS_CALLBACK_EVENTS: [&str; 4] = ["initiated", "ringing", "answered", "completed"];

/// A call to place (`POST …/Calls.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateCall<'a> {
    /// The number called, E.164.
    pub to: &'a str,
    /// The caller id, E.164.
    pub from: &'a str,
    /// The TwiML to run once answered (`<Connect><Stream>`).
    pub twiml: &'a str,
    /// Where Twilio posts the call's status (`https://…/twilio/status`).
    pub status_callback: &'a str,
    /// How long to let it ring, in seconds (Twilio's `Timeout`).
    pub timeout_secs: u32,
    /// `Enable` or `DetectMessageEnd`, when machines are detected.
    pub machine_detection: Option<&'a str>,
    /// With detection: run it alongside the TwiML and post the answer here
    /// (`AsyncAmd=true`, `AsyncAmdStatusCallback`).
    pub async_amd_callback: Option<&'a str>,
}

impl CreateCall<'_> {
    /// The form, as Twilio's Call resource names its parameters.
    pub fn form(&self) -> Vec<(&'static str, String)> {
        let mut form = vec![
            ("To", self.to.to_owned()),
            ("From", self.from.to_owned()),
            ("Twiml", self.twiml.to_owned()),
            ("StatusCallback", self.status_callback.to_owned()),
            ("StatusCallbackMethod", "POST".to_owned()),
        ];
        form.extend(
            STATUS_CALLBACK_EVENTS
                .iter()
                .map(|event| ("StatusCallbackEvent", (*event).to_owned())),
        );
        form.push(("Timeout", self.timeout_secs.to_string()));
        if let Some(detection) = self.machine_detection {
            form.push(("MachineDetection", detection.to_owned()));
            if let Some(callback) = self.async_amd_callback {
                form.push(("AsyncAmd", "true".to_owned()));
                form.push(("AsyncAmdStatusCallback", callback.to_owned()));
                form.push(("AsyncAmdStatusCallbackMethod", "POST".to_owned()));
            }
        }
        form
    }
}

/// Why Twilio did not take a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateCallError {
    /// 429 (Twilio error 20429): too many requests.
    #[error("rate limited by Twilio")]
    RateLimited {
        /// The answer's `Retry-After`, when given.
        retry_after: Option<Duration>,
    },
    /// Any other 4xx: this call will not be placed as asked. Twilio's
    /// message is kept, not shown: it may name the phone number (21211:
    /// "The 'To' number +… is not a valid phone number"), and errors are
    /// logged.
    #[error("Twilio refused the request ({status}, code {code:?})")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Twilio's error code.
        code: Option<u64>,
        /// Twilio's message.
        message: String,
    },
    /// A connection that could not be made, an answer that is not one:
    /// nothing was created.
    #[error("Twilio is unavailable: {0}")]
    Unavailable(String),
    /// A 5xx. A 503 created nothing and is tried again; another (an
    /// internal error, a gateway's timeout) may come after the request was
    /// taken, so what it asked for may exist: a call is handled as one
    /// whose answer was lost, a message is not sent again.
    #[error("Twilio answered {status}")]
    ServerError {
        /// The HTTP status.
        status: u16,
    },
    /// The request went out but its answer did not come back (a timeout,
    /// a connection lost mid-answer): Twilio may have created it. Twilio
    /// takes no idempotency key, so trying again could make a second.
    #[error("Twilio's answer did not come: {0}")]
    Uncertain(String),
}

/// The longest wait a `Retry-After` is taken at: a proxy's (or a
/// misconfigured gateway's) `Retry-After: 86400` would otherwise hold a
/// campaign's shared rate slot a day ahead, and a huge one overflow the
/// arithmetic of every wait made from it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A `Retry-After` header in seconds (the form Twilio sends), at most
/// [`MAX_RETRY_AFTER`]; `None` when absent or not a number.
fn retry_after(header: Option<&reqwest::header::HeaderValue>) -> Option<Duration> {
    header
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// The answer to a create request whose status came but whose body could
/// not be read (a connection cut mid-body): the status alone decides. A
/// 2xx created something whose SID is lost, and a 5xx other than 503 may
/// come after Twilio took the request: neither may be treated as "nothing
/// was created", or the call (or message) could be made twice.
fn unread_answer(
    status: u16,
    retry_after: Option<Duration>,
    read_error: &str,
) -> Result<String, CreateCallError> {
    match created_call(status, retry_after, "") {
        Err(CreateCallError::Uncertain(_)) => Err(CreateCallError::Uncertain(format!(
            "Twilio answered {status} but its body could not be read: {read_error}"
        ))),
        other => other,
    }
}

/// Twilio's error body: `{"code", "message", "more_info", "status"}`.
#[derive(Deserialize)]
struct ErrorBody {
    code: Option<u64>,
    message: Option<String>,
}

/// The answer to a create-call request, without I/O.
fn created_call(
    status: u16,
    retry_after: Option<Duration>,
    body: &str,
) -> Result<String, CreateCallError> {
    #[derive(Deserialize)]
    struct Created {
        sid: String,
    }
    let error = || serde_json::from_str::<ErrorBody>(body).ok();
    match status {
        200..=299 => match serde_json::from_str::<Created>(body) {
            Ok(created) if is_sid(&created.sid) => Ok(created.sid),
            // A 2xx: something was created, and its SID is unknown.
            _ => Err(CreateCallError::Uncertain(
                "Twilio's answer holds no SID".to_owned(),
            )),
        },
        429 => Err(CreateCallError::RateLimited { retry_after }),
        400..=499 => {
            let error = error();
            if error.as_ref().and_then(|e| e.code) == Some(20429) {
                return Err(CreateCallError::RateLimited { retry_after });
            }
            Err(CreateCallError::Refused {
                status,
                code: error.as_ref().and_then(|e| e.code),
                message: error
                    .and_then(|e| e.message)
                    .unwrap_or_else(|| body.chars().take(200).collect()),
            })
        }
        500..=599 => Err(CreateCallError::ServerError { status }),
        _ => Err(CreateCallError::Unavailable(format!(
            "Twilio answered {status}"
        ))),
    }
}

/// Two letters and 32 hex digits: `AC…`, `CA…`.
pub fn is_sid(sid: &str) -> bool {
    sid.len() == 34
        && sid.as_bytes()[..2].iter().all(u8::is_ascii_uppercase)
        && sid.as_bytes()[2..].iter().all(u8::is_ascii_hexdigit)
}

#[cfg(test)]
mod tests;
