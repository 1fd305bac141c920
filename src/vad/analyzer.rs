//! [`VadAnalyzer`]: Pipecat 1.14's VAD state machine over any
//! [`VoiceModel`], timed by sample counts.
//!
//! # Decisions (Pipecat 1.14's `VADAnalyzer`, to the letter)
//!
//! Audio is cut into the model's chunks. A chunk is *speaking* when the
//! model's confidence is at least `confidence` **and** the smoothed volume
//! of the last 400 ms (see [`volume`](super::volume)) is at least
//! `min_volume`. For a model that asks for it (Silero), the model's state is
//! reset in stretches of clear non-speech as Pipecat 1.14 does (see
//! `model_reset`). Four states:
//!
//! | state | speaking chunk | other chunk |
//! |---|---|---|
//! | quiet | → starting (count 1) | stay |
//! | starting | count + 1 | → quiet |
//! | speaking | stay | → stopping (count 1) |
//! | stopping | → speaking | count + 1 |
//!
//! After each chunk, starting becomes speaking once its count reaches
//! `round(start_secs / chunk duration)` (Python's rounding, half to even),
//! and stopping becomes quiet once its count reaches
//! `round(stop_secs / chunk duration)`. Entering speaking from starting is
//! [`VadEvent::Started`]; entering quiet from stopping is
//! [`VadEvent::Stopped`]; the other transitions are not events. (Pipecat
//! checks after each *buffer* of audio rather than each chunk; with 20 ms
//! frames and Silero's 32 ms chunks a buffer never completes two chunks, so
//! the two agree, and per chunk stays exact for any frame size. Earshot,
//! which Pipecat does not have, takes 16 ms chunks: every fourth 20 ms
//! frame completes two, and a count checked after each can decide where a
//! check per buffer would not.)
//!
//! # Boundaries (voxpipe's addition)
//!
//! The decisions come late by design: `start_secs` of speech before a
//! start, `stop_secs` of quiet before a stop, and the smoothed volume needs
//! a few chunks to climb past `min_volume`. The events also say where the
//! speech itself began and ended, as sample positions:
//!
//! - the **start** is the earliest chunk before the decision's first
//!   speaking chunk that was either scored as voice by the model or loud by
//!   the loudness of that chunk alone (the onset of a word is often loud before the
//!   model is sure, and the window's volume lags it), reached by walking
//!   back over such chunks and over gaps of at most
//!   [`MAX_ONSET_GAP_SECS`] (the closure of a stop consonant: a "p" or a
//!   "k" can break a run of speaking chunks before `start_secs` is reached,
//!   and Pipecat then starts counting again), and at most
//!   [`MAX_ONSET_LOOKBACK_SECS`] back;
//! - the **end** is the end of the last speaking chunk.
//!
//! Nothing here reads a clock: positions count samples at the model's rate
//! from the start of the stream.

use std::collections::VecDeque;

use super::VoiceModel;
use super::model_reset::ModelResets;
use super::onsets::RecentChunks;
#[cfg(doc)]
use super::onsets::{MAX_ONSET_GAP_SECS, MAX_ONSET_LOOKBACK_SECS};
use super::quiet_chunks::QuietChunks;
use super::volume::SmoothedVolume;
use crate::frame::VadParams;

/// Pipecat's `VADState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadState {
    /// No speech.
    Quiet,
    /// Speech that has not lasted `start_secs` yet.
    Starting,
    /// The user is speaking.
    Speaking,
    /// Quiet that has not lasted `stop_secs` yet.
    Stopping,
}

/// A decision of the analyzer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    /// The user started speaking; speech began at sample `start`.
    Started {
        /// Position of the first sample of speech.
        start: u64,
    },
    /// The user has paused for the analyzer's pause time (see
    /// [`VadAnalyzer::with_pauses`]) but not yet for `stop_secs`; speech
    /// paused at sample `end`. At most once per pause: speech that resumes
    /// and pauses again gives another, with a later `end`.
    Paused {
        /// Position just past the last sample of speech.
        end: u64,
    },
    /// The user stopped speaking; speech ended at sample `end`.
    Stopped {
        /// Position just past the last sample of speech.
        end: u64,
    },
}

