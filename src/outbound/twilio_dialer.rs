//! [`TwilioDialer`]: the [`Dialer`] that places calls through Twilio's
//! Calls resource.
//!
//! One dial, in order: write the record (`queued`, `direction: outbound`;
//! an existing one is never reset, and one Twilio already took is not
//! placed again), hold the number's limit (`rate_limit:{phone_hash}`:
//! another call to a number that was reached within `rate_limit_hours`,
//! or is live, is refused), ask Twilio (the TwiML connects the answered
//! call to `wss://PUBLIC_HOST/twilio/ws` with the call id as a
//! `<Parameter>`), then record the SID (`initiated`) or the failure. A
//! refusal settles the call as failed; a 429 or an outage leaves it
//! queued, the number let go, for the caller to try again.
//!
//! A request that timed out may still have reached Twilio: Twilio has no
//! idempotency key, so trying it again can place the call twice.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::agent::AgentRuntime;
use crate::config::TwilioSection;
use crate::pipeline::EnvSource;
use crate::store::time::unix_ms;
use crate::store::{
    CallChange, CallDirection, CallRecord, CallStatus, OutboundCall, PhoneSalt, RequestNote,
    Segment, Store,
};
use crate::transport::twilio::stream_token::{STREAM_TOKEN_PARAMETER, StreamTokens};
use crate::transport::twilio::{
    CallResource, CreateCall, CreateCallError, EndCall, HangUp, HangUpError, TwilioRest, twiml,
};

use super::asked_calls::{Asked, AskedCalls};
use super::config::{AmdMode, OutboundSection};
use super::dialer::{DialError, Dialer, PlacedCall};
use super::lost_sessions::LostSessions;
use super::phone::PhoneHasher;
use super::request::CallRequest;
use super::settle::{Settlement, ended_by};
use super::settled::CallSettled;
pub use super::setup_error::OutboundSetupError;

/// The media stream's path, which the TwiML points Twilio at.
pub const STREAM_PATH: &str = "/twilio/ws";
/// The status callback's path.
pub const STATUS_PATH: &str = "/twilio/status";
/// The asynchronous answering-machine detection callback's path.
pub const AMD_PATH: &str = "/twilio/amd";
pub use super::request::CALL_ID_PARAMETER;

/// How long a number is held for a call when `rate_limit_hours` is 0: at
/// least as long as a call can last (the hold is let go when it settles).
const LIVE_CALL_HOLD: Duration = Duration::from_secs(4 * 3600);
/// What an outbound call's stream token must outlive beyond the ring
/// timeout: Twilio's queue at the account's calls per second, then
/// answering-machine detection before the TwiML runs (30 s by default).
const STREAM_TOKEN_MARGIN: Duration = Duration::from_secs(120);
/// Twilio's wait when a 429 gives no `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Places calls through Twilio and settles the ones it sees end.
pub struct TwilioDialer {
    rest: TwilioRest,
    account_sid: String,
    pub(super) section: OutboundSection,
    public_host: String,
    default_segment: Segment,
    hasher: PhoneHasher,
    /// Tokens the TwiML hands each call's stream (`stream_token`).
    stream_tokens: Option<StreamTokens>,
    runtime: Arc<AgentRuntime>,
    settlement: Settlement,
    lost_sessions: LostSessions,
    /// Calls whose voicemail this process has left (or is leaving).
    pub(super) voicemails: Mutex<HashSet<String>>,
    /// Calls asked of Twilio whose SID the store lacks: never dialled
    /// again by this process.
    asked: AskedCalls,
}

impl std::fmt::Debug for TwilioDialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioDialer")
            .field("public_host", &self.public_host)
            .finish_non_exhaustive()
    }
}

