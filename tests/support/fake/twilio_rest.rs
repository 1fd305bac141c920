//! A fake Twilio REST API for tests: the Calls resource as Twilio's API
//! reference describes it (form-encoded bodies, HTTP basic auth with the
//! account SID and auth token, JSON answers, 401 code 20003 for bad
//! credentials), and the calls it places.
//!
//! - Update (`POST …/Calls/{CallSid}.json`, `Status=completed|canceled`):
//!   200 with the call; a call this fake placed is hung up, or canceled
//!   while queued or ringing (a cancel leaves a call in progress going, and
//!   the answer's `status` says `in-progress`, as Twilio's does).
//! - Create (`POST …/Calls.json`): 201 with a `CA` + 32 hex SID and
//!   `status: queued`, or, as scripted for the `To` number, 429 (code
//!   20429, `Retry-After`) or 400 (code 21211). The call then lives as
//!   Twilio documents: signed status callbacks (`initiated`, `ringing`,
//!   then `in-progress`, or a final `busy`, `no-answer`, `failed`, then
//!   `completed` with `CallDuration`; each with `SequenceNumber`) to the
//!   `StatusCallback` URL for the `StatusCallbackEvent`s asked for; when the
//!   callee answers, the `<Stream url>` and `<Parameter>`s are read from the
//!   `Twiml` and a media stream opened like Twilio's ([`FakeCall`]), the
//!   callee saying its audio; answering-machine verdicts (`AnsweredBy`) in
//!   the answered callback, or to `AsyncAmdStatusCallback` with `AsyncAmd`.
//!
//! - Read (`GET …/Calls/{CallSid}.json`): 200 with the call's `status`
//!   (`queued`, `ringing`, `in-progress`, or its final one), `duration`
//!   as a string once over (null before) and `answered_by`; 404 code 20404
//!   for a call it does not have; 503 while scripted down
//!   ([`FakeTwilioRest::fail_next_reads`]). A call can be given to it as
//!   another process's would be ([`FakeTwilioRest::has_call`]).
//!
//! - Messages (`POST …/Messages.json`, `To`, `From`, `Body` of at most
//!   1,600 characters, counted as Twilio counts them, in UTF-16 code units:
//!   an emoji is two): 201 with an `SM` + 32 hex SID and `status: queued`;
//!   400 code 21602 without a body, 21617 past 1,600. Incoming
//!   messages are posted as Twilio posts them ([`FakeTwilioRest::message`]):
//!   a signed form with `MessageSid`, `AccountSid`, `From`, `To`, `Body`,
//!   `NumMedia` (and `ProfileName`, `WaId` for WhatsApp).
//!
//! Callbacks are signed for the URL Twilio was given (`https://PUBLIC_HOST/…`)
//! but delivered to the server under test ([`FakeTwilioRest::deliver_to`]),
//! which tests run on loopback HTTP. Each call is one task: hundreds at once
//! are fine.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::sync::{Notify, mpsc};

use crate::support::fake::twilio_media::{CallConfig, FakeCall, Record};
use crate::support::net;
use crate::support::wait::until_notified;

/// One update (hang-up, cancel) request the fake received.
#[derive(Debug, Clone)]
pub struct HangUpRequest {
    pub account_sid: String,
    pub call_sid: String,
    pub path: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub form: Vec<(String, String)>,
    pub at: Instant,
}

/// One create-call request.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub account_sid: String,
    pub form: Vec<(String, String)>,
    /// The answer's status, and the SID when 201.
    pub status: u16,
    pub sid: Option<String>,
    pub at: Instant,
}

impl CreateRequest {
    pub fn field(&self, name: &str) -> Option<&str> {
        field(&self.form, name)
    }

