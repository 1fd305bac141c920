//! Pipecat 1.14's volume, so that `min_volume` means what it means in
//! Pipecat.
//!
//! Pipecat 1.14 (`pipecat.audio.volume.AudioVolumeTracker`) keeps the last
//! 400 ms of the stream (a BS.1770 gating block, `ceil(0.4 * rate)`
//! samples) and measures that window after every VAD chunk. A per-chunk measure, as Pipecat had before,
//! dips in the closure of every stop consonant ("p", "t", "k"), which
//! restarts the start count; the window bridges it. The measure
//! (`calculate_audio_volume`) is the `loudness` package's integrated
//! loudness (libloudness) of the window, samples as `sample / 32768`:
//!
//! 1. K-weighting: libloudness's two stages (libebur128's high shelf,
//!    1681.97 Hz, +4 dB, and high pass, 38.14 Hz), designed by the bilinear
//!    transform for the rate, run from a zero state over the window;
//! 2. mean square over the window, loudness `-0.691 + 10 log10(z)`;
//! 3. gating with one block: below the absolute gate (-70 LUFS) nothing is
//!    left (-∞); otherwise libloudness's histogram mode places the block in
//!    a 0.1 LU bin above -70 LUFS and reports **the bin's centre**, so the
//!    loudness moves in steps of 0.1 LU;
//! 4. `(loudness + 110) / 100`, clamped to `[0, 1]`.
//!
//! [`SmoothedVolume`] adds the VAD analyzer's exponential smoothing (factor
//! 0.2, from 0).
//!
//! # The stream's first 400 ms (where voxpipe differs)
//!
//! Pipecat's window starts empty and its volume reads 0 until the window is
//! full, so speech in a stream's first 400 ms cannot start a turn, and a
//! caller who speaks as the call connects loses the first word (the start
//! is decided on a later word, and the word before is too far back to be
//! reached). voxpipe's window starts full of silence: the stream's first
//! chunks are measured as if silence came before them, as speech after
//! silence is anywhere else in the stream. Once 400 ms are in the two are
//! the same, and they are the same throughout for a stream that opens with
//! a quiet (below the -70 LUFS gate) 400 ms, as the reference recordings do.
//!
//! # Cost
//!
//! Filtering the whole window from rest after every 32 ms chunk would run
//! the filter over 12.5 times the audio. The filter is linear, and what it
//! remembers of the audio before the window decays (its slowest pole,
//! the 38 Hz high pass's double pole, by about 26 nepers in
//! [`SETTLE_SECS`]), so only the window's head is filtered from rest; the
//! rest of the window takes the energies of the stream's filter, run once
//! over each chunk and kept per chunk. The difference is far below
//! libloudness's own 0.1 LU steps (the tests compare with the `loudness`
//! package on real speech).
//!
//! The filter itself ([`k_weighting`](super::k_weighting)) runs four
//! stretches of the samples side by side, as vectors.

use std::collections::VecDeque;

use super::k_weighting::{KState, KWeighting};

/// The rolling window, seconds: a BS.1770 gating block.
pub const VOLUME_WINDOW_SECS: f64 = 0.4;
/// How much of the window's start is filtered from rest: after this long
/// the filter's memory of earlier audio is below `1e-8` of it.
const SETTLE_SECS: f64 = 0.1;
/// Loudness mapped to volume 0.
const QUIETEST_LUFS: f64 = -110.0;
/// Loudness mapped to volume 1.
const LOUDEST_LUFS: f64 = -10.0;
/// BS.1770 absolute gate.
const ABSOLUTE_GATE_LUFS: f64 = -70.0;
/// libloudness's histogram bins.
const BIN_LU: f64 = 0.1;
const BINS: f64 = 1000.0;
/// Pipecat's smoothing factor for the volume.
const SMOOTHING: f64 = 0.2;
/// `i16` samples as Pipecat's floats: `sample / 32768`, so energies scale
/// by `2^-30` (exactly: a power of two).
const SAMPLE_ENERGY_SCALE: f64 = 1.0 / (1u64 << 30) as f64;

/// libloudness's loudness of one gating block of mean square `mean_square`
/// (of `i16` samples), mapped to Pipecat's volume.
fn block_volume(mean_square: f64) -> f64 {
    let loudness = -0.691 + 10.0 * (mean_square * SAMPLE_ENERGY_SCALE).log10();
    // Digital silence is -inf (or NaN for a rounding below zero), below the
    // gate like any quiet block.
    if loudness.is_nan() || loudness < ABSOLUTE_GATE_LUFS {
        return 0.0;
    }
    let bin = ((loudness - ABSOLUTE_GATE_LUFS) / BIN_LU)
        .floor()
        .min(BINS - 1.0);
    let centre = ABSOLUTE_GATE_LUFS + bin * BIN_LU + BIN_LU / 2.0;
    volume_of(centre)
}

