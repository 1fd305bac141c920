//! The file transport: a session over a WAV file (`voxpipe run`).

mod input;
mod output;

pub use input::{FRAME_DURATION, FileInput};
pub use output::WavSink;
