//! `voxpipe serve`: one pipeline served to many callers at once.
//!
//! | route | what |
//! |---|---|
//! | `POST /twilio/voice` | Twilio's voice webhook: TwiML connecting the call to `/twilio/ws` (signed when an auth token is configured) |
//! | `GET /twilio/ws` | a Twilio media stream: one fresh session of the pipeline (an outbound call's stream joins its call's record) |
//! | `POST /twilio/status`, `POST /twilio/amd` | status callbacks and answering-machine verdicts of outbound calls (signed) |
//! | `POST /api/calls`, `GET`/`DELETE /api/calls/{call_id}` | place one outbound call, read it, end it (management API) |
//! | `POST /api/offer` | a browser's WebRTC offer (Pipecat's SmallWebRTC protocol): a new call is one fresh session; a known `pc_id` renegotiates or (`restart_pc`) replaces its connection |
//! | `PATCH /api/offer` | ICE candidates the browser trickles after its offer |
//! | `POST /start` | Pipecat's runner session flow: `{sessionId, iceConfig}` (`iceConfig` only with ICE servers); the session waits for its offer |
//! | `POST`/`PATCH /sessions/{sessionId}/api/offer` | a started session's own offer and candidates |
//! | `GET /api/ice-config` | the STUN and TURN servers for a page (`{iceServers}`, TURN credentials included) |
//! | `GET /` | the browser client: talk to the pipeline, see its transcript and each turn's latency |
//! | `POST /api/campaigns`, `GET /api/campaigns/{id}`, `POST /api/campaigns/{id}/pause\|resume\|cancel` | campaigns: create (JSON list or CSV), progress by status, pause, resume, cancel (`campaigns`) |
//! | `GET /health` | liveness and readiness (JSON; 503 when not ready) |
//! | `GET /health/live` | liveness alone (200 while the process answers) |
//! | `GET /metrics` | Prometheus text: sessions, audio frames, errors, latencies |
//! | `POST /api/learn` | a transcript to learn skills and test cases from (`learn`; the management API's key) |
//! | `POST /twilio/messaging` | Twilio's incoming SMS and WhatsApp messages, answered by the text path (signed; `twilio_messaging`) |
//! | `POST /api/chat` | one chat message, answered as server-sent events (`chat`; the management API's key) |
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
//! Who may start a call is decided before a slot is spent (`admission`):
//! offers, `/start` and `/api/ice-config` are rate limited per client
//! address (`429` with `Retry-After`), may need a bearer key, and a
//! session's own path is its capability (`session_token`). Pages on other
//! origins may call only when `[server] cors_origins` lists them (`cors`).
//! A body over the limit is `413`, a malformed one `400` with the reason.
//!
//! Other transports and stores plug in here: a transport adds its routes to
//! `router.rs` and runs its sessions through `session.rs` (the live
//! sessions, observers, metrics, the context store's memory); a store adds
//! a [`ReadinessCheck`].
//!
//! | file | what |
//! |---|---|
//! | `serve` | [`Server`], [`ServerBuilder`]: building (secrets, a probe of every processor) and serving until shutdown |
//! | `state` | what the request handlers share |
//! | `connections` | the connection cap and idle timeout every socket is held to |
//! | `router` | the routes |
//! | `live_sessions` | admission against `max_sessions`; ending every session at shutdown |
//! | `session` | running one session for a connection, whatever its transport |
//! | [`shutdown`] | the signals, and draining the sessions |
//! | `readiness`, `store_readiness`, `storage_readiness` | [`ReadinessCheck`]s, the context store's and object storage's |
//! | `metrics`, `observer` | the server's metrics, and the observer feeding them from each session |
//! | `health` | `GET /health` |
//! | `twilio_voice`, `twilio_stream` | `POST /twilio/voice`, `GET /twilio/ws` (the socket itself is the Twilio transport's) |
//! | `stream_auth` | who may open a media stream (upgrade signature, per-call token) and which call it may hang up |
//! | `outbound_calls`, `twilio_status` | `/api/calls`; `/twilio/status`, `/twilio/amd` and outbound streams joining their calls |
//! | `webrtc_offer` | `POST`/`PATCH /api/offer`, and starting a browser call |
//! | `offer_precheck` | what every browser offer has, checked before a slot is taken (sans-IO) |
//! | `start` | `POST /start`, `GET /api/ice-config` |
//! | `session_offer` | `POST`/`PATCH /sessions/{sessionId}/api/offer` |
//! | `admission`, `rate_limit` | the rate limit per address (sans-IO), the bearer key |
//! | `api_access` | who may use the management API (`/api/calls`, `/api/campaigns`, `/api/analytics`) |
//! | `session_token`, `pending_sessions` | signed, expiring session ids; sessions waiting for their offer (sans-IO) |
//! | `cors` | which other origins may call |
//! | `body` | bodies that cannot be read: 413 or 400 |
//! | `client_page` | `GET /`: the browser client |
//! | `request` | the public host and scheme a request was made to |
//! | `error` | [`ServerError`] |
//!
//! With an agent runtime ([`ServerBuilder::context`]) each session opens
//! its memory before its processors are built (segment prompt, tactics, the
//! call stored as pending), `/health` checks the store, and a shutdown waits
//! for the sessions' writers to store what they hold.

mod admission;
mod analytics;
mod api_access;
mod body;
mod campaigns;
mod chat;
mod client_page;
mod connections;
mod cors;
mod error;
mod health;
mod http_conn;
mod idempotency;
mod in_flight;
mod learn;
mod live_sessions;
mod message_delivery;
mod message_marks;
mod message_sender;
mod message_status;
mod metrics;
mod observer;
mod offer_precheck;
mod outbound_calls;
mod pending_sessions;
mod rate_limit;
mod readiness;
mod request;
mod router;
mod serve;
mod session;
mod session_offer;
mod session_token;
pub mod shutdown;
mod signalling_errors;
mod start;
mod state;
mod storage_readiness;
mod store_readiness;
mod stream_auth;
mod twilio_messaging;
mod twilio_status;
mod twilio_stream;
mod twilio_voice;
mod webrtc_offer;

pub use analytics::{
    AnalyticsQuery, BadParameter, MAX_CALLS, MAX_RANGE_MS, MAX_SCANNED, analytics_report,
};
pub use error::ServerError;
pub use readiness::{CHECK_TIMEOUT, ReadinessCheck};
pub use serve::{Server, ServerBuilder};
pub use state::ObserverFactory;
