//! [`StereoMixer`]: the caller and the bot on one session timeline, without
//! I/O.
//!
//! Audio is placed by its session time (`pts`), the caller's on the left,
//! the bot's on the right; where nothing was placed there is silence, so
//! both channels stay aligned with the session whatever arrives. A cut
//! (the bot interrupted at `at`) silences the bot's audio from `at` on.
//!
//! The caller's audio is stamped by the transport from its own count of
//! samples, which drifts from the session clock when a far end delivers
//! less (or more) than real time (a stalled network, a loaded machine).
//! The mixer follows the stamps, which keep a jittery stream seamless (a
//! stall then a burst catching up is placed as one piece), until they have
//! strayed more than [`MAX_DRIFT`] from when the audio arrived for
//! [`STRAY_WINDOW`] on end; then it shifts them by the least they strayed
//! meanwhile, so the caller stays where the bot heard them (a gap, or an
//! overlap, at that point).
//!
//! Samples wait in a window until the session clock is [`HOLD_BACK`] past
//! them, so that a cut or a caller frame arriving a little late (they come
//! from different tasks) still lands; then they leave as interleaved
//! stereo blocks of at most [`BLOCK`] for the file. The window is bounded:
//! caller audio stamped further ahead of the clock than [`MAX_AHEAD`] is
//! dropped (no transport does that), and the bot's is released at or after
//! its start, so memory per call does not grow with the call's length.

use std::time::Duration;

/// How far behind the session clock samples are final.
pub(crate) const HOLD_BACK: Duration = Duration::from_secs(1);
/// The most audio handed out at once.
pub(crate) const BLOCK: Duration = Duration::from_millis(500);
/// How far ahead of the clock caller audio may be stamped.
pub(crate) const MAX_AHEAD: Duration = Duration::from_secs(10);
/// How far the caller's stamps may stray from the arrival time.
pub(crate) const MAX_DRIFT: Duration = Duration::from_millis(200);
/// How long they must stray before the mixer follows the arrival times.
pub(crate) const STRAY_WINDOW: Duration = Duration::from_millis(500);

/// Which side of the recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Channel {
    /// The caller (left).
    Caller,
    /// The bot, as the caller heard it (right).
    Bot,
}

/// Two channels on the session timeline; see the module docs.
#[derive(Debug)]
pub(crate) struct StereoMixer {
    rate: u32,
    /// Sample index of the first sample still in the window: everything
    /// before it has been handed out.
    emitted: u64,
    /// The window: stereo frames from `emitted` on, interleaved (left,
    /// right), from index `start` (the handed-out part before it is
    /// dropped now and then, not on every block).
    window: Vec<i16>,
    start: usize,
    /// The latest session time seen.
    clock: Duration,
    /// Samples that arrived for time already handed out, or too far ahead.
    late: u64,
    /// Added to the caller's stamps, in microseconds (see the module docs).
    caller_offset: i128,
    /// Since when (arrival time) the stamps have strayed, one way, and the
    /// least they strayed since, in microseconds.
    straying: Option<(Duration, i128)>,
}

impl StereoMixer {
    /// An empty recording at `rate` Hz.
    pub(crate) fn new(rate: u32) -> Self {
        StereoMixer {
            rate,
            emitted: 0,
            window: Vec::new(),
            start: 0,
            clock: Duration::ZERO,
            late: 0,
            caller_offset: 0,
            straying: None,
        }
    }

    fn index(&self, t: Duration) -> u64 {
        (t.as_micros() as u64 * u64::from(self.rate) + 500_000) / 1_000_000
    }

    /// The session clock has reached `now`.
    pub(crate) fn advance(&mut self, now: Duration) {
        self.clock = self.clock.max(now);
    }

    /// Places caller `samples` stamped `pts` that arrived (whole) at
    /// session time `arrived`: at their stamp, re-anchored on the arrival
    /// time when the two have drifted apart (see the module docs).
    pub(crate) fn place_caller<I>(&mut self, pts: Duration, arrived: Duration, samples: I)
    where
        I: IntoIterator<Item = i16>,
        I::IntoIter: ExactSizeIterator,
    {
        let samples = samples.into_iter();
        let length = Duration::from_micros(samples.len() as u64 * 1_000_000 / u64::from(self.rate));
        let start = arrived.saturating_sub(length).as_micros() as i128;
        let stamp = pts.as_micros() as i128;
        // Positive: the audio arrived later than its stamp says.
        let drift = start - (stamp + self.caller_offset);
        if drift.abs() <= MAX_DRIFT.as_micros() as i128 {
            self.straying = None;
        } else {
            let (since, least) = match self.straying {
                Some((since, least)) if least.signum() == drift.signum() => (
                    since,
                    if drift > 0 {
                        least.min(drift)
                    } else {
                        least.max(drift)
                    },
                ),
                _ => (arrived, drift),
            };
            self.straying = Some((since, least));
            if arrived.saturating_sub(since) >= STRAY_WINDOW {
                self.caller_offset += least;
                self.straying = None;
            }
        }
        let placed = Duration::from_micros((stamp + self.caller_offset).max(0) as u64);
        self.advance(arrived);
        self.place(Channel::Caller, placed, samples);
    }

