//! [`RecentAudio`]: the last few seconds of inbound audio, for processors
//! that reach back in time (a VAD decides that speech started a little
//! after it did).

use std::collections::VecDeque;
use std::time::Duration;

use super::audio::AudioFrame;

/// Recent audio frames, in order, trimmed to a window. Frames are
/// `Bytes`-backed, so keeping them copies no audio.
#[derive(Debug, Default, Clone)]
pub struct RecentAudio {
    frames: VecDeque<AudioFrame>,
}

impl RecentAudio {
    /// Nothing kept yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps `audio`, forgetting frames that began more than `window`
    /// before its end.
    pub fn keep(&mut self, audio: &AudioFrame, window: Duration) {
        self.frames.push_back(audio.clone());
        let newest_end = audio.pts + audio.duration();
        while self
            .frames
            .front()
            .is_some_and(|f| f.pts + window < newest_end)
        {
            self.frames.pop_front();
        }
    }

    /// The kept frames overlapping `start..end`, in order; everything kept
    /// is forgotten.
    pub fn take_between(&mut self, start: Duration, end: Duration) -> Vec<AudioFrame> {
        self.frames
            .drain(..)
            .filter(|f| f.pts + f.duration() > start && f.pts < end)
            .collect()
    }

    /// The end of the newest kept frame.
    pub fn kept_until(&self) -> Option<Duration> {
        self.frames.back().map(|f| f.pts + f.duration())
    }

    /// The kept frames overlapping `start..end`, in order, still kept.
    pub fn between(&self, start: Duration, end: Duration) -> Vec<AudioFrame> {
        self.frames
            .iter()
            .filter(|f| f.pts + f.duration() > start && f.pts < end)
            .cloned()
            .collect()
    }

    /// Every kept frame, in order; everything kept is forgotten.
    pub fn take_all(&mut self) -> Vec<AudioFrame> {
        self.frames.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ms: u64) -> AudioFrame {
        AudioFrame::from_samples(&[0; 320], 16_000, 1, Duration::from_millis(ms))
    }

    #[test]
    fn keeps_a_window_and_cuts_a_span() {
        let mut recent = RecentAudio::new();
        for ms in (0..1000).step_by(20) {
            recent.keep(&frame(ms), Duration::from_millis(500));
        }
        let all = recent.clone().take_all();
        assert_eq!(all.first().unwrap().pts, Duration::from_millis(500));
        let span = recent.take_between(Duration::from_millis(610), Duration::from_millis(700));
        let starts: Vec<u64> = span.iter().map(|f| f.pts.as_millis() as u64).collect();
        assert_eq!(starts, [600, 620, 640, 660, 680]);
        assert!(recent.take_all().is_empty());
    }
}
