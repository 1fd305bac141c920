//! [`VadParams`]: how a VAD decides the user's turns.
//!
//! Plain data: the `vad` processor announces it in
//! [`FrameBody::VadParams`](super::FrameBody::VadParams), and the VAD
//! analyzer (a layer above `frame`) is configured with it. It lives in the
//! frame layer so that `frame` never imports the VAD.

/// Pipecat's `VADParams`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadParams {
    /// Minimum model confidence for a chunk to count as speech. Default 0.7.
    pub confidence: f64,
    /// Speech needed before the user counts as speaking, seconds. Default 0.2.
    pub start_secs: f64,
    /// Quiet needed before the user counts as stopped, seconds. Default 0.8.
    pub stop_secs: f64,
    /// Minimum smoothed volume (0 to 1) for a chunk to count as speech.
    /// Default 0.6.
    pub min_volume: f64,
}

impl Default for VadParams {
    fn default() -> Self {
        VadParams {
            confidence: 0.7,
            start_secs: 0.2,
            stop_secs: 0.8,
            min_volume: 0.6,
        }
    }
}
