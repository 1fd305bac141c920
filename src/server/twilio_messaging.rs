//! `POST /twilio/messaging`: Twilio's incoming-message webhook, for SMS and
//! WhatsApp, answered by the pipeline's text path.
//!
//! The request must carry a valid `X-Twilio-Signature` (403 otherwise, as
//! for `/twilio/voice`); without an auth token to check it, every message
//! is refused, unless `[transport.twilio] messaging_signature = false`
//! takes unsigned ones (to test locally). A keyword Twilio answers itself
//! (opt-out, opt-in, help) gets an empty `<Response/>` and no model.
//!
//! A message is admitted to its conversation's line before the handler's
//! first `await`, so the messages of a conversation are answered in the
//! order they reached the server; past the text bounds it is refused at
//! once with `[text] apology` as its answer and left unnoted, so a retry
//! or replay of it is answered. Its `MessageSid` is noted in the store
//! (`text:message:{sid}`; see [`super::message_marks`]) so that a retried
//! webhook, even after a restart or on another server, gets an empty
//! `<Response/>` and never a second answer. A message that could not be
//! answered at all (the store failed mid-way, a processor could not be
//! built) is forgotten again and, while the webhook waits, answered 503,
//! so that Twilio's retry (a webhook URL with `#rp=5xx` or `#rp=all`) or a
//! replay from its error log is taken; past the wait, the sender gets
//! `[text] apology`.
//!
//! The answer goes back as TwiML `<Message>` when it is ready within `[text]
//! reply_budget_secs` of the request's arrival and fits one message (1,600
//! UTF-16 code units); otherwise the webhook answers an empty `<Response/>`
//! and the answer goes out through the Messages REST resource
//! ([`super::message_delivery`]), from the address the message came to.
//! The conversation's turn is held until a REST delivery is over, so the
//! conversation's next answer is not sent before it. Either way the answer
//! asks Twilio to report its delivery to `POST /twilio/messages/status`
//! ([`super::message_status`]), which records a failure on the
//! conversation. WhatsApp accepts
//! free-form answers only within 24 hours of the user's last message:
//! voxpipe only ever answers a message it has just received, so it is
//! always inside that window, and it never starts a WhatsApp conversation
//! (that needs an approved template).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::text::{Admitted, Channel, Inbound, Reply, TextConversations, TextEvent};
use crate::transport::twilio::messaging::{IncomingMessage, MAX_MESSAGE_CHARS, split_message};
use crate::transport::twilio::twiml;

use super::message_delivery::{send_by_rest, status_callback_url};
use super::message_marks::Sighting;
use super::request::{public_host, public_scheme};
use super::state::ServerState;
use super::twilio_voice::signature_refusal;

fn twiml_response(xml: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], xml).into_response()
}

