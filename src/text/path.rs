//! [`text_path`]: the processors a text message runs through.

use crate::pipeline::ProcessorEntry;

/// The processor types that work on audio: a text conversation skips them.
pub const AUDIO_PROCESSOR_TYPES: [&str; 6] = ["vad", "stt", "tts", "gain", "resample", "parrot"];

/// The pipeline's text path: every processor but the audio ones, in order.
/// Empty when the pipeline has no `user_context` (nothing would turn a
/// message into a turn).
pub fn text_path(processors: &[ProcessorEntry]) -> Vec<ProcessorEntry> {
    if !processors.iter().any(|p| p.type_name == "user_context") {
        return Vec::new();
    }
    processors
        .iter()
        .filter(|p| !AUDIO_PROCESSOR_TYPES.contains(&p.type_name.as_str()))
        .cloned()
        .collect()
}