    pub fn fields(&self, name: &str) -> Vec<&str> {
        self.form
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// One callback the fake posted, and how the server answered.
#[derive(Debug, Clone)]
pub struct PostedCallback {
    pub call_sid: String,
    /// The URL Twilio was given (and signed).
    pub url: String,
    pub form: Vec<(String, String)>,
    pub answer: u16,
}

impl PostedCallback {
    pub fn field(&self, name: &str) -> Option<&str> {
        field(&self.form, name)
    }
}

/// What the callee does.
#[derive(Debug, Clone, Default)]
pub struct Callee {
    /// mu-law at 8 kHz said once the stream starts.
    pub says: Vec<u8>,
    /// Hang up once this much of the bot's audio (ms) has been heard; else
    /// stay until the server ends the call.
    pub hang_up_after_heard_ms: Option<usize>,
}

/// How a number answers.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A person answers (`AnsweredBy=human` when detection runs).
    Human(Callee),
    /// A machine answers: `answered_by` is the verdict
    /// (`machine_end_beep`, `machine_start`, …).
    Machine {
        answered_by: String,
        callee: Callee,
    },
    Busy,
    NoAnswer,
    Failed,
    /// Rings until canceled (or hung up) through the REST API.
    RingsUntilCanceled,
    /// The create request answers 429 (error 20429), `Retry-After: 1`.
    RateLimited,
    /// The create request answers 400 (error 21211).
    InvalidNumber,
    /// Twilio is slow: the call is created, but the create request's
    /// answer and every callback come only after this long (calls over
    /// the account's rate queue at Twilio); then nobody answers.
    SlowNoAnswer(Duration),
}

/// A call's end, asked for through the REST API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Complete,
    Cancel,
}

/// `GET …/Calls/{CallSid}.json`: the call as it stands.
async fn read_call(
    State(shared): State<Arc<Shared>>,
    Path((account_sid, call)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    shared.reads.fetch_add(1, Ordering::SeqCst);
    if !authenticated(&shared, &account_sid, &headers) {
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let down = shared
        .reads_down
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if down {
        return twilio_error(
            StatusCode::SERVICE_UNAVAILABLE,
            20503,
            "Service Unavailable",
        );
    }
    let call_sid = call.strip_suffix(".json").unwrap_or(&call);
    let Some(placed) = shared.calls.lock().unwrap().get(call_sid).cloned() else {
        return twilio_error(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        );
    };
    let status = match (&placed.final_status, placed.answered) {
        (Some(status), _) => status.clone(),
        (None, true) => "in-progress".to_owned(),
        (None, false) => "ringing".to_owned(),
    };
    let duration = placed
        .final_status
        .as_ref()
        .map(|_| placed.duration_secs.to_string());
    axum::Json(serde_json::json!({
        "account_sid": account_sid,
        "sid": placed.sid,
        "status": status,
        "duration": duration,
        "answered_by": placed.answered_by,
        "direction": "outbound-api",
    }))
    .into_response()
}

/// A call the fake placed.
#[derive(Debug, Clone, Default)]
pub struct PlacedCall {
    pub sid: String,
    pub to: String,
    pub callbacks: Vec<PostedCallback>,
    /// The stream's parameters, once it opened.
    pub stream_parameters: Option<Vec<(String, String)>>,
    /// What the callee heard and did, once the stream is over.
    pub media: Option<Record>,
    /// The final status posted, once over.
    pub final_status: Option<String>,
    /// Answered (`in-progress` until its final status).
    pub answered: bool,
    /// Seconds connected, once over (what a read of it says).
    pub duration_secs: u64,
    /// The answering-machine verdict, when detection ran.
    pub answered_by: Option<String>,
}

/// A message sent through the Messages resource.
#[derive(Debug, Clone)]
pub struct SentMessage {
    pub sid: String,
    pub to: String,
    pub from: String,
    pub body: String,
    /// Its `StatusCallback`, if it asked for one.
    pub status_callback: Option<String>,
    pub at: Instant,
}

struct Shared {
    auth_token: String,
    messages: Mutex<Vec<SentMessage>>,
    requests: Mutex<Vec<HangUpRequest>>,
    creates: Mutex<Vec<CreateRequest>>,
    calls: Mutex<HashMap<String, PlacedCall>>,
    controls: Mutex<HashMap<String, mpsc::UnboundedSender<Control>>>,
    outcomes: Mutex<HashMap<String, Outcome>>,
    default_outcome: Mutex<Outcome>,
    target: Mutex<Option<SocketAddr>>,
    changed: Notify,
    next_sid: AtomicU64,
    /// How many of the next message creates answer 503.
    messages_down: AtomicU64,
    /// How many message creates were answered 503.
    messages_refused: AtomicU64,
    /// Whether a message create with a `StatusCallback` is refused as
    /// Twilio refuses an invalid one (400, 21609).
    callbacks_invalid: AtomicBool,
    /// How many message creates were refused for their `StatusCallback`.
    callbacks_refused: AtomicU64,
    /// How many of the next call reads answer 503.
    reads_down: AtomicU64,
    /// Call reads received.
    reads: AtomicU64,
    http: reqwest::Client,
}

/// The fake API, listening on a free loopback port.
pub struct FakeTwilioRest {
    pub base_url: String,
    shared: Arc<Shared>,
}

/// The account the fake serves.
pub const ACCOUNT_SID: &str = "AC0000000000000000000000000000acc0";

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn basic_auth(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| BASE64.decode(b64).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(u, p)| (Some(u.to_owned()), Some(p.to_owned())))
        })
        .unwrap_or((None, None))
}

fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({
            "code": code, "message": message, "status": status.as_u16(),
            "more_info": format!("https://www.twilio.com/docs/errors/{code}")
        })),
    )
        .into_response()
}

fn authenticated(shared: &Shared, account_sid: &str, headers: &HeaderMap) -> bool {
    let (username, password) = basic_auth(headers);
    username.as_deref() == Some(account_sid) && password.as_deref() == Some(&*shared.auth_token)
}

async fn calls(
    State(shared): State<Arc<Shared>>,
    Path((account_sid, call)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    if call == "Calls.json" {
        return create_call(shared, account_sid, headers, form).await;
    }
    if call == "Messages.json" {
        return create_message(&shared, &account_sid, &headers, &form);
    }
    update_call(shared, account_sid, call, headers, form)
}

fn update_call(
    shared: Arc<Shared>,
    account_sid: String,
    call: String,
    headers: HeaderMap,
    form: Vec<(String, String)>,
) -> Response {
    let call_sid = call.strip_suffix(".json").unwrap_or(&call).to_owned();
    let (username, password) = basic_auth(&headers);
    shared.requests.lock().unwrap().push(HangUpRequest {
        account_sid: account_sid.clone(),
        call_sid: call_sid.clone(),
        path: format!("/2010-04-01/Accounts/{account_sid}/Calls/{call}"),
        username,
        password,
        form: form.clone(),
        at: Instant::now(),
    });
    shared.changed.notify_waiters();
    if !authenticated(&shared, &account_sid, &headers) {
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    // Twilio's `canceled` ends a queued or ringing call only: one in
    // progress goes on, and the answer says so.
    let in_progress = shared
        .calls
        .lock()
        .unwrap()
        .get(&call_sid)
        .is_some_and(|c| c.answered && c.final_status.is_none());
    let (control, answer_status) = match field(&form, "Status") {
        Some("canceled") if in_progress => (None, "in-progress"),
        Some("canceled") => (Some(Control::Cancel), "canceled"),
        Some("completed") => (Some(Control::Complete), "completed"),
        other => (None, other.unwrap_or("in-progress")),
    };
    if let (Some(control), Some(tx)) = (control, shared.controls.lock().unwrap().get(&call_sid)) {
        let _ = tx.send(control);
    }
    axum::Json(serde_json::json!({
        "account_sid": account_sid,
        "sid": call_sid,
        "status": answer_status,
        "api_version": "2010-04-01",
        "uri": format!("/2010-04-01/Accounts/{account_sid}/Calls/{call_sid}.json"),
    }))
    .into_response()
}

fn create_message(
    shared: &Shared,
    account_sid: &str,
    headers: &HeaderMap,
    form: &[(String, String)],
) -> Response {
    if !authenticated(shared, account_sid, headers) {
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let down = shared
        .messages_down
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    if down.is_ok() {
        shared.messages_refused.fetch_add(1, Ordering::SeqCst);
        return twilio_error(
            StatusCode::SERVICE_UNAVAILABLE,
            20503,
            "Service Unavailable",
        );
    }
    let (Some(to), Some(from)) = (field(form, "To"), field(form, "From")) else {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21604,
            "A 'To' phone number is required",
        );
    };
    if shared.callbacks_invalid.load(Ordering::SeqCst) && field(form, "StatusCallback").is_some() {
        shared.callbacks_refused.fetch_add(1, Ordering::SeqCst);
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21609,
            "The StatusCallback URL https://voice_1.example.com/twilio/messages/status is not a valid URL.",
        );
    }
    let body = field(form, "Body").unwrap_or_default();
    if body.is_empty() {
        return twilio_error(StatusCode::BAD_REQUEST, 21602, "Message body is required");
    }
    if body.encode_utf16().count() > 1_600 {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21617,
            "The concatenated message body exceeds the 1600 character limit",
        );
    }
    let n = shared.next_sid.fetch_add(1, Ordering::Relaxed) + 1;
    let sid = format!("SM{n:032x}");
    shared.messages.lock().unwrap().push(SentMessage {
        sid: sid.clone(),
        to: to.to_owned(),
        from: from.to_owned(),
        body: body.to_owned(),
        status_callback: field(form, "StatusCallback").map(str::to_owned),
        at: Instant::now(),
    });
    shared.changed.notify_waiters();
    let answer = serde_json::json!({
        "sid": sid, "account_sid": account_sid, "to": to, "from": from, "body": body,
        "status": "queued", "direction": "outbound-api", "num_segments": "1",
        "api_version": "2010-04-01",
        "uri": format!("/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json"),
    });
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

async fn create_call(
    shared: Arc<Shared>,
    account_sid: String,
    headers: HeaderMap,
    form: Vec<(String, String)>,
) -> Response {
    let record = |status: u16, sid: Option<String>| {
        shared.creates.lock().unwrap().push(CreateRequest {
            account_sid: account_sid.clone(),
            form: form.clone(),
            status,
            sid,
            at: Instant::now(),
        });
        shared.changed.notify_waiters();
    };
    if !authenticated(&shared, &account_sid, &headers) {
        record(401, None);
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let (Some(to), Some(from), Some(_twiml)) = (
        field(&form, "To"),
        field(&form, "From"),
        field(&form, "Twiml"),
    ) else {
        record(400, None);
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21201,
            "No 'To', 'From' or 'Twiml' specified",
        );
    };
    let outcome = shared
        .outcomes
        .lock()
        .unwrap()
        .get(to)
        .cloned()
        .unwrap_or_else(|| shared.default_outcome.lock().unwrap().clone());
    match outcome {
        Outcome::RateLimited => {
            record(429, None);
            let mut response =
                twilio_error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests");
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, "1".parse().unwrap());
            return response;
        }
        Outcome::InvalidNumber => {
            record(400, None);
            return twilio_error(StatusCode::BAD_REQUEST, 21211, "Invalid 'To' Phone Number");
        }
        _ => {}
    }
    let n = shared.next_sid.fetch_add(1, Ordering::Relaxed) + 1;
    let sid = format!("CA{n:032x}");
    let (tx, rx) = mpsc::unbounded_channel();
    shared.controls.lock().unwrap().insert(sid.clone(), tx);
    shared.calls.lock().unwrap().insert(
        sid.clone(),
        PlacedCall {
            sid: sid.clone(),
            to: to.to_owned(),
            ..PlacedCall::default()
        },
    );
    let body = serde_json::json!({
        "sid": sid, "account_sid": account_sid, "to": to, "from": from,
        "status": "queued", "direction": "outbound-api", "api_version": "2010-04-01",
        "uri": format!("/2010-04-01/Accounts/{account_sid}/Calls/{sid}.json"),
    });
    record(201, Some(sid.clone()));
    // The call goes on at Twilio whether or not its creator waits for the
    // answer (a client that gives up drops this handler).
    let slow = match outcome {
        Outcome::SlowNoAnswer(after) => after,
        _ => Duration::ZERO,
    };
    let call = run_call(Arc::clone(&shared), sid, account_sid, form, outcome, rx);
    tokio::spawn(async move {
        tokio::time::sleep(slow).await;
        call.await;
    });
    tokio::time::sleep(slow).await;
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

/// Twilio's signature: HMAC-SHA1 of the URL and the sorted parameters
/// (names and values concatenated), base64, keyed with the auth token.
pub fn sign(auth_token: &str, url: &str, form: &[(String, String)]) -> String {
    let mut params = form.to_vec();
    params.sort();
    let mut text = url.to_owned();
    for (name, value) in params {
        text.push_str(&name);
        text.push_str(&value);
    }
    let key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        auth_token.as_bytes(),
    );
    BASE64.encode(ring::hmac::sign(&key, text.as_bytes()).as_ref())
}