/// `POST /twilio/messaging`.
pub(crate) async fn messaging(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    // Twilio's 15 s count from its request: so does the reply budget.
    let arrived = Instant::now();
    // Counted from here, so that a shutdown that starts before this
    // handler spawns its answer waits for that too.
    let _answering = state.answers.enter();
    let Some(host) = public_host(&state.config.server, &headers) else {
        return (
            StatusCode::BAD_REQUEST,
            "cannot tell this server's public host: set [server] public_host",
        )
            .into_response();
    };
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    if let Some(refused) = refusal(&state, &host, &headers, &uri, &form) {
        return refused;
    }
    let Some(conversations) = state.text.clone() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "this pipeline serves no text conversations: it needs a `user_context` and an `llm`",
        )
            .into_response();
    };
    let message = match IncomingMessage::from_form(&form) {
        Ok(message) => message,
        Err(missing) => return (StatusCode::BAD_REQUEST, missing.to_string()).into_response(),
    };
    if let Some(keyword) = message.keyword() {
        // Twilio answers its keywords itself (and, for an opt-out, blocks
        // messages to the sender: an agent's answer would be refused,
        // 21610); a second answer from the agent would only confuse.
        tracing::info!(message_sid = %message.message_sid, ?keyword, "a keyword Twilio answers: not answered");
        return twiml_response(twiml::messages(&[]));
    }
    if message.body.trim().is_empty() && message.num_media == 0 {
        tracing::info!(message_sid = %message.message_sid, "empty message; nothing to answer");
        return twiml_response(twiml::messages(&[]));
    }
    // Admitted before the first `await`: the conversation's messages are
    // answered in the order they reached this handler, whichever store
    // round trip below ends first.
    let admitted = match conversations.admit(inbound(&conversations, &message, &uri)) {
        Ok(admitted) => admitted,
        Err(overloaded) => {
            // Not noted: a retry or replay of it is answered.
            tracing::warn!(message_sid = %message.message_sid, reason = %overloaded, "message refused: apologised");
            state.metrics.error("text_overloaded", "twilio");
            let apology = conversations.section().apology.clone();
            return twiml_response(twiml::messages(&[apology]));
        }
    };
    let store = Arc::clone(conversations.runtime().store());
    match state
        .message_marks
        .take(store.as_ref(), &message.message_sid)
        .await
    {
        Ok(Sighting::First) => {}
        Ok(Sighting::Seen) => {
            tracing::info!(message_sid = %message.message_sid, "message seen before (a retried webhook); answered once already");
            return twiml_response(twiml::messages(&[]));
        }
        Err(err) => {
            // The mark, which may have been taken with its answer lost, was
            // forgotten (if the store answered) by `take`.
            tracing::warn!(error = %err, "context store unavailable; Twilio may retry the message");
            return not_answered();
        }
    }
    let message_sid = message.message_sid.clone();
    // Twilio reports each answer's delivery there (`super::message_status`).
    let origin = format!("{}://{host}", public_scheme(&headers));
    let (answer_tx, mut answer_rx) = oneshot::channel::<Option<Reply>>();
    let deadline = arrived + conversations.section().reply_budget_secs.duration();
    let answering = answer(
        Arc::clone(&state),
        conversations,
        admitted,
        message,
        origin.clone(),
        answer_tx,
    );
    state.answers.spawn(answering);
    let Waited::Answer(answer) = wait_for_answer(&mut answer_rx, deadline).await else {
        // Too late for TwiML: the answer goes by REST.
        state.message_marks.webhook_answered(&message_sid);
        return twiml_response(twiml::messages(&[]));
    };
    let Some(reply) = answer else {
        state
            .message_marks
            .forget(store.as_ref(), &message_sid)
            .await;
        return not_answered();
    };
    let parts = split_message(&reply.text, MAX_MESSAGE_CHARS);
    if parts.len() > 1 {
        // A multi-part answer goes by REST, in order, from the answering
        // task (which holds the conversation's turn until it is sent).
        state.message_marks.webhook_answered(&message_sid);
        return twiml_response(twiml::messages(&[]));
    }
    if !state
        .message_marks
        .answered(store.as_ref(), &message_sid)
        .await
    {
        // Dropped by the shutdown meanwhile, its mark forgotten.
        return not_answered();
    }
    let xml = match status_callback_url(&origin, &reply.call_id) {
        Some(url) => twiml::messages_reporting_to(&parts, &url),
        None => twiml::messages(&parts),
    };
    twiml_response(xml)
}

/// The 403 for a webhook that is not Twilio's: unsigned or badly signed,
/// or not checkable (no auth token) unless unsigned messages are taken.
/// The messages' status callbacks are checked alike.
pub(super) fn refusal(
    state: &ServerState,
    host: &str,
    headers: &HeaderMap,
    uri: &Uri,
    form: &[(String, String)],
) -> Option<Response> {
    if !state.config.transport.twilio.messaging_signature {
        return None;
    }
    if state.twilio.auth_token.is_none() {
        tracing::warn!(
            "message refused: no auth token to check its X-Twilio-Signature \
             (set [transport.twilio] auth_token_env)"
        );
        state.metrics.error("no_auth_token", "twilio");
        return Some(
            (
                StatusCode::FORBIDDEN,
                "this server cannot check X-Twilio-Signature: set [transport.twilio] auth_token_env",
            )
                .into_response(),
        );
    }
    signature_refusal(state, host, headers, uri, form)
}

/// Warns, at start, when `/twilio/messaging` takes unsigned messages, or
/// refuses every message for want of an auth token.
pub(crate) fn warn_at_start(state: &ServerState) {
    if state.text.is_none() {
        return;
    }
    let signed = state.config.transport.twilio.messaging_signature;
    match (signed, state.twilio.auth_token.is_some()) {
        (false, _) => tracing::warn!(
            "POST /twilio/messaging takes unsigned messages ([transport.twilio] messaging_signature = false): \
             anyone who can reach this server can write as any sender and read the answers; only to test locally"
        ),
        (true, false) => tracing::warn!(
            "POST /twilio/messaging refuses every message: no auth token to check X-Twilio-Signature \
             (set [transport.twilio] auth_token_env)"
        ),
        (true, true) => {}
    }
}

/// The text path's message for `message`, with the webhook URL's query
/// parameters and its `channel`.
fn inbound(conversations: &TextConversations, message: &IncomingMessage, uri: &Uri) -> Inbound {
    let channel = if message.is_whatsapp() {
        Channel::WhatsApp
    } else {
        Channel::Sms
    };
    let mut parameters: std::collections::BTreeMap<String, String> = uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    parameters.insert("channel".into(), channel.name().into());
    Inbound {
        key: conversations.key(channel, &[&message.from, &message.to]),
        text: message.body.clone(),
        media: message.num_media,
        parameters,
    }
}

