//! When bot audio leaves: scheduling, pacing and speaking state, without I/O.
//!
//! Output audio is scheduled back to back from the moment it arrives (or
//! right after audio already scheduled), and released when the session clock
//! reaches its start. The bot "speaks" from the first released frame until
//! the released audio has finished playing, and then either the producer has
//! marked the utterance complete or nothing more has come within
//! [`Playout::STOP_HANGOVER`], so the short gaps between synthesized
//! sentences do not flap the speaking state. Every method takes the session
//! time; nothing here reads a clock.
//!
//! A far end that buffers and plays what it receives in order (Twilio) may
//! be sent audio ahead of its time while it is already playing ([`SendAhead`]):
//! audio that continues what is playing can leave up to a bound early, so a
//! late wake-up of the server is heard as nothing instead of as a gap. The
//! first audio after silence, or after a gap in the schedule, still leaves
//! at its time: sent early, it would be played early. Speaking state and
//! what an interruption cut still follow the time audio plays, not the time
//! it left. The end of an utterance sent ahead, once the producer has
//! marked it complete, is reported ([`PlayoutEvent::Sent`]) as soon as its
//! last audio has left, so the sink sends the tail it holds back (a part of
//! a message, a resampler's delay) with it, not when the audio has finished
//! playing: the tail would then arrive after the audio before it had
//! played, a gap the caller hears (it was the one late message of every
//! call found late at 1,000 Twilio calls). The price: an utterance that
//! follows straight on while the last still plays starts after that tail,
//! padded to a whole message (up to 20 ms of silence at Twilio, plus the
//! resampler's 5.9 ms starting again).

use std::collections::VecDeque;
use std::time::Duration;

use crate::frame::AudioFrame;

/// Something the transport must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum PlayoutEvent {
    /// The bot started speaking at this session time.
    Started(Duration),
    /// This audio leaves now; its `pts` is its scheduled start.
    Audio(AudioFrame),
    /// The audio that has left is all there is for now; it finishes playing
    /// at this session time. Once for the audio released since the last
    /// `Sent` (none after an interruption), before
    /// [`Stopped`](Self::Stopped): right after an utterance's last audio
    /// when audio is sent ahead and the producer has marked the utterance
    /// complete, otherwise when the bot stops.
    Sent(Duration),
    /// The bot stopped speaking: its audio ended at this session time.
    Stopped(Duration),
}

/// What an interruption cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// Audio of the current utterance that had already left.
    pub played: Duration,
    /// Queued audio that was dropped, plus the unplayed rest of audio that
    /// had left but not finished playing.
    pub cut: Duration,
    /// Whether the bot was speaking.
    pub was_speaking: bool,
}

/// How far ahead of its playing time audio may leave, for a far end that
/// buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendAhead {
    /// The most audio sent but not yet played.
    pub most: Duration,
    /// The pacer wakes once less than this is left to play and tops up to
    /// `most`, so the gap between the two is what one wake-up sends. At
    /// most `most`.
    pub refill_below: Duration,
}

impl SendAhead {
    /// How much audio one top-up sends: the gap between the two bounds.
    pub fn refill(&self) -> Duration {
        self.most.saturating_sub(self.refill_below)
    }

    /// Audio leaves at its time: for a far end that paces by arrival
    /// (WebRTC's jitter buffer reads early packets as network jitter).
    pub const NONE: SendAhead = SendAhead {
        most: Duration::ZERO,
        refill_below: Duration::ZERO,
    };
}

/// The output schedule of one session.
#[derive(Debug, Default)]
pub struct Playout {
    queue: VecDeque<AudioFrame>,
    /// End of the last scheduled audio.
    scheduled_until: Duration,
    /// End of the last released audio.
    released_until: Duration,
    /// Start of the current utterance, while speaking.
    speaking_since: Option<Duration>,
    /// No more audio is coming for the current utterance.
    utterance_complete: bool,
    /// Audio has left whose end [`PlayoutEvent::Sent`] has not reported.
    unreported: bool,
    send_ahead: SendAhead,
}

impl Playout {
    /// How long the bot may pause between pieces of audio and still count as
    /// speaking.
    pub const STOP_HANGOVER: Duration = Duration::from_millis(200);

    /// The longest piece audio sent ahead is queued in.
    pub const PIECE: Duration = Duration::from_millis(20);

    /// An empty schedule; audio leaves at its time.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty schedule whose audio may leave early by `send_ahead`.
    pub fn with_send_ahead(send_ahead: SendAhead) -> Self {
        Playout {
            send_ahead: SendAhead {
                refill_below: send_ahead.refill_below.min(send_ahead.most),
                ..send_ahead
            },
            ..Self::default()
        }
    }

    /// Schedules `audio` at `now` or right after the audio already
    /// scheduled, whichever is later. Sent ahead, audio longer than
    /// [`Self::PIECE`] is queued in pieces of that length: a frame leaves
    /// early only if all of it fits within the lead, so a TTS chunk longer
    /// than the lead (a second of speech in one WebSocket message) would
    /// otherwise leave only when the audio before it had played, and a
    /// late wake-up then would be heard as a gap. Returns the session time
    /// it plays from.
    pub fn schedule(&mut self, audio: AudioFrame, now: Duration) -> Duration {
        let start = self.scheduled_until.max(now);
        let piece_samples = u128::from(audio.sample_rate) * Self::PIECE.as_micros() / 1_000_000;
        let piece_bytes = usize::try_from(piece_samples).unwrap_or(usize::MAX)
            * usize::from(audio.channels.max(1))
            * 2;
        if self.send_ahead.most.is_zero() || piece_bytes == 0 || audio.data.len() <= piece_bytes {
            self.schedule_whole(audio, now);
            return start;
        }
        let mut at = 0;
        while at < audio.data.len() {
            let end = (at + piece_bytes).min(audio.data.len());
            let piece = AudioFrame {
                data: audio.data.slice(at..end),
                ..audio.clone()
            };
            self.schedule_whole(piece, now);
            at = end;
        }
        start
    }

