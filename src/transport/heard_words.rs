//! [`HeardWords`]: when the listener hears each word a TTS timed, without
//! I/O.
//!
//! A word-timing TTS places each word in its response's audio
//! ([`SpokenText::start`](crate::frame::SpokenText), from the start of that
//! response's audio), and its `TtsText` frames come as the provider times
//! the words: ahead of the audio, or just after it. The output knows when
//! that audio plays: this follows one response at a time (from
//! `TtsStarted` to `TtsStopped`, which reach the output in order with the
//! response's audio) and places each word at the session time its audio
//! plays, where the response's audio was scheduled plus the word's start.
//! Audio that comes late is scheduled when it comes, not back to back: the
//! words from there on move by the gap. A word is heard when the playout
//! reaches it; an interruption forgets every word not yet heard.
//!
//! A word is never placed earlier than its audio plays. One that comes
//! after its audio, with a gap in the schedule between the two, is placed
//! by the gap later than it played (the gaps before are not kept): it is
//! reported late, never early. A word timed past the end of its
//! response's audio is heard as the audio ends.
//!
//! Audio outside a response (a parrot's) costs nothing here, and a
//! response's audio frame costs a comparison and an addition: no
//! allocation.

use std::collections::VecDeque;
use std::time::Duration;

/// How late a word may be reported: it waits for a wake-up the output has
/// anyway (a top-up of a far end that buffers comes every two frames, 40
/// ms) rather than waking a thread of its own. A highlight 40 ms late is
/// not seen.
pub(crate) const LATENESS: Duration = Duration::from_millis(40);

/// The timed words of the bot's speech, by when they are heard.
#[derive(Debug, Default)]
pub(crate) struct HeardWords {
    /// The response whose audio is on its way to the output, if any.
    response: Option<ResponseAudio>,
    /// Words placed in the playout, in the order they are heard: the time
    /// their audio plays, and the word.
    placed: VecDeque<(Duration, String)>,
}

/// Where one response's audio plays.
#[derive(Debug, Default)]
struct ResponseAudio {
    /// The session time the start of the response's audio would have
    /// played, had its audio all been back to back: a word `start` into
    /// the response plays at `origin + start`. `None` until its first
    /// audio is scheduled.
    origin: Option<Duration>,
    /// The response's audio scheduled so far.
    scheduled: Duration,
    /// Words timed past the audio scheduled so far: (start, word).
    unplaced: VecDeque<(Duration, String)>,
}

impl HeardWords {
    /// No response, no word.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A response's synthesis starts (`TtsStarted`): the audio that comes
    /// next is its own. One still open ends first.
    pub(crate) fn response_started(&mut self) {
        self.response_ended();
        self.response = Some(ResponseAudio::default());
    }

    /// Whether audio scheduled now belongs to a response whose words are
    /// placed: only then does [`Self::audio_scheduled`] need calling.
    pub(crate) fn follows_audio(&self) -> bool {
        self.response.is_some()
    }

    /// `duration` of the open response's audio was scheduled to play from
    /// session time `start`.
    pub(crate) fn audio_scheduled(&mut self, start: Duration, duration: Duration) {
        let Some(response) = &mut self.response else {
            return;
        };
        if response.origin.map(|origin| origin + response.scheduled) != Some(start) {
            // Its first audio, or audio after a gap: the rest plays from
            // here.
            response.origin = Some(start.saturating_sub(response.scheduled));
        }
        response.scheduled += duration;
        let Some(origin) = response.origin else {
            return;
        };
        while let Some((word_start, _)) = response.unplaced.front() {
            if *word_start >= response.scheduled {
                break;
            }
            if let Some((word_start, word)) = response.unplaced.pop_front() {
                self.placed.push_back((origin + word_start, word));
            }
        }
    }

    /// A word of the open response, `start` into its audio. Returns when
    /// it is heard, if that is known already (its audio is scheduled).
    pub(crate) fn word(&mut self, word: String, start: Duration) -> Option<Duration> {
        let response = self.response.as_mut()?;
        match response.origin {
            // Words keep their order: none is placed ahead of one waiting.
            Some(origin) if start < response.scheduled && response.unplaced.is_empty() => {
                let at = origin + start;
                self.placed.push_back((at, word));
                Some(at)
            }
            _ => {
                response.unplaced.push_back((start, word));
                None
            }
        }
    }

    /// The open response's synthesis ended (`TtsStopped`): all its audio
    /// is scheduled. Words timed past its end are heard as it ends; a
    /// response without audio had none heard.
    pub(crate) fn response_ended(&mut self) {
        let Some(response) = self.response.take() else {
            return;
        };
        let Some(origin) = response.origin else {
            return;
        };
        let end = origin + response.scheduled;
        for (_, word) in response.unplaced {
            self.placed.push_back((end, word));
        }
    }

