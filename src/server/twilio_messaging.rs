//! `POST /twilio/messaging`: Twilio's incoming-message webhook, for SMS and
//! WhatsApp, answered by the pipeline's text path.
//!
//! With an auth token configured the request must carry a valid
//! `X-Twilio-Signature` (403 otherwise, as for `/twilio/voice`). A
//! `MessageSid` is taken once in the store (`text:message:{sid}`, 48 h), so
//! a retried webhook, even after a restart or on another server, gets an
//! empty `<Response/>` and never a second answer. A message that could not
//! be answered at all (the store failed mid-way, a processor could not be
//! built) is forgotten again and, while the webhook waits, answered 503, so
//! that Twilio's retry (a webhook URL with `#rp=5xx` or `#rp=all`) or a
//! replay from its error log is taken; past the wait, the sender gets
//! `[text] apology`. The answer goes back as
//! TwiML `<Message>` when it is ready within `[text] reply_budget_secs` and
//! fits one message (1,600 characters); otherwise the webhook answers an
//! empty `<Response/>` and the answer goes out through the Messages REST
//! resource, cut into as many messages as it needs, from the address the
//! message came to. The conversation's turn is held until a REST delivery
//! is over, so its next answer never overtakes it. WhatsApp accepts free-form answers only within 24 hours
//! of the user's last message: voxpipe only ever answers a message it has
//! just received, so it is always inside that window, and it never starts
//! a WhatsApp conversation (that needs an approved template).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::{mpsc, oneshot};

use crate::store::Store;
use crate::text::{Channel, Inbound, Reply, TextEvent};
use crate::transport::twilio::messaging::{
    CreateMessage, IncomingMessage, MAX_MESSAGE_CHARS, split_message,
};
use crate::transport::twilio::{CreateCallError, twiml};

use super::message_sender::MessageSender;
use super::request::public_host;
use super::state::ServerState;
use super::twilio_voice::signature_refusal;

