//! Transports: where a session's audio comes from and goes to.
//!
//! A pipeline never names its transport. A session binds one: its input
//! processor goes in front of the pipeline's processors, its output
//! processor after them. Every transport's output is an
//! [`OutputTransport`] over its own [`AudioSink`], so scheduling, pacing,
//! speaking state and interruptions behave the same everywhere.
//!
//! | file | what |
//! |---|---|
//! | [`file`](mod@file) | a session over a WAV file (`voxpipe run`) |
//! | [`twilio`] | phone calls: Twilio Media Streams over a WebSocket |
//! | [`webrtc`] | browser calls: Pipecat's SmallWebRTC protocol |
//! | [`rtvi`] | RTVI, the messages of Pipecat's client SDKs (sans-IO) |
//! | `ends` | [`TransportEnds`]: the two processors a transport gives a session |
//! | `heard_words` | when the listener hears each word a TTS timed: its place in the playout (sans-IO) |
//! | `output` | [`OutputTransport`], every transport's output processor, and the [`AudioSink`] each one writes to |
//! | `playout` | [`Playout`]: when bot audio leaves, and the bot's speaking state (sans-IO) |
//! | `playback_tap` | [`PlaybackTap`]: a listener told what the caller heard of the bot (a recorder) |
//! | `reader_task` | the future reading a live transport's far end for its input processor, in the session's task |
//! | `skip_log` | skipped input, logged without letting a far end flood the logs |
//! | `stats` | [`TransportStats`]: a transport's traffic counts, for a server's metrics |
//! | `wake_grid` | timed wake-ups moved onto a grid shared by every call, so one thread wake-up serves many |
//! | `websocket` | [`WsInbound`]: a WebSocket's inbound side, whatever library serves it |
//!
//! A transport imports nothing above the processors (see the layering in
//! `docs/architecture.md`): the server hands it a socket or a signalling
//! request and runs a session on the ends it returns.

mod ends;
pub mod file;
mod heard_words;
mod output;
mod playback_tap;
mod playout;
mod reader_task;
mod real_time;
pub mod rtvi;
mod skip_log;
mod stats;
pub mod twilio;
mod wake_grid;
pub mod webrtc;
mod websocket;

pub use ends::{INPUT_NAME, TransportEnds};
pub use output::{AudioSink, OutputTransport, Pacing};
pub use playback_tap::{PlaybackListener, PlaybackTap};
pub use playout::{Cut, Playout, PlayoutEvent, SendAhead};
pub use stats::{NoStats, TransportStats};
pub use websocket::WsInbound;
