//! `POST /api/chat`: one message of a text conversation, answered as
//! server-sent events (behind the management API's access rule).
//!
//! The body is `{"conversation_id"?, "text", "parameters"?}`; without a
//! `conversation_id` a new conversation starts, and its id comes back in
//! the final event. The events, in order: `delta` (`{"text"}`, the answer
//! as the model streams it), `tool_call` (`{"id", "name", "arguments"}`),
//! `tool_result` (`{"id", "name", "result"}`), then `turn` (`{"conversation_id",
//! "call_id", "text", "failed"}`), or `error` (`{"error"}`) when the
//! message could not be answered at all. The answer is completed and
//! recorded even when the client goes away. A message past the text
//! bounds (8 waiting in its conversation, `[text] max_messages_in_flight`
//! in all) is refused with 429 and `Retry-After: 1`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::api_access::ApiAuthorized;
use super::state::ServerState;
use crate::pipeline::new_session_id;
use crate::text::{Channel, Inbound, TextEvent};

/// The longest conversation id a client may choose.
const MAX_ID_CHARS: usize = 128;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChatRequest {
    conversation_id: Option<String>,
    text: String,
    #[serde(default)]
    parameters: BTreeMap<String, String>,
}

/// What the stream carries: the conversation's events, or why it failed.
enum ChatEvent {
    Text(TextEvent),
    Failed(String),
}

/// `POST /api/chat`.
pub(crate) async fn chat(
    State(state): State<Arc<ServerState>>,
    _authorized: ApiAuthorized,
    body: Result<Json<ChatRequest>, JsonRejection>,
) -> Response {
    let Some(conversations) = state.text.clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this pipeline serves no text conversations: it needs a `user_context` and an `llm`",
        );
    };
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => return super::body::json_rejection(rejection),
    };
    if request.text.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "`text` is empty");
    }
    let conversation_id = match request.conversation_id {
        Some(id) if valid_id(&id) => id,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "`conversation_id` must be 1 to 128 letters, digits, `-` or `_`",
            );
        }
        None => new_session_id(),
    };
    let mut parameters = request.parameters;
    parameters.insert("channel".into(), Channel::Chat.name().into());
    let inbound = Inbound {
        key: conversations.key(Channel::Chat, &[&conversation_id]),
        text: request.text,
        media: 0,
        parameters,
    };
    // Admitted before the answer is spawned: the conversation's messages
    // are answered in the order they came.
    let admitted = match conversations.admit(inbound) {
        Ok(admitted) => admitted,
        Err(overloaded) => {
            tracing::warn!(reason = %overloaded, "chat message refused");
            state.metrics.error("text_overloaded", "chat");
            let mut refused = error(StatusCode::TOO_MANY_REQUESTS, &overloaded.to_string());
            refused
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return refused;
        }
    };
    let (events, heard) = mpsc::unbounded_channel();
    let (failures, failed) = mpsc::unbounded_channel();
    state.answers.spawn(async move {
        let answered = conversations.message_in_turn(admitted, Some(events)).await;
        if let Err(err) = answered {
            tracing::warn!(error = %err, "chat message not answered");
            let _gone = failures.send(err.to_string());
        }
    });
    Sse::new(stream(heard, failed, conversation_id)).into_response()
}

/// The events until the answer is done, or the failure.
fn stream(
    heard: mpsc::UnboundedReceiver<TextEvent>,
    failed: mpsc::UnboundedReceiver<String>,
    conversation_id: String,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let events = futures_util::stream::unfold(heard, |mut heard| async move {
        let event = heard.recv().await?;
        Some((ChatEvent::Text(event), heard))
    });
    let failure = futures_util::stream::unfold(failed, |mut failed| async move {
        let why = failed.recv().await?;
        Some((ChatEvent::Failed(why), failed))
    });
    use futures_util::StreamExt as _;
    events
        .chain(failure)
        .map(move |event| Ok(sse_event(event, &conversation_id)))
}

fn sse_event(event: ChatEvent, conversation_id: &str) -> Event {
    let (name, data) = match event {
        ChatEvent::Text(TextEvent::Delta(text)) => ("delta", json!({ "text": text })),
        ChatEvent::Text(TextEvent::ToolCall(call)) => (
            "tool_call",
            json!({ "id": call.id, "name": call.name, "arguments": call.arguments }),
        ),
        ChatEvent::Text(TextEvent::ToolResult { call, result }) => (
            "tool_result",
            json!({ "id": call.id, "name": call.name, "result": result }),
        ),
        ChatEvent::Text(TextEvent::Done(reply)) => (
            "turn",
            json!({
                "conversation_id": conversation_id,
                "call_id": reply.call_id,
                "text": reply.text,
                "failed": reply.failed,
            }),
        ),
        ChatEvent::Failed(why) => ("error", json!({ "error": why })),
    };
    Event::default().event(name).data(data.to_string())
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_CHARS
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}
