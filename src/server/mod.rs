//! `voxpipe serve`: one pipeline served to many callers at once.
//!
//! | route | what |
//! |---|---|
//! | `POST /twilio/voice` | Twilio's voice webhook: TwiML connecting the call to `/twilio/ws` (signed when an auth token is configured) |
//! | `GET /twilio/ws` | a Twilio media stream: one fresh session of the pipeline |
//! | `POST /api/offer` | a browser's WebRTC offer (Pipecat's SmallWebRTC protocol): a new call is one fresh session; a known `pc_id` renegotiates or (`restart_pc`) replaces its connection |
//! | `PATCH /api/offer` | ICE candidates the browser trickles after its offer |
//! | `GET /` | the browser client: talk to the pipeline, see its transcript and each turn's latency |
//! | `GET /health` | liveness and readiness (JSON; 503 when not ready) |
//! | `GET /metrics` | Prometheus text: sessions, audio frames, errors, latencies |
//!
//! Each session runs inside a `call` tracing span carrying its `call_id`
//! (and `call_sid` once Twilio names it), so every log line of a call says
//! which call it is about; `--log-format json` makes them structured.
//!
//! Limits come from the pipeline's `[server]` section
//! ([`crate::config::ServerSection`]): at most `max_sessions` at once (more
//! get a busy signal or a 503), messages up to `max_message_bytes`, streams
//! silent for `idle_timeout_secs` end (browser calls: `[transport.webrtc]
//! idle_timeout_secs`, longer, as a browser may take seconds to restart
//! its connection). Shutdown is graceful (see
//! [`shutdown`]).
//!
//! Other transports and stores plug in here: a transport adds its routes to
//! `router.rs` and runs its sessions through `session.rs` (registry,
//! observers, metrics, the context store's memory); a store adds a
//! [`ReadinessCheck`].
//!
//! With a agent runtime ([`ServerBuilder::context`]) each session opens
//! its memory before its processors are built (segment prompt, tactics, the
//! call stored as pending), `/health` checks the store, and a shutdown waits
//! for the sessions' writers to store what they hold.

mod client_page;
mod context;
mod error;
mod health;
mod metrics;
mod observer;
mod registry;
mod request;
mod router;
mod session;
pub mod shutdown;
mod state;
mod twilio_stream;
mod twilio_voice;
mod webrtc_offer;

pub use error::ServerError;
pub use health::{CHECK_TIMEOUT, ReadinessCheck};
pub use state::{ObserverFactory, Server, ServerBuilder};