impl TwilioDialer {
    /// The dialler `[outbound]` and `[transport.twilio]` describe, for the
    /// server reached at `public_host`, keeping calls in `runtime`'s store
    /// and telling `listeners` of calls that settle.
    pub fn from_sections(
        section: &OutboundSection,
        twilio: &TwilioSection,
        public_host: Option<&str>,
        default_segment: Segment,
        env: &EnvSource,
        runtime: Arc<AgentRuntime>,
        listeners: Vec<Arc<dyn CallSettled>>,
    ) -> Result<Self, OutboundSetupError> {
        let public_host = public_host.ok_or(OutboundSetupError::Missing(
            "[server] public_host: the host Twilio reaches this server at",
        ))?;
        let read = |key: &str, var: &Option<String>, missing: &'static str| {
            let var = var.as_ref().ok_or(OutboundSetupError::Missing(missing))?;
            env.get(var)
                .filter(|value| !value.is_empty())
                .ok_or_else(|| OutboundSetupError::MissingEnv {
                    key: key.to_owned(),
                    var: var.clone(),
                })
        };
        let account_sid = read(
            "transport.twilio.account_sid_env",
            &twilio.account_sid_env,
            "[transport.twilio] account_sid_env",
        )?;
        if !crate::transport::twilio::rest::is_sid(&account_sid) || !account_sid.starts_with("AC") {
            return Err(OutboundSetupError::BadAccountSid);
        }
        let auth_token = read(
            "transport.twilio.auth_token_env",
            &twilio.auth_token_env,
            "[transport.twilio] auth_token_env",
        )?;
        // The auth token was read above, so only a salt variable that is
        // not set leaves no hasher.
        let hasher = PhoneSalt::new(section.phone_hash_salt_env.as_deref(), twilio)
            .hasher(|var| env.get(var))?
            .ok_or(OutboundSetupError::Missing(
                "[transport.twilio] auth_token_env",
            ))?;
        // Issued when the call is asked for, checked when it is answered:
        // `stream_token_ttl_secs` (300 s by default) could end before a
        // call allowed to ring `timeout_secs` (up to 600 s) is answered.
        let outlive = u64::from(section.timeout_secs) + STREAM_TOKEN_MARGIN.as_secs();
        let stream_tokens = StreamTokens::from_config(twilio, &auth_token)
            .map(|tokens| tokens.living_at_least(outlive));
        let rest = TwilioRest::new(twilio.api_base_url.as_str(), auth_token)?;
        let settlement = Settlement::new(
            Arc::clone(&runtime),
            listeners,
            section.rate_limit_hours > 0,
        );
        let lost_sessions =
            LostSessions::new(runtime.lost_session_sweeper(), section.lost_session_grace);
        Ok(TwilioDialer {
            rest,
            account_sid,
            section: section.clone(),
            public_host: public_host.to_owned(),
            default_segment,
            hasher,
            stream_tokens,
            runtime,
            lost_sessions,
            settlement,
            voicemails: Mutex::new(HashSet::new()),
            asked: AskedCalls::default(),
        })
    }

    /// The phone hasher (the same salt on every server of a deployment).
    pub fn hasher(&self) -> &PhoneHasher {
        &self.hasher
    }

    /// `[outbound]`.
    pub fn section(&self) -> &OutboundSection {
        &self.section
    }

    /// The store calls are kept in.
    pub fn store(&self) -> &Arc<dyn Store> {
        self.runtime.store()
    }

    /// Calls whose session was lost: noted by the status callbacks,
    /// ended by the sweeper every server runs.
    pub fn lost_sessions(&self) -> &LostSessions {
        &self.lost_sessions
    }

    /// Settles `call`, which has reached a final status.
    pub async fn settle(&self, call: &CallRecord) {
        self.voicemails
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&call.call_id);
        self.settlement.settle(call).await;
    }

    /// Writes the record of `request` as call `call_id` (`queued`) unless it
    /// exists, before it is dialled: what `POST /api/calls` answers with.
    /// True when it was written, false when the call existed.
    pub async fn queue(&self, call_id: &str, request: &CallRequest) -> Result<bool, DialError> {
        let record = self.record(call_id, request, self.hasher.hash(request.to.as_str()));
        Ok(self.store().create_call(&record).await?)
    }

    /// Marks the call `call_id`, not yet dialled, as canceled, and settles
    /// it; `None` when there is no such call.
    pub async fn cancel_queued(&self, call_id: &str) -> Result<Option<CallRecord>, DialError> {
        let at_ms = unix_ms();
        let change = CallChange::Unconnected {
            status: CallStatus::Canceled,
            error: None,
            at_ms,
        };
        let call = self.store().update_call(call_id, &change).await?;
        if let Some(call) = &call
            && ended_by(call, CallStatus::Canceled, at_ms)
        {
            self.settle(call).await;
        }
        Ok(call)
    }

    /// Ends a call Twilio has: cancels it while it is queued or ringing,
    /// hangs it up once answered.
    pub async fn end(&self, twilio_sid: &str, answered: bool) -> Result<HangUp, HangUpError> {
        let how = if answered {
            EndCall::Complete
        } else {
            EndCall::Cancel
        };
        self.rest.end_call(&self.account_sid, twilio_sid, how).await
    }

    /// Twilio's call `twilio_sid` as Twilio has it now; `None` when Twilio
    /// has no such call.
    pub async fn fetch(&self, twilio_sid: &str) -> Result<Option<CallResource>, HangUpError> {
        self.rest.fetch_call(&self.account_sid, twilio_sid).await
    }

    /// `https://PUBLIC_HOST{path}`.
    fn public_url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://{}{path}", self.public_host)
    }

    fn record(&self, call_id: &str, request: &CallRequest, phone_hash: String) -> CallRecord {
        let mut record = CallRecord::pending(
            call_id,
            "twilio",
            Segment::resolve(&request.parameters, &self.default_segment),
            request.parameters.clone(),
            unix_ms(),
        );
        record.status = CallStatus::Queued;
        record.direction = Some(CallDirection::Outbound);
        record.outbound = Some(OutboundCall {
            to: request.to.as_str().to_owned(),
            from: Some(self.from(request).as_str().to_owned()),
            phone_hash,
            webhook_url: request.webhook_url.clone(),
            metadata: request.metadata.clone(),
            campaign: request.campaign.clone(),
            ..OutboundCall::default()
        });
        record
    }

    fn from<'r>(&'r self, request: &'r CallRequest) -> &'r super::PhoneNumber {
        request.from.as_ref().unwrap_or(&self.section.from)
    }

    /// Marks the call `call_id`, which Twilio does not have, as failed
    /// (`error` says why), and settles it.
    pub async fn fail_undialled(&self, call_id: &str, error: &str) -> Result<(), DialError> {
        let at_ms = unix_ms();
        let change = CallChange::Unconnected {
            status: CallStatus::Failed,
            error: Some(error.to_owned()),
            at_ms,
        };
        if let Some(call) = self.store().update_call(call_id, &change).await?
            && ended_by(&call, CallStatus::Failed, at_ms)
        {
            self.settle(&call).await;
        }
        Ok(())
    }

    /// A try of `call_id` another try asked Twilio for, its answer not
    /// known here: never sent; its callbacks settle it, or it fails once
    /// it would have rung out.
    fn asked_by_another(&self, call_id: &str, note: RequestNote) -> DialError {
        self.confirm_later(call_id, note);
        DialError::AlreadyAsked("its answer is not known here".to_owned())
    }

    /// Ends `call_id` failed once it would have rung out, unless it moved
    /// on from `note` by then (see [`AskedCalls::confirm_later`]).
    fn confirm_later(&self, call_id: &str, note: RequestNote) {
        self.asked.confirm_later(
            Arc::clone(self.store()),
            self.settlement.clone(),
            call_id,
            self.rung_out(),
            note,
        );
    }

    /// Lets the number go for a call that was not placed; a store that
    /// fails leaves it held until its hold expires (logged).
    async fn let_number_go(&self, phone_hash: &str, call_id: &str) {
        if let Err(err) = self.store().release_number(phone_hash, call_id).await {
            tracing::warn!(call_id, phone_hash, error = %err, "cannot let the number go; held until its limit expires");
        }
    }

    /// How long after its request a call Twilio took would have rung out:
    /// past it, a call with no callback was never placed.
    pub(super) fn rung_out(&self) -> Duration {
        Duration::from_secs(u64::from(self.section.timeout_secs) + 120)
    }

    fn hold(&self) -> Duration {
        match self.section.rate_limit_hours {
            0 => LIVE_CALL_HOLD,
            hours => Duration::from_secs(u64::from(hours) * 3600),
        }
    }
}

