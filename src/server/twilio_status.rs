//! `POST /twilio/status` and `POST /twilio/amd`: Twilio's status callbacks
//! and answering-machine verdicts for the calls the dialler placed, and
//! outbound streams joining their calls.
//!
//! A callback must carry a valid `X-Twilio-Signature` (403 otherwise, as
//! for `/twilio/voice`). One for an unknown call is answered 200 and
//! ignored (logged): Twilio would retry an error, and the call is not
//! ours. The record only moves forward (see `CallStatus::rank`), so a
//! `ringing` after `completed` changes nothing. The callback that brings a
//! call to its final status settles it (its number, its after-call work,
//! the `call_settled` listeners). A final status for a call that started
//! and was never ended, with no session here, notes a check in the store
//! that ends it after a grace (its server died mid-call; see
//! `outbound::lost_sessions`); one the store refuses is noted again in the
//! background, with backoff, and the callback still answered 200: Twilio
//! does not retry a status callback its URL does not ask retries for. A
//! machine's answer gets the pipeline's
//! policy: hang up, or speak the voicemail message into the live session
//! and end it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::frame::FrameBody;
use crate::outbound::{MachineAction, StatusCallback, TwilioDialer};
use crate::pipeline::PipelineHandle;
use crate::store::time::unix_ms;
use crate::store::{CallChange, CallDirection, CallRecord, CallStatus};

use super::live_sessions::SessionPermit;
use super::request::public_host;
use super::state::ServerState;
use super::twilio_voice::signature_refusal;

/// How long a stream that joins a call waits for its session to run before
/// the voicemail is given up.
const SESSION_START_WAIT: Duration = Duration::from_secs(30);
/// The end reason of a session that left a voicemail.
const VOICEMAIL_LEFT: &str = "voicemail_left";

