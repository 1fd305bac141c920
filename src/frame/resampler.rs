//! [`FrameResampler`]: a stream of audio frames converted to one rate,
//! mono, with one stateful resampler per stream so chunk edges stay
//! seamless. The resampler delays the stream by about 10 ms (its filter);
//! `pts` is kept from the input frame.

use super::audio::AudioFrame;
use crate::audio::{AudioError, StreamResampler, pcm};

/// Converts a stream of audio frames to one rate, mono.
#[derive(Debug)]
pub struct FrameResampler {
    to_hz: u32,
    resampler: Option<StreamResampler>,
    /// Audio went in since the last flush or reset.
    holding: bool,
    /// The input frame's samples, mono.
    mono: Vec<i16>,
    out: Vec<i16>,
}

impl FrameResampler {
    /// A converter to `to_hz`.
    pub fn new(to_hz: u32) -> Self {
        FrameResampler {
            to_hz,
            resampler: None,
            holding: false,
            mono: Vec::new(),
            out: Vec::new(),
        }
    }

    /// `audio` at the target rate, mono. Frames already there pass as they
    /// are; a change of input rate starts a fresh resampler.
    pub fn convert(&mut self, audio: &AudioFrame) -> Result<AudioFrame, AudioError> {
        if audio.sample_rate == self.to_hz && audio.channels == 1 {
            return Ok(audio.clone());
        }
        let resampler = match &mut self.resampler {
            Some(r) if r.from_hz() == audio.sample_rate => r,
            slot => slot.insert(StreamResampler::new(audio.sample_rate, self.to_hz)?),
        };
        self.mono.clear();
        pcm::le_bytes_to_mono(&audio.data, audio.channels, &mut self.mono);
        self.out.clear();
        resampler.process(&self.mono, &mut self.out);
        self.holding = true;
        Ok(AudioFrame::from_samples(
            &self.out, self.to_hz, 1, audio.pts,
        ))
    }

    /// Ends the stream (an utterance is over): what the resampler still
    /// holds (its delay line and a partial block), as one last frame at
    /// `pts`; `None` when it holds nothing.
    pub fn flush(&mut self, pts: std::time::Duration) -> Option<AudioFrame> {
        let resampler = self.resampler.as_mut().filter(|_| self.holding)?;
        self.holding = false;
        self.out.clear();
        resampler.flush(&mut self.out);
        (!self.out.is_empty()).then(|| AudioFrame::from_samples(&self.out, self.to_hz, 1, pts))
    }

    /// Forgets what the resampler holds (an interruption): none of it is
    /// heard, nor carried into the next stream.
    pub fn reset(&mut self) {
        if let Some(resampler) = &mut self.resampler {
            resampler.reset();
        }
        self.holding = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::StreamResampler;
    use std::time::Duration;

    #[test]
    fn converts_rate_and_channels_per_frame() {
        let mut to_16k = FrameResampler::new(16_000);
        let stereo_8k = AudioFrame::from_samples(&[100; 320], 8_000, 2, Duration::from_millis(40));
        let out = to_16k.convert(&stereo_8k).unwrap();
        assert_eq!((out.sample_rate, out.channels), (16_000, 1));
        assert_eq!(out.duration(), Duration::from_millis(20));
        assert_eq!(out.pts, Duration::from_millis(40));
        let same = AudioFrame::from_samples(&[7; 320], 16_000, 1, Duration::ZERO);
        assert_eq!(to_16k.convert(&same).unwrap(), same);
    }

    #[test]
    fn flush_gives_the_held_tail_and_reset_drops_it() {
        let mut to_8k = FrameResampler::new(8_000);
        assert!(to_8k.flush(Duration::ZERO).is_none(), "nothing started");
        let tone: Vec<i16> = (0..480).map(|i| ((i % 48) as i16 - 24) * 500).collect();
        let frame = AudioFrame::from_samples(&tone, 24_000, 1, Duration::ZERO);
        let out = to_8k.convert(&frame).unwrap();
        let at = Duration::from_millis(20);
        let tail = to_8k.flush(at).expect("the delay line's audio");
        assert_eq!(tail.pts, at);
        // All of the input comes out: 160 samples, plus the delay.
        let delay = StreamResampler::new(24_000, 8_000).unwrap().delay_samples();
        assert_eq!(out.num_frames() + tail.num_frames(), 160 + delay);
        assert!(to_8k.flush(at).is_none(), "flushed once");
        to_8k.convert(&frame).unwrap();
        to_8k.reset();
        assert!(to_8k.flush(at).is_none(), "reset dropped it");
        // And the next stream starts clean: its output is as a new
        // resampler's.
        let fresh = FrameResampler::new(8_000).convert(&frame).unwrap();
        assert_eq!(to_8k.convert(&frame).unwrap(), fresh);
    }
}
