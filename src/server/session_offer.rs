//! `POST` and `PATCH /sessions/{sessionId}/api/offer`: a session's own
//! signalling path, for the sessions `POST /start` made (as Pipecat's
//! runner mimics Pipecat Cloud's session proxy).
//!
//! The path's `sessionId` is the capability (`session_token`): one whose
//! tag does not check out is an unknown session (404). The first offer
//! must come before the session expires (else 401) and takes the waiting
//! session (already taken or forgotten: 404; put back when the offer is
//! refused or its client goes away before the answer); it runs with the
//! parameters `/start` was given (the offer's own `requestData` only when `/start`
//! had none: a backend that called `/start` with the bearer key vouched
//! for those, the browser cannot override them). Later offers and
//! trickled candidates name the call's `pc_id` (from the answer), which
//! must be this session's call's; they go on working after the session's
//! first-offer time is over, for as long as the call lasts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::transport::webrtc::{OfferRequest, PatchRequest};

use super::admission::ClientAddr;
use super::session_token::{SignedSession, TokenError};
use super::state::ServerState;
use super::webrtc_offer::{add_candidates, bad_json, new_call, reoffer};

/// `POST /sessions/{sessionId}/api/offer`.
pub(crate) async fn offer(
    State(state): State<Arc<ServerState>>,
    Path(session): Path<String>,
    client: ClientAddr,
    request: Result<Json<OfferRequest>, JsonRejection>,
) -> Response {
    if let Err(refused) = state.admission.limit(&client) {
        state.metrics.session_refused("webrtc", refused.kind());
        return refused.into_response();
    }
    let (signed, request) = match read(&state, &session, request) {
        Ok(read) => read,
        Err(unread) => return unread.respond(&state),
    };
    if let Some(pc_id) = &request.pc_id {
        // A later offer: for this session's call only (a `pc_id` no live
        // call has is a first offer, which the session's pending entry
        // decides).
        match state.webrtc.session_of(pc_id) {
            Some(session) if *session == *signed.id => {
                if let Some(answered) = reoffer(&state, &request).await {
                    return answered;
                }
            }
            Some(_) => return not_this_session(),
            None => {}
        }
    }
    if signed.expired {
        return token_refused(TokenError::Expired);
    }
    let now = Instant::now();
    let Some((start_parameters, expires)) = state.admission.pending().take(&signed.id, now) else {
        return (
            StatusCode::NOT_FOUND,
            "unknown session: already connected, or expired; start a new one",
        )
            .into_response();
    };
    let parameters = if start_parameters.is_empty() {
        request.custom_parameters()
    } else {
        start_parameters.clone()
    };
    let mut taken = Taken {
        state: &state,
        id: signed.id.clone(),
        parameters: start_parameters,
        expires,
        answered: false,
    };
    let answered = new_call(&state, request, Some(signed.id.as_str().into()), parameters).await;
    taken.answered = answered.is_ok();
    answered.unwrap_or_else(|refused| refused)
}

/// A pending session taken by its first offer: put back when dropped
/// unless the offer was answered. A refused offer may be tried again with
/// a better one; a request whose client went away mid-offer (its handler
/// dropped, the call it was making dropped too) is retried by the client,
/// which must find its session still waiting.
struct Taken<'a> {
    state: &'a ServerState,
    id: String,
    parameters: BTreeMap<String, String>,
    expires: Instant,
    answered: bool,
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.state.admission.pending().put_back(
                std::mem::take(&mut self.id),
                std::mem::take(&mut self.parameters),
                self.expires,
            );
        }
    }
}

/// `PATCH /sessions/{sessionId}/api/offer`.
pub(crate) async fn patch(
    State(state): State<Arc<ServerState>>,
    Path(session): Path<String>,
    request: Result<Json<PatchRequest>, JsonRejection>,
) -> Response {
    let (signed, request) = match read(&state, &session, request) {
        Ok(read) => read,
        Err(unread) => return unread.respond(&state),
    };
    match state.webrtc.session_of(&request.pc_id) {
        Some(session) if *session == *signed.id => {}
        Some(_) => return not_this_session(),
        // No live call here (another server's, or over): as on `/api/offer`.
        None => return (StatusCode::NOT_FOUND, "no such peer connection").into_response(),
    }
    add_candidates(&state, request).await
}

/// Why a request on a session's path could not be read.
enum Unread {
    Session(TokenError),
    Body(JsonRejection),
}

impl Unread {
    fn respond(self, state: &ServerState) -> Response {
        match self {
            Unread::Session(err) => token_refused(err),
            Unread::Body(rejection) => bad_json(state, rejection),
        }
    }
}

/// The session the path names, then the body.
fn read<T>(
    state: &ServerState,
    session: &str,
    request: Result<Json<T>, JsonRejection>,
) -> Result<(SignedSession, T), Unread> {
    let signed = state
        .admission
        .session_key
        .verify(session, SystemTime::now())
        .map_err(Unread::Session)?;
    let Json(request) = request.map_err(Unread::Body)?;
    Ok((signed, request))
}

fn token_refused(err: TokenError) -> Response {
    match err {
        TokenError::Unknown => (StatusCode::NOT_FOUND, err.to_string()).into_response(),
        TokenError::Expired => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
            err.to_string(),
        )
            .into_response(),
    }
}

fn not_this_session() -> Response {
    (
        StatusCode::BAD_REQUEST,
        "pc_id does not name this session's connection",
    )
        .into_response()
}