/// The path and query of `url` (`https://host/path?query` → `/path?query`).
pub fn path_and_query(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.find('/').map_or("/", |at| &rest[at..])
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#10;", "\n")
        .replace("&#13;", "\r")
        .replace("&#9;", "\t")
        .replace("&amp;", "&")
}

/// The attribute `name="…"` of the tag starting `tag`.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let end = tag[start..].find('"')? + start;
    Some(unescape(&tag[start..end]))
}

/// The `<Stream url>` and `<Parameter>`s of `<Connect><Stream>` TwiML.
pub fn read_stream_twiml(twiml: &str) -> Option<(String, Vec<(String, String)>)> {
    let stream = twiml.find("<Stream ")?;
    let url = attribute(&twiml[stream..], "url")?;
    let parameters = twiml
        .match_indices("<Parameter ")
        .filter_map(|(at, _)| {
            let tag = &twiml[at..at + twiml[at..].find("/>")?];
            Some((attribute(tag, "name")?, attribute(tag, "value")?))
        })
        .collect();
    Some((url, parameters))
}

struct Lifecycle {
    shared: Arc<Shared>,
    sid: String,
    account_sid: String,
    form: Vec<(String, String)>,
    sequence: u64,
}

impl Lifecycle {
    fn requested(&self, event: &str) -> bool {
        self.form
            .iter()
            .any(|(k, v)| k == "StatusCallbackEvent" && v.split(' ').any(|e| e == event))
    }

