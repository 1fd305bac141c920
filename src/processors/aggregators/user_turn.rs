//! [`UserTurnTracker`]: when a user turn is complete, without I/O.
//!
//! A user turn is the final transcripts heard between the VAD's
//! `UserStartedSpeaking` and `UserStoppedSpeaking`. Transcripts and the VAD
//! race each other, so:
//!
//! - At the stop, a turn with finals and no newer interim is handed at once.
//! - A final that arrives while the user is silent (an STT that transcribes
//!   each utterance after it ends, or a streaming STT finalising late) is
//!   handed the moment it arrives: nothing is waited for that has come.
//! - An interim newer than the last final may still become final: the turn
//!   waits for it up to `timeout` after the stop (session time), then hands
//!   what it has, the interim standing in for a final that never came. A
//!   final for that same utterance arriving after it has been handed is
//!   dropped, since the interim already spoke for it: the first final
//!   after it while the user is silent, or, once they speak again, a final
//!   with the interim's words (any words it has beyond them are the new
//!   speech's and are kept).
//! - Speech resuming during the wait continues the same turn.
//! - Without a VAD (no speaking frames seen), every final is a turn.
//!
//! Every method takes the session time; nothing here reads a clock.

use std::time::Duration;

use super::turn_ending::words_of;

/// Decides when a user turn is complete. See the module docs.
#[derive(Debug, Clone)]
pub struct UserTurnTracker {
    timeout: Duration,
    speaking: bool,
    saw_vad: bool,
    finals: Vec<String>,
    interim: Option<String>,
    /// The user stopped at this time and the turn waits for transcripts.
    waiting_since: Option<Duration>,
    /// The interim the last turn took in place of a final that had not
    /// come, until that final comes (see the module docs).
    stood_in: Option<String>,
    /// The user started speaking again since `stood_in` stood in: a final
    /// after that may be the new speech's (or run on into it), not only
    /// the stood-in interim's.
    spoke_since_stand_in: bool,
    /// The finals are words taken back (see [`UserTurnTracker::resume_with`])
    /// and no final of the speech since has come.
    only_taken_back: bool,
}

impl UserTurnTracker {
    /// A tracker that waits up to `timeout` for an interim to finalise.
    pub fn new(timeout: Duration) -> Self {
        UserTurnTracker {
            timeout,
            speaking: false,
            saw_vad: false,
            finals: Vec::new(),
            interim: None,
            waiting_since: None,
            stood_in: None,
            spoke_since_stand_in: false,
            only_taken_back: false,
        }
    }

    /// Whether the user is speaking, as the VAD last said.
    pub fn is_speaking(&self) -> bool {
        self.speaking
    }

    /// Whether a VAD decides the user's turns (speaking frames were seen).
    pub fn saw_vad(&self) -> bool {
        self.saw_vad
    }

    /// Takes back `text`, handed too early: the user went on speaking, so
    /// it opens the turn that continues.
    /// At the next stop the turn waits for the continuation's final (as for
    /// an interim), so it is not handed without it.
    pub fn resume_with(&mut self, text: String) {
        self.finals.insert(0, text);
        self.only_taken_back = true;
    }

    /// The VAD says the user started speaking.
    pub fn user_started(&mut self) {
        self.spoke_since_stand_in = self.stood_in.is_some();
        self.speaking = true;
        self.saw_vad = true;
        self.waiting_since = None;
    }

    /// The VAD says the user stopped speaking at `now`. Returns the turn if
    /// it is complete.
    pub fn user_stopped(&mut self, now: Duration) -> Option<String> {
        self.speaking = false;
        self.saw_vad = true;
        if !self.finals.is_empty() && self.interim.is_none() && !self.only_taken_back {
            return self.hand();
        }
        self.waiting_since = Some(now);
        None
    }

    /// A final transcript. Returns the turn if it is complete.
    pub fn final_transcript(&mut self, text: &str) -> Option<String> {
        let text = text.trim();
        if text.is_empty() {
            // The stood-in interim's final, if one stood in: it was noise.
            if !self.spoke_since_stand_in {
                self.stood_in = None;
            }
            return None;
        }
        self.interim = None;
        self.only_taken_back = false;
        let text = match self.stood_in.take() {
            // The stood-in interim's final, the user silent since: it spoke
            // for it already.
            Some(_) if !self.spoke_since_stand_in => return None,
            Some(interim) => match beyond(&interim, text) {
                Some("") => return None,
                Some(rest) => rest,
                // Not its final (it never came): new words.
                None => text,
            },
            None => text,
        };
        self.finals.push(text.to_owned());
        if !self.saw_vad || !self.speaking {
            return self.hand();
        }
        None
    }