/// Pipecat's `normalize_value(loudness, -110, -10)`.
fn volume_of(loudness: f64) -> f64 {
    ((loudness - QUIETEST_LUFS) / (LOUDEST_LUFS - QUIETEST_LUFS)).clamp(0.0, 1.0)
}

/// Pipecat 1.14's `AudioVolumeTracker` over a stream of chunks, all of
/// the size it was made for (another size is measured correctly, but the
/// whole window is filtered again). See the module docs.
#[derive(Debug, Clone)]
pub struct RollingVolume {
    filter: KWeighting,
    /// `ceil(0.4 * rate)` samples.
    window: usize,
    /// The window's first samples, filtered from rest for each measure.
    head: usize,
    /// The latest `window` samples (fewer at first).
    recent: Recent,
    /// The stream's filter, run once over every chunk.
    stream: KState,
    /// `Σ y²` of the stream's filter over each of the latest chunks that lie
    /// wholly after the head, and their lengths.
    tail: VecDeque<(f64, usize)>,
    tail_chunks: usize,
}

impl RollingVolume {
    /// A tracker for chunks of `chunk` samples at `sample_rate`.
    pub fn new(sample_rate: u32, chunk: usize) -> Self {
        let rate = f64::from(sample_rate.max(1));
        let chunk = chunk.max(1);
        let window = (VOLUME_WINDOW_SECS * rate).ceil() as usize;
        let settle = ((SETTLE_SECS * rate).ceil() as usize).min(window);
        // The head ends where a chunk does, so the rest is whole chunks.
        let mut head = window % chunk;
        while head < settle {
            head += chunk;
        }
        let head = head.min(window);
        RollingVolume {
            filter: KWeighting::new(rate),
            window,
            head,
            recent: Recent::new(window),
            stream: KState::default(),
            tail: VecDeque::with_capacity((window - head) / chunk + 1),
            tail_chunks: (window - head) / chunk,
        }
    }

    /// Adds the next chunk; returns `(chunk, window)`: the loudness of the
    /// chunk alone (unquantised; for placing onsets) and Pipecat's volume of
    /// the window (the stream as if silence came before it).
    pub fn next(&mut self, chunk: &[i16]) -> (f64, f64) {
        let energy = self.filter.energy(&mut self.stream, chunk);
        let chunk_volume = if chunk.is_empty() {
            0.0
        } else {
            let mean = energy * SAMPLE_ENERGY_SCALE / chunk.len() as f64;
            volume_of(-0.691 + 10.0 * mean.log10())
        };
        if self.tail_chunks > 0 {
            if self.tail.len() == self.tail_chunks {
                self.tail.pop_front();
            }
            self.tail.push_back((energy, chunk.len()));
        }
        self.recent.push(chunk);
        let recent = self.recent.samples();
        if recent.len() < self.window {
            // The window starts full of silence (see the module docs):
            // silence before the stream adds nothing to the energy, nor to
            // the filter's state.
            let energy = self.filter.energy(&mut KState::default(), recent);
            return (chunk_volume, block_volume(energy / self.window as f64));
        }
        // The tail lines up with the window's end unless a chunk of another
        // size came lately; then the whole window is filtered from rest.
        let tail_len: usize = self.tail.iter().map(|(_, len)| len).sum();
        let (head, tail_energy) = if tail_len == self.window - self.head {
            (self.head, self.tail.iter().map(|(energy, _)| energy).sum())
        } else {
            (self.window, 0.0)
        };
        let head_energy = self.filter.energy(&mut KState::default(), &recent[..head]);
        (
            chunk_volume,
            block_volume((head_energy + tail_energy) / self.window as f64),
        )
    }

    /// Forgets the stream.
    pub fn reset(&mut self) {
        self.recent.clear();
        self.tail.clear();
        self.stream = KState::default();
    }
}

/// The latest samples, at most `len` of them, in one slice: chunks are
/// appended and the start moves on; the kept samples move back to the
/// front only when the spare room runs out (once every few windows).
#[derive(Debug, Clone)]
struct Recent {
    buffer: Vec<i16>,
    start: usize,
    len: usize,
}

impl Recent {
    /// Room for this many windows before the samples move back.
    const SPARE_WINDOWS: usize = 4;

    fn new(len: usize) -> Self {
        Recent {
            buffer: Vec::with_capacity(Self::SPARE_WINDOWS * len),
            start: 0,
            len,
        }
    }

    fn push(&mut self, chunk: &[i16]) {
        if self.buffer.len() + chunk.len() > self.buffer.capacity() {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        self.buffer.extend_from_slice(chunk);
        self.start = self.start.max(self.buffer.len().saturating_sub(self.len));
    }

    fn samples(&self) -> &[i16] {
        &self.buffer[self.start..]
    }

    fn clear(&mut self) {
        self.buffer.clear();
        self.start = 0;
    }
}

/// Pipecat's smoothed volume: `prev + 0.2 (volume - prev)`, from 0.
#[derive(Debug, Clone)]
pub struct SmoothedVolume {
    tracker: RollingVolume,
    smoothed: f64,
}

impl SmoothedVolume {
    /// Smoothed volume of chunks of `chunk` samples at `sample_rate`,
    /// starting from 0.
    pub fn new(sample_rate: u32, chunk: usize) -> Self {
        SmoothedVolume {
            tracker: RollingVolume::new(sample_rate, chunk),
            smoothed: 0.0,
        }
    }