/// The user's current speech, between `Started` and `Stopped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Speech {
    /// Where it began.
    pub start: u64,
    /// The end of its latest speaking chunk.
    pub voiced_until: u64,
}

/// Pipecat's VAD over a [`VoiceModel`]. See the module docs.
pub struct VadAnalyzer {
    model: Box<dyn VoiceModel>,
    params: VadParams,
    chunk: usize,
    start_chunks: u32,
    stop_chunks: u32,
    /// Quiet before [`VadEvent::Paused`], when pauses are reported.
    pause_secs: Option<f64>,
    pause_chunks: Option<u32>,
    volume: SmoothedVolume,
    /// Pipecat 1.14's resets of the model's state, for models that want
    /// them.
    resets: Option<ModelResets>,
    /// Quiet chunks the model has not scored yet (see `quiet_chunks`).
    quiet: QuietChunks,
    /// Where kept quiet chunks are scored from (reused).
    scoring: Vec<i16>,
    scoring_quiet_before: Vec<bool>,
    /// Runs of the model.
    model_runs: u64,
    /// Whether quiet chunks wait to be scored (see `quiet_chunks`).
    defer_quiet: bool,
    pending: Vec<i16>,
    /// Samples analysed so far (whole chunks).
    position: u64,
    state: VadState,
    starting_count: u32,
    stopping_count: u32,
    /// Where the speech being confirmed began (while starting).
    onset: u64,
    speech: Option<Speech>,
    last_speaking_end: u64,
    recent: RecentChunks,
    events: VecDeque<VadEvent>,
}

impl std::fmt::Debug for VadAnalyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VadAnalyzer")
            .field("params", &self.params)
            .field("state", &self.state)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

/// Holds the analyzer's place while [`VadAnalyzer::set_sample_rate`]
/// rebuilds it around its model.
struct NoModel;

impl VoiceModel for NoModel {
    fn sample_rate(&self) -> u32 {
        16_000
    }
    fn chunk_samples(&self) -> usize {
        1
    }
    fn voice_confidence(&mut self, _chunk: &[i16]) -> f32 {
        0.0
    }
    fn reset(&mut self) {}
}

/// Python's `round(secs / chunk_secs)`, as Pipecat computes chunk counts.
fn chunks_for(secs: f64, chunk: usize, rate: u32) -> u32 {
    let chunk_secs = chunk as f64 / f64::from(rate.max(1));
    (secs / chunk_secs)
        .round_ties_even()
        .clamp(0.0, f64::from(u32::MAX)) as u32
}

impl VadAnalyzer {
    /// An analyzer running `model` with `params`.
    pub fn new(model: Box<dyn VoiceModel>, params: VadParams) -> Self {
        let chunk = model.chunk_samples().max(1);
        let rate = model.sample_rate();
        VadAnalyzer {
            start_chunks: chunks_for(params.start_secs, chunk, rate),
            stop_chunks: chunks_for(params.stop_secs, chunk, rate),
            pause_secs: None,
            pause_chunks: None,
            volume: SmoothedVolume::new(rate, chunk),
            resets: model
                .resets_in_clear_silence()
                .then(|| ModelResets::new(rate, chunk)),
            quiet: QuietChunks::new(rate, chunk),
            scoring: Vec::new(),
            scoring_quiet_before: Vec::new(),
            model_runs: 0,
            defer_quiet: true,
            pending: Vec::with_capacity(chunk),
            position: 0,
            state: VadState::Quiet,
            starting_count: 0,
            stopping_count: 0,
            onset: 0,
            speech: None,
            last_speaking_end: 0,
            recent: RecentChunks::new(rate, chunk),
            events: VecDeque::new(),
            model,
            params,
            chunk,
        }
    }