    /// The next word heard by session time `now`, if any. Call until
    /// `None`.
    pub(crate) fn poll(&mut self, now: Duration) -> Option<String> {
        if self.placed.front()?.0 > now {
            return None;
        }
        self.placed.pop_front().map(|(_, word)| word)
    }

    /// When the next word is heard, if one is placed.
    pub(crate) fn next_due(&self) -> Option<Duration> {
        self.placed.front().map(|(at, _)| *at)
    }

    /// The bot was interrupted: no word not yet heard ever will be, and
    /// the response's audio still to come is dropped.
    pub(crate) fn interrupt(&mut self) {
        self.response = None;
        self.placed.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn heard(words: &mut HeardWords, now: Duration) -> Vec<String> {
        std::iter::from_fn(|| words.poll(now)).collect()
    }

    #[test]
    fn a_word_is_heard_when_its_audio_plays_not_when_it_is_timed() {
        let mut words = HeardWords::new();
        words.response_started();
        // Timed before any audio came: placed once it does.
        assert_eq!(words.word("Hello".into(), ms(0)), None);
        assert_eq!(words.word("world.".into(), ms(300)), None);
        assert_eq!(words.next_due(), None);
        // The audio plays from 1,000 ms (audio ahead of it in the playout).
        words.audio_scheduled(ms(1_000), ms(200));
        assert_eq!(words.next_due(), Some(ms(1_000)));
        assert!(heard(&mut words, ms(999)).is_empty(), "not yet played");
        assert_eq!(heard(&mut words, ms(1_000)), ["Hello"]);
        // "world." is past the audio scheduled so far.
        assert_eq!(words.next_due(), None);
        words.audio_scheduled(ms(1_200), ms(200));
        assert_eq!(words.next_due(), Some(ms(1_300)));
        assert!(heard(&mut words, ms(1_299)).is_empty());
        assert_eq!(heard(&mut words, ms(1_300)), ["world."]);
    }

    #[test]
    fn a_word_timed_after_its_audio_is_placed_at_once() {
        let mut words = HeardWords::new();
        words.response_started();
        words.audio_scheduled(ms(500), ms(400));
        assert_eq!(words.word("Hi".into(), ms(100)), Some(ms(600)));
        assert!(heard(&mut words, ms(599)).is_empty());
        assert_eq!(heard(&mut words, ms(600)), ["Hi"]);
    }

    #[test]
    fn audio_that_comes_late_moves_the_words_after_it() {
        let mut words = HeardWords::new();
        words.response_started();
        words.word("One".into(), ms(0));
        words.word("two".into(), ms(250));
        words.audio_scheduled(ms(0), ms(200));
        // The next audio came 100 ms after the first had played: it plays
        // from 300, so a word 250 into the response plays at 350.
        words.audio_scheduled(ms(300), ms(200));
        assert_eq!(heard(&mut words, ms(349)), ["One"]);
        assert_eq!(heard(&mut words, ms(350)), ["two"]);
    }

    #[test]
    fn a_word_past_the_audio_is_heard_as_it_ends_and_none_without_audio() {
        let mut words = HeardWords::new();
        words.response_started();
        words.audio_scheduled(ms(0), ms(200));
        words.word("late".into(), ms(900));
        words.response_ended();
        assert_eq!(words.next_due(), Some(ms(200)));
        assert_eq!(heard(&mut words, ms(200)), ["late"]);

        words.response_started();
        words.word("unsaid".into(), ms(0));
        words.response_ended();
        assert_eq!(words.next_due(), None);
        // Audio outside a response places nothing.
        assert!(!words.follows_audio());
        words.audio_scheduled(ms(300), ms(200));
        assert_eq!(words.word("stray".into(), ms(0)), None);
        assert_eq!(words.next_due(), None);
    }

    #[test]
    fn the_next_response_plays_after_the_last_one() {
        let mut words = HeardWords::new();
        words.response_started();
        words.audio_scheduled(ms(0), ms(400));
        words.word("First.".into(), ms(0));
        words.response_ended();
        words.response_started();
        words.word("Second.".into(), ms(0));
        words.audio_scheduled(ms(400), ms(400));
        assert_eq!(heard(&mut words, ms(399)), ["First."]);
        assert_eq!(heard(&mut words, ms(400)), ["Second."]);
    }

    #[test]
    fn an_interruption_forgets_the_words_not_yet_heard() {
        let mut words = HeardWords::new();
        words.response_started();
        words.audio_scheduled(ms(0), ms(1_000));
        words.word("Let".into(), ms(0));
        words.word("me".into(), ms(300));
        words.word("explain.".into(), ms(600));
        assert_eq!(heard(&mut words, ms(100)), ["Let"]);
        words.interrupt();
        assert!(heard(&mut words, ms(2_000)).is_empty());
        // What the interrupted response still sends is not its audio.
        words.word("more".into(), ms(700));
        words.audio_scheduled(ms(2_000), ms(100));
        assert_eq!(words.next_due(), None);
    }
}
