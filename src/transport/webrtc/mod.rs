//! The WebRTC transport: browser calls, compatible with Pipecat's
//! SmallWebRTC clients.
//!
//! A page posts its offer (`POST /api/offer`, [`OfferRequest`]); the answer
//! ([`Answer`]) carries the server's candidates, gathered on the configured
//! UDP addresses (loopback included by default) and through the configured
//! STUN/TURN servers; candidates the page finds later arrive by
//! `PATCH /api/offer` ([`PatchRequest`]). Each call is one session:
//!
//! ```text
//! browser ──Opus/RTP──▶ transport.input ▶ …pipeline… ▶ transport.output ──Opus/RTP──▶ browser
//!         ◀─data channel: events (JSON lines, or RTVI)── EventRelay (observer)
//!         ──data channel: text input, mute, RTVI──▶ transport.input
//! ```
//!
//! | file | what |
//! |---|---|
//! | [`signalling`] | the HTTP messages, Pipecat's shapes |
//! | [`inbound`] | RTP Opus → 20 ms frames at the pipeline rate, loss concealed (sans-IO) |
//! | [`outbound`] | frames → 20 ms Opus packets, RTP time following session time (sans-IO) |
//! | [`messages`] | the data channel protocol (sans-IO); RTVI's is [`crate::transport::rtvi`] |
//! | `budget` | how many messages a page may send: a flood is dropped unread (sans-IO) |
//! | `peer` | one `RTCPeerConnection`: negotiation, its event handler |
//! | `connection` | a call's current connection, renegotiated or replaced; events of a replaced one are told apart by generation |
//! | `call` | [`WebRtcCall`]: a call's transport ends, its tasks, its closing |
//! | `input` | `transport.input`: the reader task |
//! | `client_gate` | when the pipeline hears that the client is connected: the session's announcement held until the peer connection is (sans-IO) |
//! | `sink`, `writer` | `transport.output`'s sink and the task writing RTP |
//! | `relay` | pipeline events to the page, as JSON lines or RTVI |
//! | `pc_id` | a connection's `pc_id`: a random capability, not the call's id |
//! | `live_calls` | the live calls by `pc_id` |
//! | `offers` | [`WebRtcSignalling`]: each offer and candidate to its call, a first offer to a new one |
//! | `settings` | [`WebRtcSettings`]: `[transport.webrtc]` with its secrets resolved; mDNS only where the host can multicast |
//! | `ice_servers` | [`IceServers`]: the STUN and TURN servers, for our connections and for clients; TURN REST credentials (sans-IO) |
//! | `client` | [`ClientPeer`]: a browser stand-in for tests and benchmarks |
//!
//! A call ends its session gracefully (turns in flight complete and are
//! kept) when the browser closes the connection or its data channel
//! (`hangup`), when an RTVI client sends `disconnect-bot`
//! (`disconnect_bot`), when the connection fails (`peer_failed`), or when
//! nothing arrives for the idle timeout (`idle_timeout`).

mod budget;
mod call;
mod client;
mod client_gate;
mod connection;
mod ice_servers;
pub mod inbound;
mod input;
mod live_calls;
pub mod messages;
mod offers;
pub mod outbound;
mod pc_id;
mod peer;
mod relay;
mod settings;
pub mod signalling;
mod sink;
mod writer;

pub use call::WebRtcCall;
pub use client::{ClientError, ClientOptions, ClientPeer, ReceivedAudio};
pub use ice_servers::{IceServer, IceServers, SettingsError};
pub use input::{PeerEnd, WebRtcInput};
pub use offers::WebRtcSignalling;
pub use settings::WebRtcSettings;
pub use signalling::{
    Answer, CandidatePatch, OfferRequest, PatchRequest, SignallingError, session_parameters,
};
pub use sink::WebRtcSink;