/// Answers `admitted` in its conversation's turn, giving the answer to
/// the webhook through `answer_tx` (`None`: not answered) or, when the
/// webhook stopped waiting or it needs several messages, sending it by
/// REST before the turn is let go, its status reported to `origin`.
async fn answer(
    state: Arc<ServerState>,
    conversations: Arc<TextConversations>,
    admitted: Admitted,
    message: IncomingMessage,
    origin: String,
    answer_tx: oneshot::Sender<Option<Reply>>,
) {
    let store = Arc::clone(conversations.runtime().store());
    let sender = state.messaging.as_ref();
    let (events, mut heard) = mpsc::unbounded_channel();
    // The conversation's turn is held until the answer is delivered
    // (`join!` below), so a REST delivery still goes before the
    // conversation's next answer.
    let answering = conversations.message_in_turn(admitted, Some(events));
    let mut answer_tx = Some(answer_tx);
    let delivering = async {
        while let Some(event) = heard.recv().await {
            if let TextEvent::Done(reply) = event {
                let Some(tx) = answer_tx.take() else { return };
                let parts = split_message(&reply.text, MAX_MESSAGE_CHARS).len();
                let kept = reply.clone();
                // The webhook gave up waiting, or the answer needs
                // several messages: it goes by REST, in order.
                if (tx.send(Some(reply)).is_err() || parts > 1)
                    && state
                        .message_marks
                        .answered(store.as_ref(), &message.message_sid)
                        .await
                {
                    let status_callback = status_callback_url(&origin, &kept.call_id);
                    send_by_rest(sender, &message, &kept, status_callback.as_deref()).await;
                }
                return;
            }
        }
    };
    let (answered, ()) = tokio::join!(answering, delivering);
    let Err(err) = answered else { return };
    tracing::warn!(message_sid = %message.message_sid, error = %err, "message not answered");
    let webhook_waits = answer_tx.is_some_and(|tx| tx.send(None).is_ok());
    if !webhook_waits
        && state
            .message_marks
            .answered(store.as_ref(), &message.message_sid)
            .await
    {
        // Twilio has had its answer: the sender is told, not left
        // without one.
        let apology = Reply {
            call_id: String::new(),
            text: conversations.section().apology.clone(),
            failed: true,
        };
        send_by_rest(sender, &message, &apology, None).await;
    }
}

/// What came of the webhook's wait for the answer.
#[derive(Debug)]
enum Waited {
    /// The answer, or `None` when the message could not be answered.
    Answer(Option<Reply>),
    /// None by the deadline: the answering task sends it by REST.
    Late,
}

/// Waits for the answer until `deadline` (the request's arrival plus the
/// reply budget). An answer that lands as the wait ends is still taken;
/// after it, the answering task finds the channel closed.
async fn wait_for_answer(rx: &mut oneshot::Receiver<Option<Reply>>, deadline: Instant) -> Waited {
    match tokio::time::timeout_at(deadline, &mut *rx).await {
        Ok(Ok(answer)) => Waited::Answer(answer),
        // The answering task ended without a word: it failed.
        Ok(Err(_)) => Waited::Answer(None),
        Err(_) => {
            rx.close();
            match rx.try_recv() {
                Ok(answer) => Waited::Answer(answer),
                Err(_) => Waited::Late,
            }
        }
    }
}

/// A message that could not be answered (its mark forgotten), refused
/// with a 503 for Twilio to retry or log.
fn not_answered() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the message could not be answered; try again",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_reply_budget_counts_from_the_request_not_from_the_store() {
        let budget = Duration::from_secs(10);
        let arrived = Instant::now();
        // The store took 9 s to answer; the answer is ready 2 s later,
        // within 10 s of the wait's start but not of the request's.
        tokio::time::advance(Duration::from_secs(9)).await;
        let (tx, mut rx) = oneshot::channel::<Option<Reply>>();
        let answering = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            tx.send(Some(Reply {
                call_id: "c".into(),
                text: "late".into(),
                failed: false,
            }))
            .is_ok()
        });
        let waited = wait_for_answer(&mut rx, arrived + budget).await;
        assert!(matches!(waited, Waited::Late), "{waited:?}");
        assert_eq!(Instant::now() - arrived, budget, "answered Twilio at once");
        // The answering task learns it must send the answer by REST.
        assert!(!answering.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_within_the_budget_is_taken() {
        let arrived = Instant::now();
        let (tx, mut rx) = oneshot::channel::<Option<Reply>>();
        let _sent = tx.send(None);
        let waited = wait_for_answer(&mut rx, arrived + Duration::from_secs(1)).await;
        assert!(matches!(waited, Waited::Answer(None)));
    }
}
