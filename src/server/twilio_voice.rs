//! `POST /twilio/voice`: Twilio's voice webhook, answered with TwiML that
//! connects the call to `wss://PUBLIC_HOST/twilio/ws`.
//!
//! With an auth token configured, the request must carry a valid
//! `X-Twilio-Signature` for the URL Twilio called (`https://PUBLIC_HOST`
//! and the request's path and query) and its form; otherwise 403. A server
//! that admits no new session (at capacity, shutting down) rejects the call
//! with a busy signal rather than letting it ring into a failing stream.
//!
//! With stream tokens on (the default with an auth token), the TwiML also
//! hands the stream its call's token (see `stream_auth`).
//!
//! The stream's `<Parameter>`s carry the call's `CallSid`, `From`, `To`,
//! `Direction`, `ForwardedFrom` and `CallerName` when Twilio sent them, and
//! every query parameter of the webhook URL, so that a number configured
//! as `https://host/twilio/voice?segment=retail` starts sessions with
//! `segment = retail` in their custom parameters.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::transport::twilio::stream_token::STREAM_TOKEN_PARAMETER;
use crate::transport::twilio::{signature, twiml};

use super::request::{public_host, public_scheme};
use super::state::ServerState;

/// The call fields passed on to the session, when present.
const CALL_FIELDS: [&str; 6] = [
    "CallSid",
    "From",
    "To",
    "Direction",
    "ForwardedFrom",
    "CallerName",
];

/// The stream path the TwiML points Twilio at.
pub(crate) const STREAM_PATH: &str = "/twilio/ws";

fn twiml_response(xml: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], xml).into_response()
}

/// With an auth token configured, checks that the webhook carries a valid
/// `X-Twilio-Signature` for the URL Twilio called (`{scheme}://{host}` and
/// the request's path and query) and its `form`; the 403 to answer when it
/// does not.
pub(crate) fn signature_refusal(
    state: &ServerState,
    host: &str,
    headers: &HeaderMap,
    uri: &Uri,
    form: &[(String, String)],
) -> Option<Response> {
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let url = format!("{}://{host}{path_and_query}", public_scheme(headers));
    signature_refusal_for(state, &url, headers, uri, form)
}

/// With an auth token configured, checks that the request to `uri`
/// carries a valid `X-Twilio-Signature` of `url` and `form`; the 403 to
/// answer when it does not.
pub(crate) fn signature_refusal_for(
    state: &ServerState,
    url: &str,
    headers: &HeaderMap,
    uri: &Uri,
    form: &[(String, String)],
) -> Option<Response> {
    let Some(token) = &state.twilio.auth_token else {
        return None;
    };
    let signed = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok());
    let problem = match signed {
        None => "missing_signature",
        Some(header) if !signature::verify(token, url, form, header) => "bad_signature",
        Some(_) => return None,
    };
    tracing::warn!(
        path = uri.path(),
        problem,
        "Twilio request refused: X-Twilio-Signature"
    );
    state.metrics.error(problem, "twilio");
    Some((StatusCode::FORBIDDEN, "invalid X-Twilio-Signature").into_response())
}

/// `POST /twilio/voice`.
pub(crate) async fn voice(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let Some(host) = public_host(&state.config.server, &headers) else {
        tracing::warn!("voice webhook without a usable Host; set [server] public_host");
        return (
            StatusCode::BAD_REQUEST,
            "cannot tell this server's public host: set [server] public_host",
        )
            .into_response();
    };
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    if let Some(refused) = signature_refusal(&state, &host, &headers, &uri, &form) {
        return refused;
    }
    let field = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let call_sid = field("CallSid").unwrap_or("-");
    if let Err(refusal) = state.sessions.check() {
        tracing::warn!(call_sid, reason = %refusal, "call refused with a busy signal");
        state.metrics.session_refused("twilio", refusal.kind());
        return twiml_response(twiml::reject_busy());
    }
    let mut parameters: Vec<(String, String)> = CALL_FIELDS
        .iter()
        .filter_map(|name| Some(((*name).to_owned(), field(name)?.to_owned())))
        .collect();
    if let Some(query) = uri.query() {
        for (name, value) in form_urlencoded::parse(query.as_bytes()).into_owned() {
            if name != STREAM_TOKEN_PARAMETER && !parameters.iter().any(|(known, _)| *known == name)
            {
                parameters.push((name, value));
            }
        }
    }
    let auth = &state.twilio.stream_auth;
    if auth.tokens_on() {
        let token = field("AccountSid")
            .zip(field("CallSid"))
            .and_then(|(account_sid, call_sid)| auth.token_parameter(account_sid, call_sid));
        let Some(token) = token else {
            tracing::warn!(
                call_sid,
                "voice webhook without AccountSid and CallSid: no stream token"
            );
            return (
                StatusCode::BAD_REQUEST,
                "AccountSid and CallSid are required",
            )
                .into_response();
        };
        parameters.push(token);
    }
    tracing::info!(call_sid, %host, "answering a call with a media stream");
    twiml_response(twiml::connect_stream(
        &format!("wss://{host}{STREAM_PATH}"),
        &parameters,
    ))
}