    /// Switches the model to audio at `rate` (Silero runs at 8 and 16 kHz)
    /// and starts a new stream at position 0, quiet, as [`reset`] does.
    /// False, and nothing changed, when the model cannot run at `rate`.
    ///
    /// [`reset`]: VadAnalyzer::reset
    pub fn set_sample_rate(&mut self, rate: u32) -> bool {
        if rate == self.model.sample_rate() || !self.model.set_sample_rate(rate) {
            return rate == self.model.sample_rate();
        }
        let model = std::mem::replace(&mut self.model, Box::new(NoModel));
        let (defer_quiet, pause_secs) = (self.defer_quiet, self.pause_secs);
        *self = VadAnalyzer::new(model, self.params);
        self.defer_quiet = defer_quiet;
        if let Some(secs) = pause_secs {
            self.set_pauses(secs);
        }
        self.model.reset();
        true
    }

    /// The same analyzer, also reporting [`VadEvent::Paused`] once the user
    /// has been quiet for `secs` (at least one chunk) in a pause shorter
    /// than `stop_secs`: the moment a segmented STT may transcribe the
    /// speech so far, before the stop confirms it. A pause time not shorter
    /// than `stop_secs` reports nothing the stop does not.
    pub fn with_pauses(mut self, secs: f64) -> Self {
        self.set_pauses(secs);
        self
    }

    fn set_pauses(&mut self, secs: f64) {
        let chunks = chunks_for(secs, self.chunk, self.model.sample_rate()).max(1);
        self.pause_secs = Some(secs);
        self.pause_chunks = (chunks < self.stop_chunks).then_some(chunks);
    }

    /// The same analyzer, scoring every chunk as it comes instead of
    /// deferring quiet ones (see `quiet_chunks`): the reference the
    /// deferral is measured against, in tests and benchmarks.
    pub fn scoring_every_chunk(mut self) -> Self {
        self.defer_quiet = false;
        self
    }

    /// The model's sample rate: the rate `push_audio` expects.
    pub fn sample_rate(&self) -> u32 {
        self.model.sample_rate()
    }

    /// The parameters.
    pub fn params(&self) -> &VadParams {
        &self.params
    }

    /// The current state.
    pub fn state(&self) -> VadState {
        self.state
    }

    /// The user's current speech, from `Started` until `Stopped`.
    pub fn speech(&self) -> Option<Speech> {
        self.speech
    }

    /// Samples analysed so far (a partial chunk waits for the rest).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// How many times the model has run: fewer than the chunks analysed
    /// when quiet stretches were decided by their volume alone.
    pub fn model_runs(&self) -> u64 {
        self.model_runs
    }

    /// Analyses the next samples of the stream, at the model's rate, in any
    /// amounts.
    pub fn push_audio(&mut self, mut samples: &[i16]) {
        while !samples.is_empty() {
            if self.pending.is_empty() && samples.len() >= self.chunk {
                let (chunk, rest) = samples.split_at(self.chunk);
                self.analyze(chunk);
                samples = rest;
                continue;
            }
            let take = (self.chunk - self.pending.len()).min(samples.len());
            self.pending.extend_from_slice(&samples[..take]);
            samples = &samples[take..];
            if self.pending.len() == self.chunk {
                let chunk = std::mem::take(&mut self.pending);
                self.analyze(&chunk);
                self.pending = chunk;
                self.pending.clear();
            }
        }
    }

    /// The next decision, if any. Call until `None` after each push.
    pub fn poll_event(&mut self) -> Option<VadEvent> {
        self.events.pop_front()
    }

    /// Forgets the stream: a new one starts at position 0, quiet.
    pub fn reset(&mut self) {
        self.model.reset();
        self.volume.reset();
        if let Some(resets) = &mut self.resets {
            *resets = ModelResets::new(self.model.sample_rate(), self.chunk);
        }
        self.quiet.clear();
        self.pending.clear();
        self.position = 0;
        self.state = VadState::Quiet;
        self.starting_count = 0;
        self.stopping_count = 0;
        self.onset = 0;
        self.speech = None;
        self.last_speaking_end = 0;
        self.recent.clear();
        self.events.clear();
    }

