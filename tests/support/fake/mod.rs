//! Fake provider servers, each on a free loopback port and speaking the
//! provider's documented wire protocol (status codes, headers, SSE framing,
//! WebSocket messages, error bodies), scripted by the test and recording
//! what they received:
//!
//! - [`openai`]: one OpenAI-compatible HTTP API (chat completions streamed
//!   and not, embeddings, speech, transcriptions) and tool endpoints;
//! - [`deepgram`], [`elevenlabs`], [`cartesia`]: the streaming STT and TTS
//!   sockets, over the shared [`socket`] script and record;
//! - [`twilio_media`]: Twilio's side of a Media Streams call (a client of
//!   our server); [`twilio_rest`]: Twilio's Calls REST resource;
//! - [`webhook_receiver`]: a customer's webhook endpoint;
//! - [`mcp_server`]: an MCP server (written with the official SDK), over
//!   stdio or streamable HTTP.

pub mod cartesia;
pub mod deepgram;
pub mod elevenlabs;
pub mod mcp_server;
pub mod openai;
pub mod openai_wire;
pub mod socket;
pub mod twilio_media;
pub mod twilio_rest;
pub mod webhook_receiver;
