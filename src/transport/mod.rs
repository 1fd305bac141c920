//! Transports: where a session's audio comes from and goes to.
//!
//! A pipeline never names its transport. A session binds one: its input
//! processor goes in front of the pipeline's processors, its output
//! processor after them. Every transport's output is an
//! [`OutputTransport`] over its own [`AudioSink`], so scheduling, pacing,
//! speaking state and interruptions behave the same everywhere.

mod ends;
pub mod file;
mod output;
mod playout;
mod reader_task;
mod skip_log;
mod stats;
pub mod twilio;
pub mod webrtc;
mod websocket;

pub use ends::TransportEnds;
pub use output::{AudioSink, OutputTransport, Pacing};
pub use playout::{Cut, Playout, PlayoutEvent};
pub(crate) use reader_task::ReaderTask;
pub(crate) use skip_log::SkipLog;
pub use stats::{NoStats, TransportStats};
pub use websocket::WsInbound;