/// `POST /twilio/status` and `POST /twilio/amd`.
pub(crate) async fn callback(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let Some(dialer) = state.outbound.clone() else {
        return (StatusCode::NOT_FOUND, "outbound calls are off").into_response();
    };
    let Some(host) = public_host(&state.config.server, &headers) else {
        return (StatusCode::BAD_REQUEST, "set [server] public_host").into_response();
    };
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    if let Some(refused) = signature_refusal(&state, &host, &headers, &uri, &form) {
        return refused;
    }
    // The time the call is known to be over: a lost session's end is
    // recorded at it, not at the end of the grace.
    let received_ms = unix_ms();
    let callback = match StatusCallback::parse(uri.query(), &form, received_ms) {
        Ok(callback) => callback,
        Err(err) => {
            tracing::warn!(path = uri.path(), error = %err, "Twilio callback not understood");
            return (StatusCode::BAD_REQUEST, err.to_string()).into_response();
        }
    };
    let call_id = callback.call_id;
    let store = dialer.store();
    // A call that ended before it ran a session (voxpipe canceled it, or
    // an earlier callback ended it) was settled then.
    let (outbound, settled) = match store.call(&call_id).await {
        Ok(Some(call)) => (
            call.direction == Some(CallDirection::Outbound),
            call.status.is_final() && call.started_at.is_none(),
        ),
        Ok(None) => (false, false),
        Err(err) => {
            tracing::warn!(call_id, error = %err, "cannot read the call; Twilio may retry");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    if !outbound {
        tracing::warn!(call_id, "Twilio callback for an unknown call: ignored");
        return StatusCode::OK.into_response();
    }
    let reported = callback.report.status;
    let change = CallChange::TwilioReported(callback.report);
    let call = match store.update_call(&call_id, &change).await {
        Ok(Some(call)) => call,
        Ok(None) => return StatusCode::OK.into_response(),
        Err(err) => {
            tracing::warn!(call_id, error = %err, "cannot record the call's status");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    tracing::debug!(
        call_id,
        status = call.status.as_str(),
        "status callback applied"
    );
    // Started, final at Twilio, never ended, and not running here: its
    // server may have died mid-call, leaving nobody to end it. The check
    // is kept in the store, so that it outlives this server.
    let lost = reported.is_some_and(CallStatus::is_final)
        && call.started_at.is_some()
        && call.ended_at.is_none()
        && state.sessions.handle_of(&call_id).is_none();
    // Settled by the callback that brings its final status (an answered
    // call's record may be final already: its session wrote it).
    if !settled && reported.is_some_and(|status| status.is_final() && status == call.status) {
        let dialer = Arc::clone(&dialer);
        let call = call.clone();
        tokio::spawn(async move { dialer.settle(&call).await });
    }
    // Twilio does not retry a status callback answered 5xx (its URL asks
    // for no retries): a check that cannot be noted now is noted later,
    // here, and the callback is answered 200.
    if lost && let Err(err) = dialer.lost_sessions().note(&call_id, received_ms).await {
        tracing::warn!(call_id, error = %err, "cannot note the call's lost session; retried in the background");
        note_later(&dialer, call_id.clone(), received_ms);
    }
    end_if_given_up(&dialer, &call, reported);
    act_on_machine(&state, &dialer, &call);
    StatusCode::OK.into_response()
}

/// The first wait before noting a lost session again.
const NOTE_RETRY_FIRST: Duration = Duration::from_millis(250);
/// The longest wait between tries to note a lost session.
const NOTE_RETRY_MAX: Duration = Duration::from_secs(10);
/// The least time tries to note a lost session go on for, however short
/// the grace.
const NOTE_RETRY_LEAST: Duration = Duration::from_secs(30);

/// Notes the lost session of `call_id` (final at `received_ms`) in the
/// background, with backoff, until it is noted or the grace (at least
/// [`NOTE_RETRY_LEAST`]) has passed. Held in this process only: a server
/// stopped meanwhile leaves the call unended (logged here as the callback
/// came, by call id).
fn note_later(dialer: &Arc<TwilioDialer>, call_id: String, received_ms: u64) {
    let dialer = Arc::clone(dialer);
    tokio::spawn(async move {
        let lost = dialer.lost_sessions();
        let deadline = tokio::time::Instant::now() + lost.grace().max(NOTE_RETRY_LEAST);
        let mut wait = NOTE_RETRY_FIRST;
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                tracing::error!(
                    call_id,
                    "lost session never noted: its call is left unended"
                );
                return;
            }
            // The last try at the deadline, not a wait past it skipped.
            tokio::time::sleep(wait.min(deadline - now)).await;
            match lost.note(&call_id, received_ms).await {
                Ok(()) => {
                    tracing::info!(call_id, "lost session noted after a retry");
                    return;
                }
                Err(err) => {
                    tracing::warn!(call_id, error = %err, "cannot note the call's lost session; retried");
                }
            }
            wait = (wait * 2).min(NOTE_RETRY_MAX);
        }
    });
}

/// A call Twilio says is live whose record voxpipe already ended unplaced
/// (canceled before its SID was known, failed as never confirmed): ended
/// at Twilio too, so the person is not rung for a call nobody follows.
fn end_if_given_up(dialer: &Arc<TwilioDialer>, call: &CallRecord, reported: Option<CallStatus>) {
    let given_up = matches!(call.status, CallStatus::Canceled | CallStatus::Failed)
        && call.started_at.is_none();
    let live = reported.is_some_and(|status| !status.is_final());
    let sid = call.outbound.as_ref().and_then(|o| o.twilio_sid.clone());
    let (true, true, Some(sid)) = (given_up, live, sid) else {
        return;
    };
    let answered = reported == Some(CallStatus::Active);
    let call_id = call.call_id.clone();
    let dialer = Arc::clone(dialer);
    tokio::spawn(async move {
        tracing::info!(call_id, "Twilio placed a call given up on: ending it");
        if let Err(err) = dialer.end(&sid, answered).await {
            tracing::warn!(call_id, error = %err, "cannot end the call at Twilio");
        }
    });
}

/// Applies the machine policy to `call`.
fn act_on_machine(state: &ServerState, dialer: &Arc<TwilioDialer>, call: &CallRecord) {
    let call_id = call.call_id.clone();
    match dialer.machine_action(call) {
        MachineAction::None => {}
        MachineAction::HangUp => {
            let sid = call.outbound.as_ref().and_then(|o| o.twilio_sid.clone());
            let dialer = Arc::clone(dialer);
            state.metrics.error("machine_answered", "twilio");
            tokio::spawn(async move {
                tracing::info!(call_id, "a machine answered: hanging up");
                if let Some(sid) = sid
                    && let Err(err) = dialer.end(&sid, true).await
                {
                    tracing::warn!(call_id, error = %err, "cannot hang up on the machine");
                }
            });
        }
        MachineAction::LeaveVoicemail(message) => {
            // The stream may still be joining, here or on another server:
            // wait for its session here; if it never runs here, whichever
            // server it joins leaves the message.
            let sessions = Arc::clone(&state.sessions);
            let dialer = Arc::clone(dialer);
            tokio::spawn(async move {
                match sessions.running(&call_id, SESSION_START_WAIT).await {
                    Some(session) => leave_voicemail(session, message, call_id).await,
                    None => dialer.voicemail_not_left(&call_id),
                }
            });
        }
    }
}

/// Speaks `message` through the session's TTS, then ends the session
/// (which hangs up once it is said).
async fn leave_voicemail(session: PipelineHandle, message: String, call_id: String) {
    tracing::info!(call_id, "leaving the voicemail message");
    session.queue_frame(FrameBody::Text(message)).await;
    session.end(VOICEMAIL_LEFT).await;
}

/// Lets the stream of an outbound call join its record: the stream's
/// `call_id` parameter names a call placed here that is not over, has not
/// started, and whose Twilio SID is the stream's (so no client can take
/// another call's id). Returns that SID when joined; logged and left
/// alone otherwise.
pub(crate) async fn join_outbound_call(
    state: &Arc<ServerState>,
    permit: &mut SessionPermit,
    call_id: &str,
    stream_call_sid: Option<&str>,
) -> Option<String> {
    let dialer = state.outbound.clone()?;
    let call = match dialer.store().call(call_id).await {
        Ok(Some(call)) => call,
        Ok(None) => {
            tracing::warn!(call_id, "stream names an unknown call; not joined");
            return None;
        }
        Err(err) => {
            tracing::warn!(call_id, error = %err, "cannot read the call; stream not joined");
            return None;
        }
    };
    let sid = call.outbound.as_ref().and_then(|o| o.twilio_sid.as_deref());
    let joinable = call.direction == Some(CallDirection::Outbound)
        && !call.status.is_final()
        && call.started_at.is_none()
        && sid.is_some()
        && sid == stream_call_sid;
    if !joinable || !permit.adopt(Arc::from(call_id)) {
        tracing::warn!(
            call_id,
            "stream does not match an outbound call awaiting it; not joined"
        );
        return None;
    }
    tracing::info!(call_id, "the stream joins its outbound call");
    act_on_machine(state, &dialer, &call);
    sid.map(str::to_owned)
}
