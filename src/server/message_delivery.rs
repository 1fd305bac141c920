//! An answer sent through the Messages REST resource, in parts of at most
//! 1,600 UTF-16 code units, in order.
//!
//! A part Twilio refuses for itself (its body) is logged and the later
//! parts are still sent: the reader gets the rest of the answer. A refusal
//! of the recipient (unsubscribed, outside the WhatsApp window, not a
//! valid number), Twilio down or rate limiting past the sender's tries, or
//! a request whose answer never came, stops the answer there: every later
//! part would fare the same, each after the same waits. A part refused for
//! its `StatusCallback` (21609, an invalid URL) is sent again without it,
//! and no later answer asks for one (see [`MessageSender`]).

use crate::text::Reply;
use crate::transport::twilio::CreateCallError;
use crate::transport::twilio::messaging::{
    CreateMessage, IncomingMessage, MAX_MESSAGE_CHARS, split_message,
};

use super::message_sender::MessageSender;

/// What to do with an answer's later parts once Twilio refused one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterRefusal {
    /// Send them: the refusal was of that part alone.
    SendTheRest,
    /// Send none (see the module docs).
    Stop,
}

/// Twilio error codes that refuse the account or the recipient, not the
/// message: every later part would be refused too. 20003 bad credentials,
/// 21211 invalid `To`, 21408 region not
/// enabled, 21610 unsubscribed, 21612 unreachable, 21614 not a mobile
/// number, 63016 outside the WhatsApp 24-hour window, 63024 invalid
/// WhatsApp recipient.
const RECIPIENT_REFUSED: &[u64] = &[20003, 21211, 21408, 21610, 21612, 21614, 63016, 63024];

/// Whether an answer's later parts are still sent after `error` refused or
/// lost one of them.
pub(crate) fn after_refusal(error: &CreateCallError) -> AfterRefusal {
    match error {
        CreateCallError::Refused { code, .. }
            if !code.is_some_and(|code| RECIPIENT_REFUSED.contains(&code)) =>
        {
            AfterRefusal::SendTheRest
        }
        _ => AfterRefusal::Stop,
    }
}

/// The path of Twilio's status callbacks for the answers it sends.
pub(crate) const MESSAGE_STATUS_PATH: &str = "/twilio/messages/status";

/// The query parameter naming the conversation an answer belongs to.
pub(crate) const CALL_ID_PARAMETER: &str = "call_id";

/// Where Twilio reports the status of an answer in the conversation
/// `call_id`, as `origin` (`https://host`) serves it; none without a
/// conversation to record a failure against (an apology for a message
/// that never reached one).
pub(crate) fn status_callback_url(origin: &str, call_id: &str) -> Option<String> {
    if call_id.is_empty() {
        return None;
    }
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair(CALL_ID_PARAMETER, call_id)
        .finish();
    Some(format!("{origin}{MESSAGE_STATUS_PATH}?{query}"))
}

/// Sends `reply` to the sender of `message` through the Messages resource,
/// one message per part, each reporting its status to `status_callback`.
pub(crate) async fn send_by_rest(
    sender: Option<&MessageSender>,
    message: &IncomingMessage,
    reply: &Reply,
    status_callback: Option<&str>,
) {
    let Some(sender) = sender else {
        tracing::error!(
            call_id = %reply.call_id,
            "an answer missed the webhook's time budget and cannot be sent: \
             set [transport.twilio] auth_token_env and account_sid_env"
        );
        return;
    };
    let parts = split_message(&reply.text, MAX_MESSAGE_CHARS);
    let count = parts.len();
    for (index, part) in parts.iter().enumerate() {
        let create = CreateMessage {
            to: &message.from,
            from: &message.to,
            body: part,
            status_callback: status_callback.filter(|_| !sender.callbacks_refused()),
        };
        let part_no = index + 1;
        let err = match send_part(sender, &create).await {
            Ok(sid) => {
                tracing::info!(call_id = %reply.call_id, message_sid = %sid, part = part_no, parts = count, "answer sent");
                continue;
            }
            Err(err) => err,
        };
        match (&err, after_refusal(&err)) {
            (
                CreateCallError::Refused {
                    code: Some(63016), ..
                },
                _,
            ) => {
                tracing::warn!(call_id = %reply.call_id, "answer refused: outside the WhatsApp 24-hour window");
            }
            (CreateCallError::Uncertain(_), _) => {
                tracing::warn!(call_id = %reply.call_id, part = part_no, parts = count, error = %err, "Twilio did not answer; the part may have been sent, the rest is not");
            }
            (_, AfterRefusal::SendTheRest) => {
                tracing::error!(call_id = %reply.call_id, part = part_no, parts = count, error = %err, "a part of the answer was refused; the rest is sent");
                continue;
            }
            (_, AfterRefusal::Stop) => {
                tracing::error!(call_id = %reply.call_id, part = part_no, parts = count, error = %err, "answer not sent from this part on");
            }
        }
        return;
    }
}

/// Twilio's error for a `StatusCallback` it finds invalid (a hostname
/// with `_`, say): the message is refused for its callback alone.
const STATUS_CALLBACK_INVALID: u64 = 21609;

/// Sends `create`; refused for its `StatusCallback` (21609), sends it again
/// without one and notes that callbacks are refused, so that an answer is
/// never lost for want of its status.
async fn send_part(
    sender: &MessageSender,
    create: &CreateMessage<'_>,
) -> Result<String, CreateCallError> {
    let result = sender.send(create).await;
    match result {
        Err(CreateCallError::Refused {
            code: Some(STATUS_CALLBACK_INVALID),
            ..
        }) if create.status_callback.is_some() => {
            sender.refuse_callbacks();
            let bare = CreateMessage {
                status_callback: None,
                ..create.clone()
            };
            sender.send(&bare).await
        }
        result => result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: u64) -> CreateCallError {
        CreateCallError::Refused {
            status: 400,
            code: Some(code),
            message: String::new(),
        }
    }

    #[test]
    fn a_part_refused_for_itself_leaves_the_rest_to_send() {
        // Too long, empty: that part's body.
        assert_eq!(after_refusal(&refused(21617)), AfterRefusal::SendTheRest);
        assert_eq!(after_refusal(&refused(21602)), AfterRefusal::SendTheRest);
        // The recipient: every part would be refused.
        for code in [21610, 63016, 21211] {
            assert_eq!(after_refusal(&refused(code)), AfterRefusal::Stop, "{code}");
        }
        // Twilio itself.
        let lost = CreateCallError::Uncertain("timed out".into());
        assert_eq!(after_refusal(&lost), AfterRefusal::Stop);
        let down = CreateCallError::ServerError { status: 500 };
        assert_eq!(after_refusal(&down), AfterRefusal::Stop);
    }
}