/// How long a `MessageSid` is remembered: longer than Twilio retries.
const SEEN_FOR_MS: u64 = 48 * 3_600 * 1_000;

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
    if let Some(refused) = signature_refusal(&state, &host, &headers, &uri, &form) {
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
    if message.is_opt_out() {
        // Twilio answers the keyword itself and blocks messages to the
        // sender; an agent's answer would be refused (21610).
        tracing::info!(message_sid = %message.message_sid, "opt-out keyword: not answered");
        return twiml_response(twiml::messages(&[]));
    }
    if message.body.trim().is_empty() && message.num_media == 0 {
        tracing::info!(message_sid = %message.message_sid, "empty message; nothing to answer");
        return twiml_response(twiml::messages(&[]));
    }
    let store = Arc::clone(conversations.runtime().store());
    match store
        .first_sight_of_message(&message.message_sid, SEEN_FOR_MS)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(message_sid = %message.message_sid, "message seen before (a retried webhook); answered once already");
            return twiml_response(twiml::messages(&[]));
        }
        Err(err) => {
            tracing::warn!(error = %err, "context store unavailable; Twilio may retry the message");
            // The mark may have been taken with its answer lost: forgotten
            // (if the store answers), so the retry is not dropped as seen.
            return not_answered(store.as_ref(), &message.message_sid).await;
        }
    }
    let channel = if message.is_whatsapp() {
        Channel::WhatsApp
    } else {
        Channel::Sms
    };
    let key = conversations.key(channel, &[&message.from, &message.to]);
    let mut parameters: std::collections::BTreeMap<String, String> = uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    parameters.insert("channel".into(), channel.name().into());
    let inbound = Inbound {
        key,
        text: message.body.clone(),
        media: message.num_media,
        parameters,
    };
    let answered_to = message.clone();
    // The answer, or `None` when the message could not be answered.
    let (answer_tx, mut answer_rx) = oneshot::channel::<Option<Reply>>();
    let sender = state.messaging.clone();
    let budget = conversations.section().reply_budget_secs.duration();
    state.answers.spawn(async move {
        let (events, mut heard) = mpsc::unbounded_channel();
        // The conversation's turn is held until the answer is delivered
        // (`join!` below), so a REST delivery still arrives before the
        // conversation's next answer.
        let answering = conversations.message_in_turn(inbound, Some(events));
        let mut answer_tx = Some(answer_tx);
        let delivering = async {
            while let Some(event) = heard.recv().await {
                if let TextEvent::Done(reply) = event {
                    let Some(tx) = answer_tx.take() else { return };
                    let parts = split_message(&reply.text, MAX_MESSAGE_CHARS).len();
                    let kept = reply.clone();
                    // The webhook gave up waiting, or the answer needs
                    // several messages: it goes by REST, in order.
                    if tx.send(Some(reply)).is_err() || parts > 1 {
                        send_by_rest(sender.as_ref(), &message, &kept).await;
                    }
                    return;
                }
            }
        };
        let (answered, ()) = tokio::join!(answering, delivering);
        let Err(err) = answered else { return };
        tracing::warn!(message_sid = %message.message_sid, error = %err, "message not answered");
        let webhook_waits = answer_tx.is_some_and(|tx| tx.send(None).is_ok());
        if !webhook_waits {
            // Twilio has had its answer: the sender is told, not left
            // without one.
            let apology = Reply {
                call_id: String::new(),
                text: conversations.section().apology.clone(),
                failed: true,
            };
            send_by_rest(sender.as_ref(), &message, &apology).await;
        }
    });
    let answer = match tokio::time::timeout(budget, &mut answer_rx).await {
        Ok(Ok(answer)) => answer,
        // The answering task ended without a word: it failed.
        Ok(Err(_)) => None,
        Err(_) => {
            // Too late for TwiML; an answer that lands now is still taken.
            answer_rx.close();
            match answer_rx.try_recv() {
                Ok(answer) => answer,
                Err(_) => return twiml_response(twiml::messages(&[])),
            }
        }
    };
    let Some(reply) = answer else {
        return not_answered(store.as_ref(), &answered_to.message_sid).await;
    };
    let parts = split_message(&reply.text, MAX_MESSAGE_CHARS);
    if parts.len() == 1 {
        return twiml_response(twiml::messages(&parts));
    }
    // A multi-part answer goes by REST, in order, from the answering task
    // (which holds the conversation's turn until it is sent).
    twiml_response(twiml::messages(&[]))
}

/// A message that could not be answered: forgotten, so a retry of it is
/// taken, and refused with a 503 for Twilio to retry or log.
async fn not_answered(store: &dyn Store, message_sid: &str) -> Response {
    if let Err(err) = store.forget_message(message_sid).await {
        tracing::warn!(message_sid, error = %err, "cannot forget the unanswered message; a retry of it may be dropped as seen");
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the message could not be answered; try again",
    )
        .into_response()
}

/// Sends `reply` to the sender of `message` through the Messages resource,
/// one message per part.
async fn send_by_rest(sender: Option<&MessageSender>, message: &IncomingMessage, reply: &Reply) {
    let Some(sender) = sender else {
        tracing::error!(
            call_id = %reply.call_id,
            "an answer missed the webhook's time budget and cannot be sent: \
             set [transport.twilio] auth_token_env and account_sid_env"
        );
        return;
    };
    for part in split_message(&reply.text, MAX_MESSAGE_CHARS) {
        let create = CreateMessage {
            to: &message.from,
            from: &message.to,
            body: &part,
        };
        match sender.send(&create).await {
            Ok(sid) => tracing::info!(call_id = %reply.call_id, message_sid = %sid, "answer sent"),
            Err(CreateCallError::Refused {
                code: Some(63016), ..
            }) => {
                tracing::warn!(call_id = %reply.call_id, "answer refused: outside the WhatsApp 24-hour window");
                return;
            }
            Err(CreateCallError::Uncertain(err)) => {
                // Perhaps sent: the rest is not, so nothing is sent twice.
                tracing::warn!(call_id = %reply.call_id, error = %err, "Twilio did not answer; the answer may have been sent");
                return;
            }
            Err(err) => {
                tracing::error!(call_id = %reply.call_id, error = %err, "answer not sent");
                return;
            }
        }
    }
}