    fn schedule_whole(&mut self, mut audio: AudioFrame, now: Duration) {
        let start = self.scheduled_until.max(now);
        audio.pts = start;
        self.scheduled_until = start + audio.duration();
        self.utterance_complete = false;
        self.queue.push_back(audio);
    }

    /// The next thing to do at `now`, if any. Call until `None`.
    pub fn poll(&mut self, now: Duration) -> Option<PlayoutEvent> {
        if let Some(next) = self.queue.front()
            && (next.pts <= now || self.continues_playing(next, now))
        {
            if self.speaking_since.is_none() {
                self.speaking_since = Some(next.pts);
                return Some(PlayoutEvent::Started(next.pts));
            }
            let audio = self.queue.pop_front()?;
            self.released_until = audio.pts + audio.duration();
            self.unreported = true;
            return Some(PlayoutEvent::Audio(audio));
        }
        self.speaking_since?;
        let quiet_from = self.released_until;
        if self.unreported
            && self.utterance_complete
            && self.queue.is_empty()
            && !self.send_ahead.most.is_zero()
        {
            self.unreported = false;
            return Some(PlayoutEvent::Sent(quiet_from));
        }
        // A long gap ahead (or a finished utterance) ends the speech as soon
        // as the audio has played; a short or unknown one is bridged.
        let stop_at = match self.queue.front() {
            Some(next) if next.pts >= quiet_from + Self::STOP_HANGOVER => quiet_from,
            Some(_) => return None,
            None if self.utterance_complete => quiet_from,
            None => quiet_from + Self::STOP_HANGOVER,
        };
        if now < stop_at {
            return None;
        }
        if std::mem::take(&mut self.unreported) {
            return Some(PlayoutEvent::Sent(quiet_from));
        }
        self.speaking_since = None;
        Some(PlayoutEvent::Stopped(quiet_from))
    }

    /// Whether [`poll`](Playout::poll) at `now` would release audio.
    pub fn releasable(&self, now: Duration) -> bool {
        self.queue
            .front()
            .is_some_and(|next| next.pts <= now || self.continues_playing(next, now))
    }

    /// Whether audio starting at `pts` follows audio that is still playing
    /// at `now` without a gap, and is within the send-ahead bound: the far
    /// end will play it at its time though it leaves now.
    fn continues_playing(&self, audio: &AudioFrame, now: Duration) -> bool {
        self.speaking_since.is_some()
            && audio.pts == self.released_until
            && audio.pts + audio.duration() <= now + self.send_ahead.most
    }

    /// The producer says the utterance is complete (all its audio has been
    /// scheduled): the bot stops speaking as soon as it has played, without
    /// waiting out the hangover.
    pub fn mark_utterance_complete(&mut self) {
        self.utterance_complete = true;
    }

    /// Drops everything not yet released, at `now`.
    pub fn interrupt(&mut self, now: Duration) -> Cut {
        let queued: Duration = self.queue.drain(..).map(|a| a.duration()).sum();
        let unplayed = self.released_until.saturating_sub(now);
        let played = self.speaking_since.map_or(Duration::ZERO, |since| {
            now.min(self.released_until).saturating_sub(since)
        });
        let was_speaking = self.speaking_since.take().is_some();
        // The far end drops what it holds: no end left to report.
        self.unreported = false;
        self.scheduled_until = now;
        self.released_until = self.released_until.min(now);
        Cut {
            played,
            cut: queued + unplayed,
            was_speaking,
        }
    }

    /// When the next event is due, if any: for pacing without polling.
    pub fn next_due(&self) -> Option<Duration> {
        match (self.queue.front(), self.speaking_since) {
            // Once less than `refill_below` is left to play, and not before
            // it may leave (at its time, or once it ends within `most`).
            (Some(next), Some(_)) if next.pts == self.released_until => {
                let may_leave = next
                    .pts
                    .min((next.pts + next.duration()).saturating_sub(self.send_ahead.most));
                Some(
                    next.pts
                        .saturating_sub(self.send_ahead.refill_below)
                        .max(may_leave),
                )
            }
            (Some(next), _) => Some(next.pts),
            (None, Some(_)) => Some(self.released_until),
            (None, None) => None,
        }
    }

    /// The latest the next event may happen without being late: the next
    /// frame's own time (it may leave from [`next_due`] on), or the end of
    /// what was released for the stop. A pacer may wake anywhere between
    /// the two.
    ///
    /// [`next_due`]: Playout::next_due
    pub fn next_deadline(&self) -> Option<Duration> {
        match (self.queue.front(), self.speaking_since) {
            (Some(next), _) => Some(next.pts),
            (None, Some(_)) => Some(self.released_until),
            (None, None) => None,
        }
    }

    /// Whether the bot is speaking.
    pub fn is_speaking(&self) -> bool {
        self.speaking_since.is_some()
    }

    /// End of the last scheduled audio.
    pub fn scheduled_until(&self) -> Duration {
        self.scheduled_until
    }
}

#[cfg(test)]
mod tests;