    /// Measures the next chunk; returns `(chunk, smoothed)`: the chunk's own
    /// loudness and the smoothed volume of the window.
    pub fn next(&mut self, chunk: &[i16]) -> (f64, f64) {
        let (chunk_volume, window) = self.tracker.next(chunk);
        self.smoothed += SMOOTHING * (window - self.smoothed);
        (chunk_volume, self.smoothed)
    }

    /// Back to 0, as for a new stream.
    pub fn reset(&mut self) {
        self.tracker.reset();
        self.smoothed = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use std::f64::consts::PI;

    use super::*;

    fn sine(freq: f64, amp: f64, len: usize, rate: u32) -> Vec<i16> {
        (0..len)
            .map(|i| (amp * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()) as i16)
            .collect()
    }

    /// Pipecat's `calculate_audio_volume` of a whole window, from rest.
    fn volume_from_rest(samples: &[i16], rate: u32) -> f64 {
        let filter = KWeighting::new(f64::from(rate));
        let energy = filter.energy(&mut KState::default(), samples);
        block_volume(energy / samples.len() as f64)
    }

    #[test]
    fn loudness_comes_in_tenth_lu_steps_on_pipecats_scale() {
        // A full-scale 1 kHz sine: about -3 LUFS (+0.7 dB of K-weighting
        // at 1 kHz on -3.7), past the top of the range.
        assert_eq!(
            volume_from_rest(&sine(1000.0, 32_767.0, 6400, 16_000), 16_000),
            1.0
        );
        // 1% of full scale: the `loudness` package says -42.95 LUFS.
        let soft = volume_from_rest(&sine(1000.0, 327.68, 6400, 16_000), 16_000);
        assert!((soft - 0.6705).abs() < 1e-9, "{soft}");
        assert_eq!(volume_from_rest(&[0; 6400], 16_000), 0.0);
    }

    #[test]
    fn the_window_starts_full_of_silence_and_matches_filtering_from_rest() {
        for (rate, chunk) in [(16_000, 512), (8_000, 256), (16_000, 320)] {
            let mut tracker = RollingVolume::new(rate, chunk);
            // A loud tone, then silence, then a soft tone: the head's
            // filtering from rest matters right after the loud part.
            let mut signal = sine(440.0, 20_000.0, rate as usize / 2, rate);
            signal.extend(vec![0; rate as usize / 5]);
            signal.extend(sine(700.0, 300.0, rate as usize, rate));
            let window = (0.4 * f64::from(rate)).ceil() as usize;
            for (i, c) in signal.chunks_exact(chunk).enumerate() {
                let (_, volume) = tracker.next(c);
                let end = (i + 1) * chunk;
                // Before the window is full: as if silence came first.
                let mut window_audio = vec![0; window.saturating_sub(end)];
                window_audio.extend(&signal[end.saturating_sub(window)..end]);
                let expected = volume_from_rest(&window_audio, rate);
                assert_eq!(volume, expected, "{rate} Hz, chunk {i}");
            }
        }
    }

    #[test]
    fn smoothing_follows_pipecat() {
        let mut volume = SmoothedVolume::new(16_000, 512);
        let mut tracker = RollingVolume::new(16_000, 512);
        let tone = sine(1000.0, 32_000.0, 512, 16_000);
        let silence = [0; 512];
        let mut expected = 0.0;
        for i in 0..30 {
            let chunk = if i < 13 { &silence[..] } else { &tone[..] };
            let (_, window) = tracker.next(chunk);
            expected += 0.2 * (window - expected);
            assert_eq!(volume.next(chunk).1, expected, "chunk {i}");
        }
        // Silence reads 0; 13 chunks of the tone fill the window.
        assert_eq!(tracker.next(&tone), (1.0, 1.0));
        volume.reset();
        assert_eq!(volume.next(&[0; 512]), (0.0, 0.0));
    }

    #[test]
    fn speech_at_the_streams_start_is_measured_as_after_silence() {
        // Pipecat reads 0 here; voxpipe measures the tone in a window of
        // silence, loud enough for the VAD's `min_volume`.
        let tone = sine(1000.0, 8_000.0, 512, 16_000);
        let (_, window) = RollingVolume::new(16_000, 512).next(&tone);
        let mut after_silence = vec![0; 6400 - 512];
        after_silence.extend(&tone);
        assert_eq!(window, volume_from_rest(&after_silence, 16_000));
        assert!(window > 0.6, "{window}");
    }
}