    /// An interim transcript, which may still change.
    pub fn interim_transcript(&mut self, text: &str) {
        let text = text.trim();
        if !text.is_empty() {
            self.interim = Some(text.to_owned());
        }
    }

    /// While the turn waits for an interim to finalise after the user
    /// stopped: its words so far, the finals and then the interim. (A turn
    /// waiting with no interim has no words of its last speech yet.)
    pub fn words_so_far(&self) -> Option<String> {
        self.waiting_since?;
        let interim = self.interim.as_deref()?;
        let words: Vec<&str> = self
            .finals
            .iter()
            .map(String::as_str)
            .chain([interim])
            .collect();
        Some(words.join(" "))
    }

    /// Returns the turn if the wait for transcripts has run out at `now`.
    pub fn poll(&mut self, now: Duration) -> Option<String> {
        let since = self.waiting_since?;
        if now < since + self.timeout {
            return None;
        }
        self.waiting_since = None;
        if self.finals.is_empty() && self.interim.is_none() {
            return None;
        }
        // The interim stands in for its final, after the finals before it.
        let interim = self.interim.take();
        self.finals.extend(interim.clone());
        let turn = self.hand();
        self.stood_in = interim;
        self.spoke_since_stand_in = false;
        turn
    }

    /// How long an interim may take to finalise.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether the turn has any words yet (finals or an interim).
    pub fn has_words(&self) -> bool {
        !self.finals.is_empty() || self.interim.is_some()
    }

    /// Whether an interim newer than the last final is held.
    pub fn has_interim(&self) -> bool {
        self.interim.is_some()
    }

    /// The interim newer than the last final, taken to stand in for a final
    /// that did not come in time; a final for the same words arriving
    /// later is dropped, as for a turn handed at the end of the wait.
    pub fn take_interim(&mut self) -> Option<String> {
        let interim = self.interim.take()?;
        self.stood_in = Some(interim.clone());
        self.spoke_since_stand_in = self.speaking;
        Some(interim)
    }

    /// When the wait for transcripts runs out, if the turn is waiting.
    pub fn deadline(&self) -> Option<Duration> {
        self.waiting_since.map(|since| since + self.timeout)
    }

    /// The session ends: whatever was heard is the last turn.
    pub fn finish(&mut self) -> Option<String> {
        if let Some(interim) = self.interim.take() {
            self.finals.push(interim);
        }
        self.waiting_since = None;
        self.hand()
    }

    fn hand(&mut self) -> Option<String> {
        self.waiting_since = None;
        self.only_taken_back = false;
        self.stood_in = None;
        if self.finals.is_empty() {
            return None;
        }
        let text = self.finals.join(" ");
        self.finals.clear();
        Some(text)
    }
}