    /// Places `samples` (mono, at the recording's rate) on `channel` from
    /// session time `pts`, over whatever was there.
    pub(crate) fn place<I>(&mut self, channel: Channel, pts: Duration, samples: I)
    where
        I: IntoIterator<Item = i16>,
        I::IntoIter: ExactSizeIterator,
    {
        let samples = samples.into_iter();
        let count = samples.len() as u64;
        let start = self.index(pts);
        let limit = self.index(self.clock + MAX_AHEAD);
        if channel == Channel::Caller && start > limit {
            self.late += count;
            return;
        }
        let skip = self.emitted.saturating_sub(start).min(count);
        self.late += skip;
        if skip == count {
            return;
        }
        let offset = (start + skip - self.emitted) as usize;
        self.reserve_frames(offset + (count - skip) as usize);
        let side = match channel {
            Channel::Caller => 0,
            Channel::Bot => 1,
        };
        let from = self.start + 2 * offset;
        for (pair, sample) in self.window[from..]
            .chunks_exact_mut(2)
            .zip(samples.skip(skip as usize))
        {
            pair[side] = sample;
        }
    }

    /// Frames in the window.
    fn frames(&self) -> usize {
        (self.window.len() - self.start) / 2
    }

    /// Makes the window at least `frames` long (silence), first dropping
    /// the handed-out part once it is most of the buffer (so each sample
    /// is moved at most about once).
    fn reserve_frames(&mut self, frames: usize) {
        if self.start > 0 && self.start >= self.window.len() / 2 {
            self.window.drain(..self.start);
            self.start = 0;
        }
        let needed = self.start + 2 * frames;
        if self.window.len() < needed {
            self.window.resize(needed, 0);
        }
    }

    /// The bot was interrupted at `at`: its audio from then on was not
    /// heard.
    pub(crate) fn cut(&mut self, at: Duration) {
        let from = self.index(at);
        let offset = from.saturating_sub(self.emitted) as usize;
        if offset < self.frames() {
            let first = self.start + 2 * offset;
            self.window[first..]
                .chunks_exact_mut(2)
                .for_each(|pair| pair[1] = 0);
        }
        self.advance(at);
    }

    /// The next block of final samples, interleaved (left, right), if any.
    /// Call until `None` after each change.
    pub(crate) fn next_block(&mut self) -> Option<&[i16]> {
        let upto = self.index(self.clock.saturating_sub(HOLD_BACK));
        self.take_until(upto)
    }

    /// The session ended at `end`: the rest, up to `end` or the last
    /// sample placed, whichever is later, block by block. Call until
    /// `None`.
    pub(crate) fn final_block(&mut self) -> Option<&[i16]> {
        let upto = self
            .index(self.clock)
            .max(self.emitted + self.frames() as u64);
        self.take_until(upto)
    }

    fn take_until(&mut self, upto: u64) -> Option<&[i16]> {
        let block = self.index(BLOCK).max(1);
        let n = upto.saturating_sub(self.emitted).min(block) as usize;
        if n == 0 {
            return None;
        }
        // Time that passed with nothing placed is silence.
        self.reserve_frames(n);
        let from = self.start;
        self.start += 2 * n;
        self.emitted += n as u64;
        Some(&self.window[from..self.start])
    }

    /// Samples handed out so far, per channel.
    pub(crate) fn emitted(&self) -> u64 {
        self.emitted
    }