    /// Posts one callback, signed, and records it.
    async fn post(&self, url: &str, form: Vec<(String, String)>) {
        let target = *self.shared.target.lock().unwrap();
        let Some(target) = target else {
            return;
        };
        let signature = sign(&self.shared.auth_token, url, &form);
        let answer = self
            .shared
            .http
            .post(format!("http://{target}{}", path_and_query(url)))
            .header("X-Twilio-Signature", signature)
            .form(&form)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        let posted = PostedCallback {
            call_sid: self.sid.clone(),
            url: url.to_owned(),
            form,
            answer,
        };
        if let Some(call) = self.shared.calls.lock().unwrap().get_mut(&self.sid) {
            call.callbacks.push(posted);
        }
        self.shared.changed.notify_waiters();
    }

    fn base_form(&self) -> Vec<(String, String)> {
        let mut form = vec![
            ("AccountSid".to_owned(), self.account_sid.clone()),
            ("CallSid".to_owned(), self.sid.clone()),
            ("ApiVersion".to_owned(), "2010-04-01".to_owned()),
        ];
        for name in ["From", "To"] {
            if let Some(value) = field(&self.form, name) {
                form.push((name.to_owned(), value.to_owned()));
            }
        }
        form
    }

    /// A status callback for `event` (`CallStatus` = `status`).
    async fn status(&mut self, event: &str, status: &str, extra: &[(&str, String)]) {
        if !self.requested(event) {
            return;
        }
        let Some(url) = field(&self.form, "StatusCallback").map(str::to_owned) else {
            return;
        };
        let mut form = self.base_form();
        form.push(("CallStatus".to_owned(), status.to_owned()));
        form.push(("Direction".to_owned(), "outbound-api".to_owned()));
        form.push((
            "CallbackSource".to_owned(),
            "call-progress-events".to_owned(),
        ));
        form.push(("SequenceNumber".to_owned(), self.sequence.to_string()));
        form.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        self.sequence += 1;
        self.post(&url, form).await;
        if matches!(
            status,
            "completed" | "busy" | "no-answer" | "failed" | "canceled"
        ) {
            if let Some(call) = self.shared.calls.lock().unwrap().get_mut(&self.sid) {
                call.final_status = Some(status.to_owned());
                call.duration_secs = extra
                    .iter()
                    .find(|(k, _)| *k == "CallDuration")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
            }
            self.shared.changed.notify_waiters();
        }
    }
}