/// What `final_text` says beyond `interim`'s words, if it starts with them
/// (case and punctuation aside): `""` when it says nothing more.
fn beyond<'a>(interim: &str, final_text: &'a str) -> Option<&'a str> {
    let want = words_of(interim);
    let mut rest = final_text;
    let mut said = Vec::new();
    while said.len() < want.len() {
        let token = rest.split_whitespace().next()?;
        let at = rest.find(token).unwrap_or(0) + token.len();
        rest = &rest[at..];
        said.extend(words_of(token));
    }
    (said == want).then(|| rest.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn tracker() -> UserTurnTracker {
        UserTurnTracker::new(ms(500))
    }

    #[test]
    fn finals_heard_while_speaking_are_handed_at_the_stop() {
        let mut t = tracker();
        t.user_started();
        assert_eq!(t.final_transcript("Hello"), None);
        assert_eq!(t.final_transcript(" there. "), None);
        assert_eq!(t.user_stopped(ms(1000)).as_deref(), Some("Hello there."));
        assert_eq!(t.poll(ms(5000)), None);
    }

    #[test]
    fn the_words_so_far_are_the_finals_and_the_interim_while_waiting() {
        let mut t = tracker();
        t.user_started();
        t.final_transcript("I would like");
        t.interim_transcript("a pizza");
        assert_eq!(t.words_so_far(), None, "not while speaking");
        assert_eq!(t.user_stopped(ms(1000)), None);
        assert_eq!(t.words_so_far().as_deref(), Some("I would like a pizza"));
        assert_eq!(
            t.final_transcript("a pizza.").as_deref(),
            Some("I would like a pizza.")
        );
        assert_eq!(t.words_so_far(), None, "nothing waits once handed");
        // Words taken back wait for their continuation's transcript.
        t.resume_with("I would like a pizza.".into());
        t.user_started();
        assert_eq!(t.user_stopped(ms(3000)), None);
        assert_eq!(t.words_so_far(), None, "no words of the continuation yet");
        t.interim_transcript("and a salad");
        assert_eq!(
            t.words_so_far().as_deref(),
            Some("I would like a pizza. and a salad")
        );
    }

    #[test]
    fn a_final_after_the_stop_is_handed_when_it_arrives() {
        let mut t = tracker();
        t.user_started();
        assert_eq!(t.user_stopped(ms(1000)), None);
        assert_eq!(t.poll(ms(1200)), None);
        assert_eq!(
            t.final_transcript("Late words").as_deref(),
            Some("Late words")
        );
        // Even after the wait ran out.
        t.user_started();
        t.user_stopped(ms(3000));
        assert_eq!(t.poll(ms(4000)), None);
        assert_eq!(t.final_transcript("Later").as_deref(), Some("Later"));
    }

    #[test]
    fn a_pending_interim_is_waited_for_and_its_final_ends_the_wait() {
        let mut t = tracker();
        t.user_started();
        t.final_transcript("One");
        t.interim_transcript("two thr");
        assert_eq!(t.user_stopped(ms(1000)), None);
        assert_eq!(t.deadline(), Some(ms(1500)));
        assert_eq!(
            t.final_transcript("two three").as_deref(),
            Some("One two three")
        );
    }

    #[test]
    fn an_interim_that_never_finalises_is_handed_after_the_wait_and_its_late_final_dropped() {
        let mut t = tracker();
        t.user_started();
        t.interim_transcript("maybe this");
        assert_eq!(t.user_stopped(ms(1000)), None);
        assert_eq!(t.poll(ms(1499)), None);
        assert_eq!(t.poll(ms(1500)).as_deref(), Some("maybe this"));
        assert_eq!(t.final_transcript("maybe this."), None);
        // The next utterance is a turn of its own.
        t.user_started();
        t.final_transcript("Next.");
        assert_eq!(t.user_stopped(ms(3000)).as_deref(), Some("Next."));
    }

    #[test]
    fn an_interim_after_the_finals_stands_in_for_its_final_when_the_wait_runs_out() {
        let mut t = tracker();
        t.user_started();
        t.final_transcript("I would like a pizza.");
        t.interim_transcript("with cheese");
        assert_eq!(t.user_stopped(ms(1000)), None);
        assert_eq!(t.poll(ms(1499)), None);
        assert_eq!(
            t.poll(ms(1500)).as_deref(),
            Some("I would like a pizza. with cheese")
        );
        assert_eq!(t.final_transcript("with cheese."), None, "its late final");
        t.user_started();
        t.final_transcript("Next.");
        assert_eq!(t.user_stopped(ms(3000)).as_deref(), Some("Next."));
    }

    #[test]
    fn a_stood_in_interims_final_is_dropped_when_it_comes_as_the_user_speaks_again() {
        let mut t = tracker();
        let stand_in = |t: &mut UserTurnTracker, at: u64| {
            t.user_started();
            t.final_transcript("I would like a pizza.");
            assert!(t.user_stopped(ms(at)).is_some());
            t.interim_transcript("with cheese");
            assert_eq!(t.take_interim().as_deref(), Some("with cheese"));
            // The user goes on: user_context takes the words back.
            t.user_started();
            t.resume_with("I would like a pizza. with cheese".into());
        };
        stand_in(&mut t, 1000);
        assert_eq!(t.final_transcript("With cheese."), None);
        t.final_transcript("And olives.");
        assert_eq!(
            t.user_stopped(ms(2000)).as_deref(),
            Some("I would like a pizza. with cheese And olives.")
        );
        // Its final running on into the new speech: the new words stay.
        stand_in(&mut t, 3000);
        t.final_transcript("with cheese and olives.");
        assert_eq!(
            t.user_stopped(ms(4000)).as_deref(),
            Some("I would like a pizza. with cheese and olives.")
        );
        // Its final never came: the next final is the new speech's.
        stand_in(&mut t, 5000);
        t.final_transcript("No, a salad.");
        assert_eq!(
            t.user_stopped(ms(6000)).as_deref(),
            Some("I would like a pizza. with cheese No, a salad.")
        );
    }

    #[test]
    fn speech_after_a_stand_in_is_a_turn_even_when_its_final_comes_after_the_stop() {
        let mut t = tracker();
        // A noise's interim stands in when the wait runs out, and its
        // final comes back empty.
        t.user_started();
        t.interim_transcript("hmm");
        t.user_stopped(ms(1000));
        assert_eq!(t.poll(ms(1500)).as_deref(), Some("hmm"));
        assert_eq!(t.final_transcript(""), None);
        // The user speaks; the final comes after the VAD's stop.
        t.user_started();
        assert_eq!(t.user_stopped(ms(3000)), None);
        assert_eq!(
            t.final_transcript("I'd like a pizza.").as_deref(),
            Some("I'd like a pizza.")
        );
        // The stood-in interim's final never came: the next speech's final,
        // after its stop, is that speech's turn.
        t.user_started();
        t.interim_transcript("with cheese");
        t.user_stopped(ms(5000));
        assert_eq!(t.poll(ms(5500)).as_deref(), Some("with cheese"));
        t.user_started();
        assert_eq!(t.user_stopped(ms(7000)), None);
        assert_eq!(
            t.final_transcript("No, a salad.").as_deref(),
            Some("No, a salad.")
        );
        // Its final, the user silent since: dropped, as before.
        t.user_started();
        t.interim_transcript("olives");
        t.user_stopped(ms(9000));
        assert_eq!(t.poll(ms(9500)).as_deref(), Some("olives"));
        assert_eq!(t.final_transcript("Olives."), None);
    }

    #[test]
    fn speech_resuming_during_the_wait_continues_the_turn() {
        let mut t = tracker();
        t.user_started();
        t.interim_transcript("I want");
        t.user_stopped(ms(1000));
        t.user_started();
        assert_eq!(t.poll(ms(2000)), None, "no wait while speaking");
        t.final_transcript("I want");
        t.final_transcript("a pizza");
        assert_eq!(t.user_stopped(ms(2500)).as_deref(), Some("I want a pizza"));
    }

    #[test]
    fn a_turn_taken_back_opens_the_turn_that_continues() {
        let mut t = tracker();
        t.user_started();
        t.final_transcript("I would like");
        let early = t.user_stopped(ms(1000)).unwrap();
        t.user_started();
        t.resume_with(early.clone());
        t.final_transcript("a pizza.");
        assert_eq!(
            t.user_stopped(ms(2000)).as_deref(),
            Some("I would like a pizza.")
        );
        // The continuation's final comes after the stop: waited for, and
        // the words taken back are handed alone only when the wait runs out.
        t.user_started();
        t.resume_with(early);
        assert_eq!(t.user_stopped(ms(3000)), None);
        assert_eq!(
            t.final_transcript("a salad.").as_deref(),
            Some("I would like a salad.")
        );
        t.user_started();
        t.resume_with("Hm".into());
        assert_eq!(t.user_stopped(ms(4000)), None);
        assert_eq!(t.poll(ms(4500)).as_deref(), Some("Hm"));
    }

    #[test]
    fn without_a_vad_every_final_is_a_turn_and_the_end_hands_the_rest() {
        let mut t = tracker();
        assert_eq!(t.final_transcript("First.").as_deref(), Some("First."));
        t.interim_transcript("unfinished");
        assert_eq!(t.finish().as_deref(), Some("unfinished"));
        assert_eq!(t.finish(), None);
        assert_eq!(t.final_transcript("   "), None);
    }
}