    /// Samples dropped because they came for time already handed out (or
    /// implausibly far ahead).
    pub(crate) fn late(&self) -> u64 {
        self.late
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Everything handed out, as (left, right).
    fn drain(mixer: &mut StereoMixer, finish: bool) -> (Vec<i16>, Vec<i16>) {
        let (mut left, mut right) = (Vec::new(), Vec::new());
        loop {
            let block = if finish {
                mixer.final_block()
            } else {
                mixer.next_block()
            };
            let Some(block) = block else { break };
            for pair in block.chunks(2) {
                left.push(pair[0]);
                right.push(pair[1]);
            }
        }
        (left, right)
    }

    #[test]
    fn audio_lands_at_its_session_time_with_silence_between() {
        // 1 kHz: one sample per millisecond.
        let mut mixer = StereoMixer::new(1_000);
        mixer.place(Channel::Caller, ms(0), [1; 20]);
        mixer.place(Channel::Bot, ms(30), [2; 20]);
        mixer.advance(ms(60));
        let (left, right) = drain(&mut mixer, true);
        assert_eq!(left.len(), 60);
        assert_eq!(right.len(), 60);
        assert!(left[..20].iter().all(|&s| s == 1));
        assert!(left[20..].iter().all(|&s| s == 0));
        assert!(right[..30].iter().all(|&s| s == 0));
        assert!(right[30..50].iter().all(|&s| s == 2));
        assert!(right[50..].iter().all(|&s| s == 0));
    }

    #[test]
    fn a_cut_silences_the_bot_from_its_time_on() {
        let mut mixer = StereoMixer::new(1_000);
        mixer.place(Channel::Bot, ms(0), [5; 100]);
        mixer.place(Channel::Caller, ms(0), [7; 100]);
        mixer.cut(ms(40));
        let (left, right) = drain(&mut mixer, true);
        assert_eq!(right.iter().filter(|&&s| s == 5).count(), 40);
        assert!(right[40..].iter().all(|&s| s == 0));
        assert!(left.iter().all(|&s| s == 7), "the caller is never cut");
    }

    #[test]
    fn samples_leave_only_once_the_clock_is_past_the_hold_back() {
        let mut mixer = StereoMixer::new(1_000);
        mixer.place(Channel::Caller, ms(0), [1; 20]);
        mixer.advance(ms(20));
        assert_eq!(drain(&mut mixer, false).0.len(), 0);
        mixer.advance(HOLD_BACK + ms(20));
        assert_eq!(drain(&mut mixer, false).0.len(), 20);
        // Audio for time already handed out is dropped and counted.
        mixer.place(Channel::Caller, ms(10), [1; 20]);
        assert_eq!(mixer.late(), 10);
        assert_eq!(mixer.emitted(), 20);
    }

    /// Caller frames `from..to` (20 ms each, 1 kHz), each arriving `late`
    /// after it was due.
    fn caller_frames(mixer: &mut StereoMixer, from: u64, to: u64, late: impl Fn(u64) -> u64) {
        for n in from..to {
            mixer.place_caller(ms(20 * n), ms(20 * n + 20 + late(n)), [1; 20]);
        }
    }

    #[test]
    fn a_far_end_that_falls_behind_for_good_is_followed() {
        let mut mixer = StereoMixer::new(1_000);
        // In time, then 500 ms behind from frame 10 on, for good.
        caller_frames(&mut mixer, 0, 60, |n| if n < 10 { 0 } else { 500 });
        let (left, _) = drain(&mut mixer, true);
        // Placed by stamp for the first 500 ms of straying, then shifted.
        assert!(left[..700].iter().all(|&s| s == 1));
        assert!(left[700..1_200].iter().all(|&s| s == 0), "a gap");
        assert!(left[1_200..1_700].iter().all(|&s| s == 1));
    }

    #[test]
    fn a_stall_then_a_burst_is_placed_as_one_piece() {
        let mut mixer = StereoMixer::new(1_000);
        // Frames 10..25 arrive together, 300 ms late at worst.
        caller_frames(&mut mixer, 0, 50, |n| match n {
            10..25 => (25 - n) * 20,
            _ => 0,
        });
        let (left, _) = drain(&mut mixer, true);
        assert!(left[..1_000].iter().all(|&s| s == 1), "no gap, no shift");
    }

    #[test]
    fn the_window_stays_bounded_however_long_the_session() {
        let mut mixer = StereoMixer::new(16_000);
        let frame = [3_i16; 320];
        let mut written = 0;
        for n in 0..50 * 600 {
            let pts = ms(20 * n);
            mixer.place(Channel::Caller, pts, frame);
            mixer.place(Channel::Bot, pts, frame);
            mixer.advance(pts + ms(20));
            written += drain(&mut mixer, false).0.len();
            assert!(mixer.frames() <= 16_000 + 320, "{}", mixer.frames());
            assert!(
                mixer.window.len() <= 4 * (16_000 + 320),
                "{}",
                mixer.window.len()
            );
        }
        written += drain(&mut mixer, true).0.len();
        assert_eq!(written, 16_000 * 600);
        // Audio stamped far ahead of the clock is refused, not buffered.
        mixer.place(Channel::Caller, ms(3_600_000), frame);
        assert_eq!(mixer.late(), 320);
    }
}
