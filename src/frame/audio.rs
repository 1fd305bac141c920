//! [`AudioFrame`]: 16-bit PCM audio, as frames carry it.

use std::time::Duration;

use bytes::Bytes;

/// 16-bit little-endian PCM audio.
///
/// `pts` is the presentation time on the session clock: for input, when the
/// first sample was captured; for output, set by the output transport when
/// the audio is scheduled.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioFrame {
    /// Interleaved 16-bit little-endian samples.
    pub data: Bytes,
    /// Samples per second per channel.
    pub sample_rate: u32,
    /// Number of interleaved channels.
    pub channels: u16,
    /// Presentation time since the session started.
    pub pts: Duration,
}

impl AudioFrame {
    /// Audio from i16 samples.
    pub fn from_samples(samples: &[i16], sample_rate: u32, channels: u16, pts: Duration) -> Self {
        AudioFrame {
            data: crate::audio::pcm::samples_to_le_bytes(samples),
            sample_rate,
            channels,
            pts,
        }
    }

    /// The samples, decoded from little-endian bytes.
    pub fn samples(&self) -> Vec<i16> {
        crate::audio::pcm::samples_from_le_bytes(&self.data)
    }

    /// Number of sample frames (samples per channel).
    pub fn num_frames(&self) -> usize {
        self.data.len() / 2 / usize::from(self.channels.max(1))
    }

    /// How long the audio lasts.
    pub fn duration(&self) -> Duration {
        if self.sample_rate == 0 {
            return Duration::ZERO;
        }
        Duration::from_micros(self.num_frames() as u64 * 1_000_000 / u64::from(self.sample_rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_frame_duration_counts_sample_frames() {
        let stereo = AudioFrame::from_samples(&[0; 640], 16_000, 2, Duration::ZERO);
        assert_eq!(stereo.num_frames(), 320);
        assert_eq!(stereo.duration(), Duration::from_millis(20));
    }
}