    fn analyze(&mut self, chunk: &[i16]) {
        let start = self.position;
        let end = start + self.chunk as u64;
        let (chunk_volume, volume) = self.volume.next(chunk);
        let quiet_before = self.state == VadState::Quiet;
        let confidence = if self.defer_quiet && volume < self.params.min_volume {
            // Not speaking whatever the model says: the model scores it
            // later, if a chunk comes that it must decide.
            if let Some(quiet_before) = self.quiet.push(start, chunk, quiet_before) {
                // The oldest kept chunk will never be scored: for the
                // resets, it was clear non-speech.
                self.after_score(0.0, quiet_before);
            }
            0.0
        } else {
            self.score_quiet_chunks();
            let score = self.score(chunk);
            self.after_score(score, quiet_before);
            f64::from(score)
        };
        let voiced = confidence >= self.params.confidence;
        let speaking = voiced && volume >= self.params.min_volume;
        self.recent
            .remember(start, voiced || chunk_volume >= self.params.min_volume);

        if speaking {
            match self.state {
                VadState::Quiet => {
                    self.state = VadState::Starting;
                    self.starting_count = 1;
                    self.onset = self.recent.onset_before(start);
                }
                VadState::Starting => self.starting_count += 1,
                VadState::Stopping => {
                    self.state = VadState::Speaking;
                    self.stopping_count = 0;
                }
                VadState::Speaking => {}
            }
            self.last_speaking_end = end;
            if let Some(speech) = &mut self.speech {
                speech.voiced_until = end;
            }
        } else {
            match self.state {
                VadState::Starting => {
                    self.state = VadState::Quiet;
                    self.starting_count = 0;
                }
                VadState::Speaking => {
                    self.state = VadState::Stopping;
                    self.stopping_count = 1;
                }
                VadState::Stopping => self.stopping_count += 1,
                VadState::Quiet => {}
            }
        }

        if self.state == VadState::Starting && self.starting_count >= self.start_chunks {
            self.state = VadState::Speaking;
            self.starting_count = 0;
            self.speech = Some(Speech {
                start: self.onset,
                voiced_until: self.last_speaking_end,
            });
            self.events
                .push_back(VadEvent::Started { start: self.onset });
        }
        if self.state == VadState::Stopping && Some(self.stopping_count) == self.pause_chunks {
            self.events.push_back(VadEvent::Paused {
                end: self.last_speaking_end,
            });
        }
        if self.state == VadState::Stopping && self.stopping_count >= self.stop_chunks {
            self.state = VadState::Quiet;
            self.stopping_count = 0;
            self.speech = None;
            self.events.push_back(VadEvent::Stopped {
                end: self.last_speaking_end,
            });
        }
        self.position = end;
    }

    fn score(&mut self, chunk: &[i16]) -> f32 {
        self.model_runs += 1;
        self.model.voice_confidence(chunk)
    }

    /// Pipecat 1.14's reset of the model's state, after a chunk scored
    /// `score` with the analyzer `quiet` before it.
    fn after_score(&mut self, score: f32, quiet: bool) {
        if let Some(resets) = &mut self.resets
            && resets.after_chunk(score, quiet)
        {
            self.model.reset();
        }
    }

    /// Scores the kept quiet chunks, in order, as if they had been scored
    /// as they came (see `quiet_chunks`), and marks those the model heard
    /// as voice for placing onsets.
    fn score_quiet_chunks(&mut self) {
        if self.quiet.is_empty() {
            return;
        }
        let mut samples = std::mem::take(&mut self.scoring);
        let mut quiet_before = std::mem::take(&mut self.scoring_quiet_before);
        let stretch = self.quiet.take(&mut samples, &mut quiet_before);
        if stretch.overflowed {
            self.model.reset();
        }
        let mut start = stretch.first;
        for (chunk, &quiet) in samples.chunks(self.chunk).zip(&quiet_before) {
            let score = self.score(chunk);
            self.after_score(score, quiet);
            if f64::from(score) >= self.params.confidence {
                self.recent.voiced(start);
            }
            start += self.chunk as u64;
        }
        self.scoring = samples;
        self.scoring_quiet_before = quiet_before;
    }
}

#[cfg(test)]
mod tests;