async fn run_call(
    shared: Arc<Shared>,
    sid: String,
    account_sid: String,
    form: Vec<(String, String)>,
    outcome: Outcome,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    let mut call = Lifecycle {
        shared,
        sid,
        account_sid,
        form,
        sequence: 0,
    };
    call.status("initiated", "initiated", &[]).await;
    call.status("ringing", "ringing", &[]).await;
    let (answered_by, callee) = match outcome {
        Outcome::Busy => return call.status("completed", "busy", &[]).await,
        Outcome::NoAnswer => return call.status("completed", "no-answer", &[]).await,
        Outcome::Failed => return call.status("completed", "failed", &[]).await,
        Outcome::RateLimited | Outcome::InvalidNumber => return,
        Outcome::SlowNoAnswer(_) => return call.status("completed", "no-answer", &[]).await,
        Outcome::RingsUntilCanceled => {
            let status = match control.recv().await {
                Some(Control::Complete) => "completed",
                _ => "canceled",
            };
            return call.status("completed", status, &[]).await;
        }
        Outcome::Human(callee) => ("human".to_owned(), callee),
        Outcome::Machine {
            answered_by,
            callee,
        } => (answered_by, callee),
    };
    if let Ok(Control::Cancel) = control.try_recv() {
        return call.status("completed", "canceled", &[]).await;
    }
    let detection = field(&call.form, "MachineDetection").is_some();
    let async_amd = field(&call.form, "AsyncAmd") == Some("true");
    let mut answered = Vec::new();
    if detection && !async_amd {
        answered.push(("AnsweredBy", answered_by.clone()));
    }
    let answered_at = Instant::now();
    if let Some(placed) = call.shared.calls.lock().unwrap().get_mut(&call.sid) {
        placed.answered = true;
        placed.answered_by = detection.then(|| answered_by.clone());
    }
    call.status("answered", "in-progress", &answered).await;
    let stream = field(&call.form, "Twiml").and_then(read_stream_twiml);
    let target = *call.shared.target.lock().unwrap();
    let media = match (stream, target) {
        (Some((url, parameters)), Some(target)) if path_and_query(&url) == "/twilio/ws" => {
            if let Some(placed) = call.shared.calls.lock().unwrap().get_mut(&call.sid) {
                placed.stream_parameters = Some(parameters.clone());
            }
            let n = u32::try_from(call.sequence).unwrap_or(0);
            let mut config = CallConfig::new(n);
            config.account_sid = call.account_sid.clone();
            config.call_sid = call.sid.clone();
            config.stream_sid = format!("MZ{}", &call.sid[2..]);
            config.custom_parameters = parameters;
            config.auth_token = Some(call.shared.auth_token.clone());
            config.stream_url = Some(url);
            Some(FakeCall::connect(target, config).await)
        }
        _ => None,
    };
    if detection
        && async_amd
        && let Some(url) = field(&call.form, "AsyncAmdStatusCallback").map(str::to_owned)
    {
        let mut form = call.base_form();
        form.push(("AnsweredBy".to_owned(), answered_by.clone()));
        form.push(("MachineDetectionDuration".to_owned(), "1800".to_owned()));
        call.post(&url, form).await;
    }
    if let Some(media) = &media {
        if !callee.says.is_empty() {
            media.say(callee.says.clone());
        }
        let heard_enough = async {
            match callee.hang_up_after_heard_ms {
                Some(ms) => {
                    media
                        .wait_until(Duration::from_secs(120), |r| {
                            r.heard.len() >= ms * 8 || r.ended
                        })
                        .await;
                }
                None => {
                    media.closed(Duration::from_secs(3600)).await;
                }
            }
        };
        tokio::select! {
            () = heard_enough => {}
            _ = control.recv() => {}
        }
        media.stop();
        // Twilio closes the socket after `stop`; the server closes too.
        media.closed(Duration::from_secs(60)).await;
        let record = media.record();
        if let Some(placed) = call.shared.calls.lock().unwrap().get_mut(&call.sid) {
            placed.media = Some(record);
        }
    } else {
        let _ = control.recv().await;
    }
    let duration = answered_at.elapsed().as_secs().max(1).to_string();
    call.status(
        "completed",
        "completed",
        &[("CallDuration", duration.clone()), ("Duration", duration)],
    )
    .await;
    call.shared.controls.lock().unwrap().remove(&call.sid);
}

impl FakeTwilioRest {
    /// Starts the fake, accepting `auth_token` as the account's token. Every
    /// number answers as a person who says nothing, unless scripted.
    pub async fn start(auth_token: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let shared = Arc::new(Shared {
            auth_token: auth_token.to_owned(),
            messages: Mutex::default(),
            requests: Mutex::default(),
            creates: Mutex::default(),
            calls: Mutex::default(),
            controls: Mutex::default(),
            outcomes: Mutex::default(),
            default_outcome: Mutex::new(Outcome::Human(Callee::default())),
            target: Mutex::default(),
            changed: Notify::new(),
            next_sid: AtomicU64::new(0),
            messages_down: AtomicU64::new(0),
            messages_refused: AtomicU64::new(0),
            callbacks_invalid: AtomicBool::new(false),
            callbacks_refused: AtomicU64::new(0),
            reads_down: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            http: reqwest::Client::new(),
        });
        let app = Router::new()
            .route("/2010-04-01/Accounts/{account}/{call}", post(calls))
            .route(
                "/2010-04-01/Accounts/{account}/Calls/{call}",
                post(
                    |State(shared): State<Arc<Shared>>,
                     Path((account_sid, call)): Path<(String, String)>,
                     headers: HeaderMap,
                     body: Bytes| async move {
                        let form = form_urlencoded::parse(&body).into_owned().collect();
                        update_call(shared, account_sid, call, headers, form)
                    },
                )
                .get(read_call),
            )
            .with_state(Arc::clone(&shared));
        let addr = net::serve(app).await;
        FakeTwilioRest {
            base_url: format!("http://{addr}"),
            shared,
        }
    }