#[async_trait]
impl Dialer for TwilioDialer {
    async fn dial(&self, call_id: &str, request: &CallRequest) -> Result<PlacedCall, DialError> {
        let phone_hash = self.hasher.hash(request.to.as_str());
        let record = self.record(call_id, request, phone_hash.clone());
        let store = self.store();
        // This try's id; a try after one of this process whose request
        // Twilio did not take (the store perhaps still saying it asked)
        // goes on under that one's id.
        let mut by = format!("{:016x}", crate::random::random_u64());
        let mut reused = false;
        if !store.create_call(&record).await? {
            let existing = store.call(call_id).await?;
            if let Some(existing) = existing {
                if existing.status.is_final() {
                    return Err(DialError::Settled {
                        status: existing.status,
                        placed: existing
                            .outbound
                            .as_ref()
                            .is_some_and(|o| o.twilio_sid.is_some()),
                    });
                }
                let stored = existing
                    .outbound
                    .as_ref()
                    .and_then(|o| o.twilio_sid.clone());
                let sid = match (stored, self.asked.get(call_id)) {
                    (Some(sid), _) | (None, Some(Asked::Placed(sid))) => Some(sid),
                    (None, Some(Asked::Unconfirmed)) => {
                        return Err(DialError::AlreadyAsked(
                            "by this process; its answer never came".to_owned(),
                        ));
                    }
                    (None, _) => {
                        let note = RequestNote::of_call(&existing);
                        match (&note.asked_by, self.asked.take_not_taken(call_id)) {
                            (None, _) => None,
                            (Some(asked_by), Some(earlier)) if *asked_by == earlier => {
                                by = earlier;
                                reused = true;
                                None
                            }
                            // Asked of Twilio by a try whose answer is
                            // not known (a server that stopped
                            // mid-request, a store that failed to take
                            // the SID).
                            (Some(_), _) => return Err(self.asked_by_another(call_id, note)),
                        }
                    }
                };
                if let Some(sid) = sid {
                    return Ok(PlacedCall {
                        call_id: call_id.to_owned(),
                        twilio_sid: sid,
                    });
                }
            }
        }
        let hold_ms = u64::try_from(self.hold().as_millis()).unwrap_or(u64::MAX);
        let claimed = match store.claim_number(&phone_hash, call_id, hold_ms).await {
            Ok(claimed) => claimed,
            Err(err) => {
                if reused {
                    // Still this try's to reuse.
                    self.asked.not_taken(call_id, by);
                }
                return Err(err.into());
            }
        };
        if !claimed {
            tracing::info!(
                call_id,
                phone_hash,
                "number not dialled: called too recently, or live"
            );
            let why = format!(
                "rate_limited: the number was reached in the last {} hours or is on a call",
                self.section.rate_limit_hours
            );
            if let Err(err) = self.fail_undialled(call_id, &why).await {
                if reused {
                    self.asked.not_taken(call_id, by);
                }
                return Err(err);
            }
            return Err(DialError::NumberLimited { phone_hash });
        }
        let mut parameters: Vec<(String, String)> =
            vec![(CALL_ID_PARAMETER.to_owned(), call_id.to_owned())];
        parameters.extend(
            request
                .parameters
                .iter()
                .filter(|(name, _)| {
                    name.as_str() != CALL_ID_PARAMETER && name.as_str() != STREAM_TOKEN_PARAMETER
                })
                .map(|(name, value)| (name.clone(), value.clone())),
        );
        if let Some(tokens) = &self.stream_tokens {
            let now = unix_ms() / 1000;
            parameters.extend(tokens.parameter(&self.account_sid, call_id, now));
        }
        // Noted before the request goes, and sent only if the note is this
        // try's: should this process stop before Twilio's answer is
        // stored, no later try dials the call again, and of two tries
        // racing (a lease that came back while its server was stalled)
        // only one sends.
        let asking = CallChange::Asking {
            at_ms: unix_ms(),
            by: by.clone(),
        };
        let call = match store.update_call(call_id, &asking).await {
            Ok(Some(call)) => call,
            Ok(None) => {
                self.let_number_go(&phone_hash, call_id).await;
                return Err(DialError::Unavailable(
                    "the call's record is gone".to_owned(),
                ));
            }
            Err(err) => {
                // Perhaps written: a next try from here goes on under this
                // id; the number stays held for it (another try may hold
                // it for a live call).
                self.asked.not_taken(call_id, by);
                return Err(err.into());
            }
        };
        let outbound = call.outbound.as_ref();
        if let Some(sid) = outbound.and_then(|o| o.twilio_sid.clone()) {
            // Placed by another try meanwhile.
            return Ok(PlacedCall {
                call_id: call_id.to_owned(),
                twilio_sid: sid,
            });
        }
        if call.status.is_final() {
            // Canceled (or ended) since: not asked.
            self.let_number_go(&phone_hash, call_id).await;
            return Err(DialError::Settled {
                status: call.status,
                placed: false,
            });
        }
        if outbound.and_then(|o| o.asked_by.as_deref()) != Some(by.as_str()) {
            return Err(self.asked_by_another(call_id, RequestNote::of_call(&call)));
        }
        let sent_under = RequestNote::of_call(&call);
        let stream_url = self.public_url("wss", STREAM_PATH);
        let twiml = twiml::connect_stream(&stream_url, &parameters);
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair(CALL_ID_PARAMETER, call_id)
            .finish();
        let status_callback = self.public_url("https", &format!("{STATUS_PATH}?{query}"));
        let amd_callback = self.public_url("https", &format!("{AMD_PATH}?{query}"));
        let machine_detection = self.section.machine_detection.twilio_mode();
        let create = CreateCall {
            to: request.to.as_str(),
            from: self.from(request).as_str(),
            twiml: &twiml,
            status_callback: &status_callback,
            timeout_secs: self.section.timeout_secs,
            machine_detection,
            async_amd_callback: (machine_detection.is_some() && self.section.amd == AmdMode::Async)
                .then_some(amd_callback.as_str()),
        };
        match self.rest.create_call(&self.account_sid, &create).await {
            Ok(sid) => {
                tracing::info!(call_id, phone_hash, twilio_sid = sid, "call placed");
                let dialled = CallChange::Dialled {
                    twilio_sid: sid.clone(),
                    at_ms: unix_ms(),
                };
                // Placed: whatever the store says now, the call must not be
                // dialled again, so a failed write is retried on its own
                // and the call reported placed.
                let call = match store.update_call(call_id, &dialled).await {
                    Ok(call) => call,
                    Err(err) => {
                        tracing::warn!(call_id, error = %err, "the placed call's SID was not stored; retrying");
                        self.asked
                            .keep_sid(Arc::clone(self.store()), call_id, dialled);
                        None
                    }
                };
                if let Some(call) = call
                    && call.status.is_final()
                    && call.started_at.is_none()
                {
                    // Canceled (or given up on) while Twilio was being
                    // asked: stop it there too (hung up if answered).
                    let answered = call.outbound.is_some_and(|o| o.answered_at.is_some());
                    if let Err(err) = self.end(&sid, answered).await {
                        tracing::warn!(call_id, error = %err, "cannot cancel the call at Twilio");
                    }
                }
                Ok(PlacedCall {
                    call_id: call_id.to_owned(),
                    twilio_sid: sid,
                })
            }
            Err(CreateCallError::Refused {
                status,
                code,
                message,
            }) => {
                tracing::warn!(
                    call_id,
                    phone_hash,
                    status,
                    ?code,
                    "Twilio refused the call"
                );
                // Twilio's message may name the number: the record keeps
                // the status and code.
                let why = format!("Twilio refused the call ({status}, code {code:?})");
                self.fail_undialled(call_id, &why).await?;
                Err(DialError::Refused {
                    status,
                    code,
                    message,
                })
            }
            Err(err @ (CreateCallError::Uncertain(_) | CreateCallError::ServerError { .. }))
                if !matches!(err, CreateCallError::ServerError { status: 503 }) =>
            {
                // Perhaps placed (an answer lost, or an error that may come
                // after Twilio took the request): the number stays held,
                // nothing dials it again; its callbacks settle it, else it
                // ends failed.
                let err = err.to_string();
                tracing::warn!(call_id, phone_hash, error = %err, "Twilio did not answer; the call may have been placed");
                self.confirm_later(call_id, sent_under);
                Err(DialError::Uncertain(err))
            }
            Err(err) => {
                // Not placed: the number is free for the retry, and the
                // call is not asked of Twilio any more (or, if the store
                // did not take that, asked by a try this process may
                // make again).
                self.let_number_go(&phone_hash, call_id).await;
                let not_taken = CallChange::NotTaken { by: by.clone() };
                if let Err(store_err) = store.update_call(call_id, &not_taken).await {
                    tracing::warn!(call_id, error = %store_err, "cannot note that Twilio created nothing");
                    self.asked.not_taken(call_id, by);
                }
                tracing::warn!(call_id, phone_hash, error = %err, "call not placed; it may be tried again");
                Err(match err {
                    CreateCallError::RateLimited { retry_after } => DialError::RateLimited {
                        retry_after: retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
                    },
                    other => DialError::Unavailable(other.to_string()),
                })
            }
        }
    }
}
