//! Services: the clients of speech-to-text, LLM and text-to-speech
//! providers, as processors.
//!
//! # A provider is a wire adapter over one shared driver
//!
//! Each kind of service has one driver, which owns what every provider of
//! that kind needs: the processor and its frames, child tasks, interruption
//! and cancellation, reconnection, retries, metrics and error reporting.
//! A provider file only says how to connect, how to encode what is sent and
//! how to parse what comes back, as pure functions tested from fixtures
//! (no socket): see `stt/deepgram.rs`, `tts/cartesia.rs`, `llm/openai.rs`.
//!
//! # State machines apart from their sockets
//!
//! The state that lives beside a socket is kept in sans-IO state machines:
//! fed with `handle_*(input, now)`, drained with `poll_*()`, no socket and
//! no clock inside, tested from the providers' own messages with explicit
//! instants. Their drivers only move bytes and sleep until the next
//! deadline (`timer.rs`). They are the STT connection (`stt/connection.rs`:
//! replay after a reconnect, keep-alive, backoff, the polite close), the
//! TTS context socket (`tts/context_socket.rs`) and the TTS responses'
//! bookkeeping (`tts/responses.rs`). Child tasks are the pipeline's
//! `ChildTask`s, aborted when their processor drops them.
//!
//! # Shared plumbing
//!
//! - One HTTP client for the process (`http.rs`), with a timeout until the
//!   response headers and a read timeout between streamed pieces (between
//!   events for an LLM's event stream, whose comments are no progress).
//! - Retries with exponential backoff and jitter, on 429 and 5xx only, and
//!   only before any output was produced (`retry.rs`); `Retry-After` is a
//!   floor, and one longer than the configured limit fails at once.
//! - Errors ([`ServiceError`]) become `Error` frames naming the provider,
//!   the status and the provider's own message; refused credentials (401,
//!   403) end the session, anything else fails the current request only.
//! - API keys come from the variables `*_env` keys name, read when a
//!   session starts, and are redacted from every `Debug` output
//!   ([`ApiKey`]).
//! - Server-sent events are decoded by a sans-IO [`SseDecoder`].

pub(crate) mod error;
pub(crate) mod http;
pub mod llm;
mod options;
mod retry;
mod secret;
mod sse;
pub mod stt;
mod task;
mod timer;
mod timestamp;
pub mod tts;
mod url;
mod websocket;

pub use error::ServiceError;
pub use options::{Connection, ConnectionOptions};
pub use retry::{RetryPolicy, parse_retry_after};
pub use secret::ApiKey;
pub use sse::{SseDecoder, SseError, SseEvent};

pub(crate) use crate::pipeline::error_chain;