    /// Delivers callbacks and opens media streams to the server at `addr`.
    pub fn deliver_to(&self, addr: SocketAddr) {
        *self.shared.target.lock().unwrap() = Some(addr);
    }

    /// How `to` answers from now on.
    pub fn script(&self, to: &str, outcome: Outcome) {
        self.shared
            .outcomes
            .lock()
            .unwrap()
            .insert(to.to_owned(), outcome);
    }

    /// How numbers not scripted answer.
    pub fn script_default(&self, outcome: Outcome) {
        *self.shared.default_outcome.lock().unwrap() = outcome;
    }

    /// Update (hang-up, cancel) requests, in order.
    pub fn requests(&self) -> Vec<HangUpRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Create-call requests, in order.
    pub fn creates(&self) -> Vec<CreateRequest> {
        self.shared.creates.lock().unwrap().clone()
    }

    /// The call `sid`, as far as it went.
    pub fn call(&self, sid: &str) -> Option<PlacedCall> {
        self.shared.calls.lock().unwrap().get(sid).cloned()
    }

    /// Gives the fake a call another process placed: `sid`, to `to`, now
    /// `status` (a final one, `in-progress` or `ringing`), connected
    /// `duration_secs` once over. Its callbacks are not posted: it is read.
    pub fn has_call(&self, sid: &str, to: &str, status: &str, duration_secs: u64) {
        let over = !matches!(status, "in-progress" | "ringing" | "queued");
        self.shared.calls.lock().unwrap().insert(
            sid.to_owned(),
            PlacedCall {
                sid: sid.to_owned(),
                to: to.to_owned(),
                final_status: over.then(|| status.to_owned()),
                answered: status == "in-progress" || status == "completed",
                duration_secs,
                ..PlacedCall::default()
            },
        );
    }

    /// Answers the next `n` call reads 503.
    pub fn fail_next_reads(&self, n: u64) {
        self.shared.reads_down.store(n, Ordering::SeqCst);
    }

    /// Call reads received (refused ones too).
    pub fn reads(&self) -> u64 {
        self.shared.reads.load(Ordering::SeqCst)
    }

