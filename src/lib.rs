//! voxpipe: a real-time voice-AI pipeline engine.
//!
//! Audio and text travel as [frames](frame) through a flat chain of
//! [processors](processor) that a TOML file defines. See `README.md` for the
//! user's view and each module's docs for the design notes.

pub mod audio;
pub mod config;
pub mod context;
pub mod events;
pub mod frame;
pub mod metrics;
pub mod pipeline;
pub mod processor;
pub mod processors;
pub mod server;
pub mod session;
pub mod testing;
pub mod transport;
pub mod vad;
