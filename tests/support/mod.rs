//! What the integration tests share, one tree included the same way by
//! every test binary (`mod support;`) and by the benchmarks that need it:
//!
//! - [`fake`]: fake provider servers speaking each provider's documented
//!   wire protocol (OpenAI-compatible HTTP, Deepgram, ElevenLabs, Cartesia,
//!   Twilio's media streams and REST API, a webhook receiver);
//! - [`net`]: the one way to listen (a free loopback port);
//! - [`wait`]: waiting on notifications instead of the clock;
//! - [`signal`]: the one tone generator, the sample speech, and measures
//!   of audio; [`mulaw`]: the same for fake phone callers at 8 kHz;
//!   [`speech`]: espeak-ng speech and pink noise, the shipped sections;
//! - [`session`]: running pipelines and reading what came out;
//!   [`clocked`]: a live pipeline on an audio clock the test moves;
//!   [`processors`]: test-only processor types and the registry with them;
//!   [`turns`]: sessions driven turn by turn for the context store;
//! - [`server`]: the server in-process; [`webrtc`]: WebRTC client calls;
//!   [`browser`]: the scripts of `tests/browser/` in headless Chromium;
//!   [`redis_server`]: a real `redis-server` of the test's own;
//!   [`redis_cluster`]: a real Redis Cluster of the test's own;
//!   [`holding_proxy`]: a TCP proxy that stalls one request;
//!   [`s3_server`]: a real S3-compatible server (SigV4 checked) in process;
//! - [`rng`]: deterministic test vectors;
//! - [`served_binary`]: `voxpipe serve` as a child process (RSS, limits,
//!   signals).

#![allow(dead_code)] // each test binary uses a different subset
#![allow(unreachable_pub)] // shared between test binaries, not an API
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod browser;
pub mod clocked;
pub mod fake;
pub mod holding_proxy;
pub mod mulaw;
pub mod net;
pub mod processors;
pub mod redis_cluster;
pub mod redis_server;
pub mod rng;
pub mod s3_server;
pub mod served_binary;
pub mod server;
pub mod session;
pub mod signal;
pub mod speech;
pub mod text;
pub mod turns;
pub mod wait;
pub mod webrtc;