    /// Waits until `n` update requests have come, or panics after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<HangUpRequest> {
        until_notified(&self.shared.changed, timeout, || {
            let requests = self.requests();
            (requests.len() >= n).then_some(requests)
        })
        .await
        .unwrap_or_else(|| panic!("expected {n} hang-up requests, got {:?}", self.requests()))
    }

    /// Waits until `n` create requests have come, or panics after `timeout`.
    pub async fn wait_creates(&self, n: usize, timeout: Duration) -> Vec<CreateRequest> {
        until_notified(&self.shared.changed, timeout, || {
            let creates = self.creates();
            (creates.len() >= n).then_some(creates)
        })
        .await
        .unwrap_or_else(|| panic!("expected {n} create requests, got {}", self.creates().len()))
    }

    /// Waits until the call `sid` has posted its final status (and its
    /// stream, if any, is over), or panics after `timeout`.
    pub async fn wait_final(&self, sid: &str, timeout: Duration) -> PlacedCall {
        until_notified(&self.shared.changed, timeout, || {
            self.call(sid).filter(|call| call.final_status.is_some())
        })
        .await
        .unwrap_or_else(|| panic!("call {sid} did not end: {:?}", self.call(sid)))
    }

    /// Waits until `check` holds for the call `sid`.
    pub async fn wait_call(
        &self,
        sid: &str,
        timeout: Duration,
        check: impl Fn(&PlacedCall) -> bool,
    ) -> PlacedCall {
        until_notified(&self.shared.changed, timeout, || {
            self.call(sid).filter(|call| check(call))
        })
        .await
        .unwrap_or_else(|| panic!("call {sid}: condition not met: {:?}", self.call(sid)))
    }

    /// The next `n` message creates answer 503 (Twilio down), creating
    /// nothing.
    pub fn fail_next_messages(&self, n: u64) {
        self.shared.messages_down.store(n, Ordering::SeqCst);
    }

    /// How many message creates were answered 503.
    pub fn refused_messages(&self) -> u64 {
        self.shared.messages_refused.load(Ordering::SeqCst)
    }

    /// From now on every message create with a `StatusCallback` is
    /// refused as Twilio refuses an invalid one (400, error 21609, as a
    /// hostname with `_` is), creating nothing.
    pub fn refuse_status_callbacks(&self) {
        self.shared.callbacks_invalid.store(true, Ordering::SeqCst);
    }

    /// How many message creates were refused for their `StatusCallback`.
    pub fn refused_callbacks(&self) -> u64 {
        self.shared.callbacks_refused.load(Ordering::SeqCst)
    }

    /// Messages sent through the Messages resource, in order.
    pub fn messages(&self) -> Vec<SentMessage> {
        self.shared.messages.lock().unwrap().clone()
    }

    /// Waits until `n` messages have been sent, or panics after `timeout`.
    pub async fn wait_messages(&self, n: usize, timeout: Duration) -> Vec<SentMessage> {
        until_notified(&self.shared.changed, timeout, || {
            let messages = self.messages();
            (messages.len() >= n).then_some(messages)
        })
        .await
        .unwrap_or_else(|| panic!("expected {n} messages, got {:?}", self.messages()))
    }

    /// Posts an incoming message from `from` to `to` (WhatsApp when they
    /// are `whatsapp:` addresses) to `url`'s path on the server, signed as
    /// Twilio signs it, with the id `message_sid` (the same on a retry) and
    /// `num_media` media items. Returns the answer's status and body (the
    /// TwiML).
    pub async fn message(
        &self,
        url: &str,
        message_sid: &str,
        (from, to): (&str, &str),
        body: &str,
        num_media: usize,
    ) -> (u16, String) {
        self.message_with(url, message_sid, (from, to), body, num_media, &[])
            .await
    }

    /// As [`message`](Self::message), with `extra` fields in the form (such
    /// as Advanced Opt-Out's `OptOutType`).
    pub async fn message_with(
        &self,
        url: &str,
        message_sid: &str,
        (from, to): (&str, &str),
        body: &str,
        num_media: usize,
        extra: &[(&str, &str)],
    ) -> (u16, String) {
        let mut form: Vec<(String, String)> = [
            ("MessageSid", message_sid),
            ("SmsMessageSid", message_sid),
            ("AccountSid", ACCOUNT_SID),
            ("MessagingServiceSid", ""),
            ("From", from),
            ("To", to),
            ("Body", body),
            ("NumSegments", "1"),
            ("SmsStatus", "received"),
            ("ApiVersion", "2010-04-01"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        form.push(("NumMedia".to_owned(), num_media.to_string()));
        for i in 0..num_media {
            form.push((
                format!("MediaUrl{i}"),
                format!("https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{message_sid}/Media/ME{i}"),
            ));
            form.push((format!("MediaContentType{i}"), "image/jpeg".to_owned()));
        }
        if let Some(number) = from.strip_prefix("whatsapp:+") {
            form.push(("ProfileName".to_owned(), "Test User".to_owned()));
            form.push(("WaId".to_owned(), number.to_owned()));
        }
        for (name, value) in extra {
            form.push(((*name).to_owned(), (*value).to_owned()));
        }
        let target = self
            .shared
            .target
            .lock()
            .unwrap()
            .expect("deliver_to first");
        let response = self
            .shared
            .http
            .post(format!("http://{target}{}", path_and_query(url)))
            .header(
                "X-Twilio-Signature",
                sign(&self.shared.auth_token, url, &form),
            )
            .form(&form)
            .send()
            .await;
        // A connection the server closed without an answer: status 0.
        let response = match response {
            Ok(response) => response,
            Err(err) => return (0, err.to_string()),
        };
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// Posts `form` to `url`'s path on the server, signed for `url` with
    /// the account's token (or `signature` when given): a callback as
    /// Twilio would send it, for out-of-order and forged ones. Returns the
    /// answer's status.
    pub async fn post_signed(
        &self,
        url: &str,
        form: &[(&str, &str)],
        signature: Option<&str>,
    ) -> u16 {
        let form: Vec<(String, String)> = form
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let target = self
            .shared
            .target
            .lock()
            .unwrap()
            .expect("deliver_to first");
        let signature =
            signature.map_or_else(|| sign(&self.shared.auth_token, url, &form), str::to_owned);
        let mut request = self
            .shared
            .http
            .post(format!("http://{target}{}", path_and_query(url)))
            .form(&form);
        if !signature.is_empty() {
            request = request.header("X-Twilio-Signature", signature);
        }
        request.send().await.unwrap().status().as_u16()
    }
}
