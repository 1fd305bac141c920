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
    /// late wake-up then would be heard as a gap.
    pub fn schedule(&mut self, audio: AudioFrame, now: Duration) {
        let piece_samples = u128::from(audio.sample_rate) * Self::PIECE.as_micros() / 1_000_000;
        let piece_bytes = usize::try_from(piece_samples).unwrap_or(usize::MAX)
            * usize::from(audio.channels.max(1))
            * 2;
        if self.send_ahead.most.is_zero() || piece_bytes == 0 || audio.data.len() <= piece_bytes {
            self.schedule_whole(audio, now);
            return;
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
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn chunk() -> AudioFrame {
        AudioFrame::from_samples(&[1; 320], 16_000, 1, Duration::ZERO)
    }

    fn drain(p: &mut Playout, now: Duration) -> Vec<PlayoutEvent> {
        std::iter::from_fn(|| p.poll(now)).collect()
    }

    #[test]
    fn audio_leaves_at_its_time_and_speaking_follows_it() {
        let mut p = Playout::new();
        for _ in 0..3 {
            p.schedule(chunk(), ms(100));
        }
        assert!(drain(&mut p, ms(90)).is_empty());
        let events = drain(&mut p, ms(100));
        assert_eq!(events[0], PlayoutEvent::Started(ms(100)));
        assert!(matches!(&events[1], PlayoutEvent::Audio(a) if a.pts == ms(100)));
        assert_eq!(events.len(), 2);
        assert_eq!(drain(&mut p, ms(120)).len(), 1);
        assert_eq!(drain(&mut p, ms(140)).len(), 1);
        assert!(p.is_speaking());
        assert_eq!(drain(&mut p, ms(160)), [], "more may come: hang over");
        assert_eq!(
            drain(&mut p, ms(360)),
            [PlayoutEvent::Sent(ms(160)), PlayoutEvent::Stopped(ms(160))]
        );
        assert!(!p.is_speaking());
    }

    #[test]
    fn a_complete_utterance_stops_as_soon_as_it_has_played() {
        let mut p = Playout::new();
        p.schedule(chunk(), ms(0));
        p.mark_utterance_complete();
        drain(&mut p, ms(0));
        assert_eq!(
            drain(&mut p, ms(10)),
            [],
            "audio leaving at its time ends when played"
        );
        assert_eq!(
            drain(&mut p, ms(20)),
            [PlayoutEvent::Sent(ms(20)), PlayoutEvent::Stopped(ms(20))]
        );
    }

    #[test]
    fn a_short_gap_between_sentences_keeps_the_bot_speaking() {
        let mut p = Playout::new();
        p.schedule(chunk(), ms(0));
        p.schedule(
            AudioFrame::from_samples(&[1; 320], 16_000, 1, Duration::ZERO),
            ms(0),
        );
        drain(&mut p, ms(20));
        // More audio arrives 100 ms after the first ended.
        p.schedule(chunk(), ms(140));
        assert!(
            drain(&mut p, ms(60)).is_empty(),
            "still speaking across the gap"
        );
        let events = drain(&mut p, ms(140));
        assert!(matches!(&events[..], [PlayoutEvent::Audio(_)]));
    }

    #[test]
    fn interrupt_drops_queued_audio_and_reports_what_was_heard() {
        let mut p = Playout::new();
        for _ in 0..50 {
            p.schedule(chunk(), ms(0)); // one second of audio
        }
        drain(&mut p, ms(300));
        let cut = p.interrupt(ms(310));
        assert!(cut.was_speaking);
        assert_eq!(cut.played, ms(310));
        assert_eq!(cut.cut, ms(690));
        assert!(!p.is_speaking());
        assert_eq!(drain(&mut p, ms(400)), []);
        // New audio after the interruption plays at once.
        p.schedule(chunk(), ms(400));
        assert_eq!(drain(&mut p, ms(400))[0], PlayoutEvent::Started(ms(400)));
    }

    fn ahead() -> Playout {
        Playout::with_send_ahead(SendAhead {
            most: ms(100),
            refill_below: ms(60),
        })
    }

    fn released(events: &[PlayoutEvent]) -> Vec<Duration> {
        events
            .iter()
            .filter_map(|e| match e {
                PlayoutEvent::Audio(a) => Some(a.pts),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn audio_continuing_playback_leaves_ahead_and_speaking_follows_playing_time() {
        let mut p = ahead();
        for _ in 0..10 {
            p.schedule(chunk(), ms(0));
        }
        p.mark_utterance_complete();
        let events = drain(&mut p, ms(0));
        assert_eq!(events[0], PlayoutEvent::Started(ms(0)));
        // The first frame at its time, then what ends within 100 ms of now.
        assert_eq!(released(&events), [0, 20, 40, 60, 80].map(ms));
        // The pacer comes back once less than 60 ms is left to play (a poll
        // in between sends what ends within 100 ms).
        assert_eq!(p.next_due(), Some(ms(40)));
        assert_eq!(released(&drain(&mut p, ms(40))), [100, 120].map(ms));
        assert_eq!(p.next_due(), Some(ms(80)));
        assert_eq!(released(&drain(&mut p, ms(80))), [140, 160].map(ms));
        let last = drain(&mut p, ms(120));
        assert_eq!(released(&last), [180].map(ms));
        // All sent by 120 ms, and said so with the last audio (the sink
        // sends its tail then); the bot speaks until it has played, at 200.
        assert_eq!(last.last(), Some(&PlayoutEvent::Sent(ms(200))));
        assert!(p.is_speaking());
        assert!(drain(&mut p, ms(199)).is_empty());
        assert_eq!(drain(&mut p, ms(200)), [PlayoutEvent::Stopped(ms(200))]);
    }

    #[test]
    fn audio_after_silence_or_a_gap_leaves_at_its_time() {
        let mut p = ahead();
        p.schedule(chunk(), ms(50));
        assert!(drain(&mut p, ms(0)).is_empty(), "nothing is playing yet");
        assert_eq!(p.next_due(), Some(ms(50)));
        drain(&mut p, ms(50));
        // The next piece comes after a 100 ms gap in the schedule: sent
        // early, the far end would play it straight after the first.
        p.schedule(chunk(), ms(170));
        assert!(released(&drain(&mut p, ms(100))).is_empty());
        assert_eq!(p.next_due(), Some(ms(170)));
        assert_eq!(released(&drain(&mut p, ms(170))), [ms(170)]);
    }

    #[test]
    fn an_interruption_counts_audio_sent_ahead_but_not_played_as_cut() {
        let mut p = ahead();
        for _ in 0..10 {
            p.schedule(chunk(), ms(0));
        }
        drain(&mut p, ms(0));
        let cut = p.interrupt(ms(30));
        assert_eq!(cut.played, ms(30));
        assert_eq!(cut.cut, ms(170), "70 ms sent ahead and 100 ms queued");
    }

    #[test]
    fn without_send_ahead_next_due_is_the_audio_time() {
        let mut p = Playout::new();
        p.schedule(chunk(), ms(0));
        p.schedule(chunk(), ms(0));
        drain(&mut p, ms(0));
        assert_eq!(p.next_due(), Some(ms(20)));
        assert!(released(&drain(&mut p, ms(19))).is_empty());
    }

    #[test]
    fn a_top_up_may_wait_past_its_due_time_until_its_audio_plays() {
        let mut p = ahead();
        assert_eq!(p.next_deadline(), None);
        for _ in 0..10 {
            p.schedule(chunk(), ms(0));
        }
        // Not started: the first frame is due at its time, no later.
        assert_eq!(
            (p.next_due(), p.next_deadline()),
            (Some(ms(0)), Some(ms(0)))
        );
        // 100 ms sent ahead: the next top-up is due once 60 ms are left
        // (at 40 ms), and nothing is late until its own time (100 ms).
        assert_eq!(released(&drain(&mut p, ms(0))).len(), 5);
        assert_eq!(
            (p.next_due(), p.next_deadline()),
            (Some(ms(40)), Some(ms(100)))
        );
        // The next frame (100 to 120 ms) may leave once it ends within
        // 100 ms of now.
        assert!(!p.releasable(ms(19)));
        assert!(p.releasable(ms(20)));
        assert_eq!(ahead().send_ahead.refill(), ms(40));
    }

    #[test]
    fn audio_longer_than_the_lead_is_sent_ahead_in_pieces() {
        let mut p = Playout::with_send_ahead(SendAhead {
            most: ms(500),
            refill_below: ms(460),
        });
        p.schedule(chunk(), ms(0));
        // A second of speech in one frame, after the first 20 ms.
        let second = AudioFrame::from_samples(&[1; 16_000], 16_000, 1, Duration::ZERO);
        p.schedule(second, ms(0));
        let out = drain(&mut p, ms(0));
        let pieces = released(&out);
        // The first 20 ms and the second's first 480 ms leave at once.
        assert_eq!(pieces.len(), 25, "{pieces:?}");
        assert_eq!(pieces[1], ms(20));
        assert_eq!(pieces[24], ms(480));
        assert_eq!(p.scheduled_until(), ms(1_020));
        // The rest follows as the lead allows, every sample of it.
        let mut total = 25;
        for now in (20..=1_020).step_by(20) {
            total += released(&drain(&mut p, ms(now))).len();
        }
        assert_eq!(total, 51);
    }

    #[test]
    fn without_send_ahead_a_long_frame_stays_whole() {
        let mut p = Playout::new();
        let second = AudioFrame::from_samples(&[1; 16_000], 16_000, 1, Duration::ZERO);
        p.schedule(second, ms(0));
        assert_eq!(released(&drain(&mut p, ms(0))), [ms(0)]);
    }

    #[test]
    fn a_refill_one_frame_below_the_bound_sends_one_frame_per_wake_up() {
        let mut p = Playout::with_send_ahead(SendAhead {
            most: ms(100),
            refill_below: ms(80),
        });
        for _ in 0..10 {
            p.schedule(chunk(), ms(0));
        }
        assert_eq!(released(&drain(&mut p, ms(0))), [0, 20, 40, 60, 80].map(ms));
        for step in 1..=5u64 {
            let due = p.next_due().unwrap();
            assert_eq!(due, ms(20 * step));
            assert_eq!(released(&drain(&mut p, due)), [ms(80 + 20 * step)]);
        }
    }

    #[test]
    fn an_utterance_marked_complete_after_its_audio_left_is_sent_at_once() {
        let mut p = ahead();
        p.schedule(chunk(), ms(0));
        p.schedule(chunk(), ms(0));
        assert_eq!(released(&drain(&mut p, ms(0))), [0, 20].map(ms));
        assert!(drain(&mut p, ms(5)).is_empty(), "more may come");
        p.mark_utterance_complete();
        assert_eq!(drain(&mut p, ms(5)), [PlayoutEvent::Sent(ms(40))]);
        assert_eq!(drain(&mut p, ms(40)), [PlayoutEvent::Stopped(ms(40))]);
    }

    #[test]
    fn each_utterance_is_sent_once_even_when_the_next_continues_it() {
        let mut p = ahead();
        p.schedule(chunk(), ms(0));
        p.mark_utterance_complete();
        assert_eq!(
            drain(&mut p, ms(0)),
            [
                PlayoutEvent::Started(ms(0)),
                PlayoutEvent::Audio(at(ms(0))),
                PlayoutEvent::Sent(ms(20)),
            ]
        );
        // The next utterance comes while the first still plays.
        p.schedule(chunk(), ms(10));
        p.mark_utterance_complete();
        assert_eq!(
            drain(&mut p, ms(10)),
            [PlayoutEvent::Audio(at(ms(20))), PlayoutEvent::Sent(ms(40))]
        );
        assert_eq!(drain(&mut p, ms(40)), [PlayoutEvent::Stopped(ms(40))]);
    }

    #[test]
    fn audio_after_a_long_gap_owes_a_sent_of_its_own_and_the_first_is_not_repeated() {
        let mut p = ahead();
        p.schedule(chunk(), ms(0));
        p.mark_utterance_complete();
        assert_eq!(
            drain(&mut p, ms(0)).last(),
            Some(&PlayoutEvent::Sent(ms(20)))
        );
        p.schedule(chunk(), ms(500));
        assert_eq!(drain(&mut p, ms(20)), [PlayoutEvent::Stopped(ms(20))]);
        assert_eq!(drain(&mut p, ms(500))[0], PlayoutEvent::Started(ms(500)));
        // Not marked complete: its end is reported when it stops.
        assert_eq!(drain(&mut p, ms(600)), []);
        assert_eq!(
            drain(&mut p, ms(720)),
            [PlayoutEvent::Sent(ms(520)), PlayoutEvent::Stopped(ms(520))]
        );
    }

    #[test]
    fn audio_sent_ahead_but_never_marked_complete_is_reported_at_the_stop() {
        let mut p = ahead();
        p.schedule(chunk(), ms(0));
        p.schedule(chunk(), ms(0));
        assert_eq!(released(&drain(&mut p, ms(0))), [0, 20].map(ms));
        assert_eq!(drain(&mut p, ms(200)), [], "more may come: hang over");
        assert_eq!(
            drain(&mut p, ms(240)),
            [PlayoutEvent::Sent(ms(40)), PlayoutEvent::Stopped(ms(40))]
        );
    }

    #[test]
    fn an_interruption_owes_no_sent_and_the_next_reply_gets_its_own() {
        let mut p = ahead();
        p.schedule(chunk(), ms(0));
        p.schedule(chunk(), ms(0));
        drain(&mut p, ms(0));
        p.interrupt(ms(10));
        assert_eq!(drain(&mut p, ms(300)), [], "nothing left to report");
        p.schedule(chunk(), ms(300));
        p.mark_utterance_complete();
        assert_eq!(
            drain(&mut p, ms(300)),
            [
                PlayoutEvent::Started(ms(300)),
                PlayoutEvent::Audio(at(ms(300))),
                PlayoutEvent::Sent(ms(320)),
            ]
        );
        assert_eq!(drain(&mut p, ms(320)), [PlayoutEvent::Stopped(ms(320))]);
    }

    fn at(pts: Duration) -> AudioFrame {
        AudioFrame { pts, ..chunk() }
    }
}
