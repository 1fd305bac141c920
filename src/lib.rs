//! voxpipe: a real-time voice-AI pipeline engine.
//!
//! Audio and text travel as [frames](frame) through a chain of
//! [processors](processor), with parallel branches where a pipeline asks
//! for them, that a TOML file defines. See `README.md` for the
//! user's view and each module's docs for the design notes.

// Layers, bottom to top: a module imports only from the layers below it
// (docs/architecture.md draws the picture).
pub mod agent;
pub mod audio;
pub mod config;
pub mod conversation;
pub mod events;
pub mod frame;
pub mod metrics;
pub mod objects;
pub mod outbound;
pub mod pipeline;
pub mod pipeline_file;
pub mod processors;
mod random;
pub mod recording;
pub mod server;
pub mod services;
pub mod session;
pub mod store;
pub mod testing;
pub mod text;
pub mod transport;
pub mod vad;
