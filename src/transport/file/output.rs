//! The file transport's output: bot audio written to a mono WAV at the
//! session time it left, with silence where the bot was silent, so the output
//! lines up with the input sample for sample.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::audio::wav::WavWriter;
use crate::frame::AudioFrame;
use crate::pipeline::ProcessorError;
use crate::transport::output::AudioSink;

/// Writes bot audio into a WAV file at its session time.
pub struct WavSink {
    path: PathBuf,
    writer: Option<WavWriter>,
    sample_rate: u32,
    /// Samples written so far.
    written: u64,
    /// Pad the file to at least this length at the end (the input's length).
    min_length: Duration,
}

impl WavSink {
    /// A WAV at `path` at `sample_rate`, created now.
    pub fn create(path: &Path, sample_rate: u32) -> Result<Self, ProcessorError> {
        let writer = WavWriter::create(path, sample_rate).map_err(ProcessorError::fatal)?;
        Ok(WavSink {
            path: path.to_owned(),
            writer: Some(writer),
            sample_rate,
            written: 0,
            min_length: Duration::ZERO,
        })
    }

    /// Pads the file with silence to at least `length` when it is finished.
    pub fn with_min_length(mut self, length: Duration) -> Self {
        self.min_length = length;
        self
    }

    fn sample_index(&self, t: Duration) -> u64 {
        (t.as_micros() as u64 * u64::from(self.sample_rate) + 500_000) / 1_000_000
    }

    fn pad_to(&mut self, index: u64) -> Result<(), ProcessorError> {
        const SILENCE: [i16; 1024] = [0; 1024];
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        while self.written < index {
            let n = (index - self.written).min(SILENCE.len() as u64) as usize;
            writer.write(&SILENCE[..n]).map_err(ProcessorError::fatal)?;
            self.written += n as u64;
        }
        Ok(())
    }
}

impl AudioSink for WavSink {
    fn write(&mut self, audio: &AudioFrame) -> Result<(), ProcessorError> {
        if audio.sample_rate != self.sample_rate || audio.channels != 1 {
            return Err(ProcessorError::recoverable(format!(
                "{}: output audio is {} Hz x{}, the file is {} Hz mono",
                self.path.display(),
                audio.sample_rate,
                audio.channels,
                self.sample_rate
            )));
        }
        self.pad_to(self.sample_index(audio.pts))?;
        let samples = audio.samples();
        if let Some(writer) = self.writer.as_mut() {
            writer.write(&samples).map_err(ProcessorError::fatal)?;
            self.written += samples.len() as u64;
        }
        Ok(())
    }

    fn finish(&mut self, end: Duration) -> Result<(), ProcessorError> {
        self.pad_to(self.sample_index(end.max(self.min_length)))?;
        match self.writer.take() {
            Some(writer) => writer.finalize().map_err(ProcessorError::fatal),
            None => Ok(()),
        }
    }
}
