//! One round of a response: the request sent, its event stream read
//! (text pushed as it comes when the round speaks, tool-call fragments
//! assembled), until the stream's `[DONE]` (or its end after a finish
//! reason). Nothing after `[DONE]` is read: a server that resets the
//! connection or leaves it open then has still given a whole answer. So
//! has one whose stream breaks (a reset, a read timeout, an error event)
//! after a finish reason but before `[DONE]`.
//!
//! # Retries
//!
//! The request's 429 and 5xx are retried where it is sent
//! (`http::send_counted`). A stream that fails before any of its content
//! (text or a tool-call fragment) came is asked again too, with the same
//! backoff; both count against one bound, `max_retries` retries in all:
//! an error event sent after the 200 (`{"error": ...}`), a reset
//! connection, or an end before any finish. An error event that refuses
//! the request as it stands (`ServiceError::Refused`: too long a context,
//! `invalid_request_error`, a 4xx-like code other than 408, 409 and 429,
//! as for an HTTP status) is returned at once: the same request would be
//! refused again. So is one refusing the credentials
//! (`ServiceError::CredentialsRefused`), which ends the session as an
//! HTTP 401 does. Once
//! content came, a failure is returned and never retried, so nothing is
//! said twice. A timeout is not retried: the wait was already as long as
//! a turn can bear.

use std::time::Instant;

use crate::conversation::Message;
use crate::frame::{FrameBody, MetricsData};
use crate::pipeline::ProcessorContext;
use crate::services::http::{next_chunk_before, send_counted};
use crate::services::retry::jitter;
use crate::services::task::report;
use crate::services::{Connection, ServiceError, SseDecoder};

use super::tool_calls::{AssembledCall, ToolCallAssembler};
use super::wire::{ChatDelta, ChatRequest, ChatWire};

/// Malformed events of one round reported as error frames; the rest are
/// skipped with one log line.
const MAX_REPORTED_MALFORMED: u32 = 3;

/// How long keep-alive comments alone may hold a response open before its
/// content begins: a reasoning model behind OpenRouter can think for a
/// minute or more, saying so only with comments.
const THINKING_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// What one round of streaming produced.
pub(super) struct Round {
    pub(super) text: String,
    pub(super) calls: Vec<AssembledCall>,
}

/// One request: where it goes, what it asks, and whether its text is
/// pushed as it streams.
pub(super) struct Ask<'a> {
    pub(super) wire: &'a dyn ChatWire,
    pub(super) request: ChatRequest<'a>,
    pub(super) speak: bool,
}

/// A round that failed, and whether any of its content came first.
struct Failed {
    error: ServiceError,
    content_came: bool,
}

impl From<ServiceError> for Failed {
    /// A failure before any content.
    fn from(error: ServiceError) -> Self {
        Failed {
            error,
            content_came: false,
        }
    }
}

/// Whether a stream that failed with `error` before its content is worth
/// asking again (see "Retries"): not a refusal in the stream
/// (`ServiceError::Refused`, `ServiceError::CredentialsRefused`), which
/// the same request meets again.
fn worth_another_try(error: &ServiceError) -> bool {
    matches!(
        error,
        ServiceError::Remote(_) | ServiceError::Request(_) | ServiceError::Closed { .. }
    )
}

