//! Decoded WAV audio.

use std::time::Duration;

use crate::audio::pcm::mixdown_to_mono;

/// The samples of a WAV file, converted to 16 bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WavAudio {
    /// All samples, channels interleaved (`L R L R ...` for stereo).
    pub samples: Vec<i16>,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Number of interleaved channels (at least 1 when read from a file).
    pub channels: u16,
}

impl WavAudio {
    /// Number of sample frames (samples per channel).
    pub fn frames(&self) -> usize {
        match self.channels {
            0 => 0,
            n => self.samples.len() / usize::from(n),
        }
    }

    /// The audio mixed down to mono (the mean of the channels, see
    /// [`mixdown_to_mono`]); a copy when already mono.
    pub fn to_mono(&self) -> Vec<i16> {
        mixdown_to_mono(&self.samples, self.channels)
    }

    /// Playing time: frames divided by the sample rate (zero if the rate is
    /// zero).
    pub fn duration(&self) -> Duration {
        if self.sample_rate == 0 {
            return Duration::ZERO;
        }
        let frames = self.frames() as u64;
        let rate = u64::from(self.sample_rate);
        let secs = frames / rate;
        let nanos = (frames % rate) * 1_000_000_000 / rate;
        Duration::new(secs, nanos as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_duration_and_mono() {
        let audio = WavAudio {
            samples: vec![10, 20, 30, 40, 50, 60],
            sample_rate: 8_000,
            channels: 2,
        };
        assert_eq!(audio.frames(), 3);
        assert_eq!(audio.duration(), Duration::from_nanos(375_000));
        assert_eq!(audio.to_mono(), vec![15, 35, 55]);
        let one_second = WavAudio {
            samples: vec![0; 16_000],
            sample_rate: 16_000,
            channels: 1,
        };
        assert_eq!(one_second.duration(), Duration::from_secs(1));
        let odd = WavAudio {
            samples: vec![],
            sample_rate: 0,
            channels: 0,
        };
        assert_eq!((odd.frames(), odd.duration()), (0, Duration::ZERO));
    }
}
