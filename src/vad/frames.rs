//! [`FrameVad`]: the analyzer fed with inbound audio frames, as the `vad`
//! processor runs it: frames converted to the model's rate
//! ([`ModelInput`]), decisions in session time, and the model's rate
//! chosen from the audio.
//!
//! # The model's rate
//!
//! A model that runs at several rates (Silero: 8 and 16 kHz) analyses
//! 8 kHz audio at 8 kHz, as Pipecat does with 8 kHz input, even in a 16 kHz
//! pipeline:
//!
//! - frames arriving at a rate the model runs at are analysed at that rate
//!   (decided on the first frame);
//! - frames at a wideband rate that carry an 8 kHz source (a phone call the
//!   transport upsampled) are recognised by [`NarrowbandDetector`], and the
//!   analysis moves to 8 kHz at the first moment the user is quiet after
//!   the decision (the stream restarts there; positions before it were
//!   already reported), decimating the frames at that rate (every other
//!   sample at 16 kHz) rather than filtering them
//!   ([`ModelInput::band_limited`]).
//!
//! Upsampled telephone audio scored at 16 kHz was measured starting speech
//! late in noise (issue 16); `tests/speech/vad_fidelity.rs` compares both paths.

use std::time::Duration;

use super::narrowband::{Band, NarrowbandDetector};
use super::{ModelInput, VadAnalyzer, VadEvent, VadParams, VadState, VoiceModel};
use crate::audio::{AudioError, pcm};
use crate::frame::AudioFrame;

/// The rate of a phone call's audio.
const NARROWBAND_RATE: u32 = 8_000;

/// A [`VadAnalyzer`] fed with frames. See the module docs.
#[derive(Debug)]
pub struct FrameVad {
    analyzer: VadAnalyzer,
    input: ModelInput,
    /// Looking for an 8 kHz source while the model runs above 8 kHz.
    narrowband: Option<NarrowbandDetector>,
    samples: Vec<i16>,
    first_frame: bool,
}

impl FrameVad {
    /// Frames analysed by `model` with `params`.
    pub fn new(model: Box<dyn VoiceModel>, params: VadParams) -> Self {
        let rate = model.sample_rate();
        FrameVad {
            analyzer: VadAnalyzer::new(model, params),
            input: ModelInput::new(rate),
            narrowband: None,
            samples: Vec::new(),
            first_frame: true,
        }
    }

    /// The same, reporting pauses of `secs` ([`VadAnalyzer::with_pauses`]).
    pub fn with_pauses(mut self, secs: f64) -> Self {
        self.analyzer = self.analyzer.with_pauses(secs);
        self
    }

    /// The analyzer.
    pub fn analyzer(&self) -> &VadAnalyzer {
        &self.analyzer
    }

    /// Analyses the next inbound frame.
    pub fn push(&mut self, audio: &AudioFrame) -> Result<(), AudioError> {
        if std::mem::take(&mut self.first_frame) {
            if audio.sample_rate != self.analyzer.sample_rate() {
                self.switch_to(ModelInput::new(audio.sample_rate));
            }
            if audio.sample_rate > NARROWBAND_RATE && self.analyzer.sample_rate() > NARROWBAND_RATE
            {
                self.narrowband = Some(NarrowbandDetector::new(audio.sample_rate));
            }
        }
        if let Some(detector) = &mut self.narrowband {
            self.samples.clear();
            pcm::le_bytes_to_mono(&audio.data, audio.channels.max(1), &mut self.samples);
            match detector.push(&self.samples) {
                Some(Band::Wide) => self.narrowband = None,
                Some(Band::Narrow) if self.analyzer.state() == VadState::Quiet => {
                    // Nothing above 4 kHz at this rate: decimated, no filter.
                    self.switch_to(ModelInput::band_limited(NARROWBAND_RATE, audio.sample_rate));
                    self.narrowband = None;
                }
                _ => {}
            }
        }
        let samples = self.input.convert(audio)?;
        self.analyzer.push_audio(samples);
        Ok(())
    }

    /// The next decision, if any. Call until `None` after each push.
    pub fn poll_event(&mut self) -> Option<VadEvent> {
        self.analyzer.poll_event()
    }

    /// The session time of the analyzer's `position`.
    pub fn time_of(&self, position: u64) -> Duration {
        self.input.time_of(position)
    }

    /// Moves the analysis to `input`'s model rate if the model runs at it.
    fn switch_to(&mut self, input: ModelInput) {
        let rate = input.model_rate();
        if self.analyzer.set_sample_rate(rate) {
            self.input = input;
            tracing::debug!(rate, "the VAD analyses at the audio's own rate");
        }
    }
}