impl Ask<'_> {
    /// Sends this request over `connection` and reads its stream, asking
    /// again when it fails before its content (see "Retries"); `id` names
    /// its tool calls that come without one.
    pub(super) async fn stream(
        &self,
        connection: &Connection,
        id: &str,
        messages: &[Message],
        ctx: &ProcessorContext,
        first_token: &mut Option<Instant>,
    ) -> Result<Round, ServiceError> {
        let provider = self.wire.provider();
        let mut retry = 0;
        loop {
            let failed = match self
                .attempt(connection, id, messages, ctx, first_token, &mut retry)
                .await
            {
                Ok(round) => return Ok(round),
                Err(failed) => failed,
            };
            let error = failed.error;
            if failed.content_came || !worth_another_try(&error) {
                return Err(error);
            }
            retry += 1;
            match connection.retry.delay(retry, None, jitter()) {
                Some(delay) => {
                    tracing::warn!(provider, retry, ?delay, error = %error, "the stream failed before its content; retrying");
                    tokio::time::sleep(delay).await;
                }
                None => return Err(error),
            }
        }
    }

    /// One request and its stream; its status retries are counted in
    /// `retries`, with the round's others.
    async fn attempt(
        &self,
        connection: &Connection,
        id: &str,
        messages: &[Message],
        ctx: &ProcessorContext,
        first_token: &mut Option<Instant>,
        retries: &mut u32,
    ) -> Result<Round, Failed> {
        let wire = self.wire;
        let provider = wire.provider();
        let response = send_counted(
            |client| wire.request(client, &self.request, messages),
            connection,
            provider,
            retries,
        )
        .await?;
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if !content_type.starts_with("text/event-stream") {
            return Err(ServiceError::Protocol(format!(
                "expected an event stream (text/event-stream), got `{content_type}`"
            ))
            .into());
        }
        let mut stream = response.bytes_stream();
        let mut events = SseDecoder::new();
        let mut calls = ToolCallAssembler::new();
        let mut text = String::new();
        let mut finished = false;
        let mut malformed = 0u32;
        // The read timeout bounds the wait for an event, not for bytes:
        // once the answer has begun, comment lines (`: keep-alive`,
        // OpenRouter's `: OPENROUTER PROCESSING`) and blank lines move
        // nothing on, or a server sending only those would hold the turn
        // forever. Until the first content (text or a tool call) they say
        // a model is thinking (as OpenRouter documents them), and hold the
        // wait open up to `THINKING_LIMIT` (or the read timeout, if
        // longer): a proxy may well send a role-only chunk first, then
        // think behind comments.
        let read_timeout = connection.read_timeout;
        let thinking_limit = read_timeout.max(THINKING_LIMIT);
        let thinking_until = tokio::time::Instant::now() + thinking_limit;
        let mut seen_content = false;
        let mut event_deadline = tokio::time::Instant::now() + read_timeout;
        let failed = |error, content_came| Failed {
            error,
            content_came,
        };
        'read: loop {
            let bound = if !seen_content && event_deadline >= thinking_until {
                thinking_limit
            } else {
                read_timeout
            };
            let chunk = match next_chunk_before(&mut stream, event_deadline, "event", bound).await {
                Ok(chunk) => chunk,
                // After a finish reason the answer is whole: a reset or a
                // silence where `[DONE]` should be ends the stream.
                Err(error) if finished => {
                    tracing::debug!(provider, error = %error, "the stream broke after its finish reason; taken as its end");
                    break 'read;
                }
                Err(error) => return Err(failed(error, seen_content)),
            };
            // Whether this chunk moved the answer on; the deadline moves
            // only once its events have been pushed on (below).
            let mut progress = false;
            match &chunk {
                Some(bytes) => {
                    events.handle_bytes(bytes);
                    progress = !seen_content && !bytes.is_empty();
                }
                None => events.finish(),
            }
            while let Some(event) = events.poll_event() {
                // An event the wire cannot parse still came whole; a line
                // the decoder could not read is not an event.
                if event.is_ok() {
                    progress = true;
                }
                let deltas = match event.map_err(|e| ServiceError::Protocol(e.to_string())) {
                    Ok(event) => wire.parse(&event.data),
                    Err(error) => Err(error),
                };
                let deltas = match deltas {
                    Ok(deltas) => deltas,
                    Err(error @ ServiceError::Protocol(_)) => {
                        // A server that gets one field wrong gets it wrong in
                        // every chunk: a few reports say so, a flood would
                        // fill the error lane.
                        malformed += 1;
                        if malformed <= MAX_REPORTED_MALFORMED {
                            tracing::warn!(provider, error = %error, "skipping a malformed event");
                            report(error.into_processor_error(provider), ctx).await;
                        } else if malformed == MAX_REPORTED_MALFORMED + 1 {
                            tracing::warn!(
                                provider,
                                "the server keeps sending malformed events: skipped, no longer reported"
                            );
                        }
                        continue;
                    }
                    Err(error) if finished => {
                        tracing::warn!(provider, error = %error, "an error after the finish reason; the answer was whole");
                        break 'read;
                    }
                    Err(error) => return Err(failed(error, seen_content)),
                };
                for delta in deltas {
                    let content = matches!(delta, ChatDelta::Text(_) | ChatDelta::ToolCall { .. });
                    seen_content |= content;
                    if content && let Some(start) = first_token.take() {
                        ctx.push_downstream(FrameBody::Metrics(MetricsData::Ttfb {
                            processor: ctx.name().to_owned(),
                            value_ms: start.elapsed().as_secs_f64() * 1000.0,
                        }))
                        .await;
                    }
                    match delta {
                        ChatDelta::Text(piece) => {
                            text.push_str(&piece);
                            if self.speak {
                                ctx.push_downstream(FrameBody::LlmText(piece)).await;
                            }
                        }
                        ChatDelta::ToolCall {
                            index,
                            id,
                            name,
                            arguments,
                        } => match index {
                            Some(index) => calls.add(
                                index,
                                id.as_deref(),
                                name.as_deref(),
                                arguments.as_deref(),
                            ),
                            None => calls.add_unindexed(
                                id.as_deref(),
                                name.as_deref(),
                                arguments.as_deref(),
                            ),
                        },
                        ChatDelta::Finish(reason) => {
                            if reason == "length" {
                                tracing::warn!(provider, "the answer was cut at max_tokens");
                            }
                            finished = true;
                        }
                        ChatDelta::Done => {
                            // The answer is whole: whatever the connection
                            // does next (a reset, or nothing) cannot fail it.
                            finished = true;
                            break 'read;
                        }
                    }
                }
            }
            if chunk.is_none() {
                break;
            }
            if progress {
                // Restarted only now, after the pushes above: the read
                // timeout bounds the wait on the server, and a push held up
                // downstream (a full lane) must not use it up. Until the
                // content begins, the wait also ends at the thinking limit.
                let restarted = tokio::time::Instant::now() + read_timeout;
                event_deadline = if seen_content {
                    restarted
                } else {
                    event_deadline.max(restarted.min(thinking_until))
                };
            }
        }
        if !finished {
            let error = ServiceError::Closed {
                code: None,
                reason: "the stream ended without a finish reason or [DONE]".to_owned(),
            };
            return Err(failed(error, seen_content));
        }
        Ok(Round {
            text,
            calls: calls.finish(id),
        })
    }
}
