//! Playback confirmations, without I/O: the marks we sent after each bot
//! utterance and are waiting for Twilio to echo.
//!
//! Twilio plays audio in the order it was sent and echoes a mark once the
//! audio before it has played, so an echo confirms that mark and every
//! earlier one. After a `clear`, Twilio echoes the marks still pending;
//! by then they are forgotten, and their echoes are ignored. A mark that is
//! not echoed within [`MarkTracker::TIMEOUT`] of when its audio should have
//! finished is given up on, so a far end that never echoes cannot keep the
//! bot "speaking".

use std::collections::VecDeque;
use std::time::Duration;

/// What every mark's name starts with.
const MARK_PREFIX: &str = "voxpipe-";

/// The marks waiting for an echo.
#[derive(Debug, Default)]
pub struct MarkTracker {
    next: u64,
    /// Name and give-up time, oldest first.
    pending: VecDeque<(String, Duration)>,
    given_up: u64,
}

impl MarkTracker {
    /// How long past the expected end of its audio a mark may take to come
    /// back: Twilio's buffer plus the network, with room to spare.
    pub const TIMEOUT: Duration = Duration::from_secs(2);

    /// No marks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `name` has the form of the marks this tracker names
    /// (`voxpipe-` and a number), so that an echo of anything else can be
    /// dropped unread: a far end may send marks of its own, each as long as
    /// a message may be.
    pub fn could_be_ours(name: &str) -> bool {
        name.strip_prefix(MARK_PREFIX).is_some_and(|number| {
            (1..=20).contains(&number.len()) && number.bytes().all(|b| b.is_ascii_digit())
        })
    }

    /// A new mark after audio that should finish playing at `audio_end`;
    /// returns its name, to send.
    pub fn sent(&mut self, audio_end: Duration) -> String {
        self.next += 1;
        let name = format!("{MARK_PREFIX}{}", self.next);
        self.pending
            .push_back((name.clone(), audio_end + Self::TIMEOUT));
        name
    }

    /// Twilio echoed `name`: it and every earlier mark have played. Returns
    /// false for a name that is not pending (cleared, given up, or unknown).
    pub fn echoed(&mut self, name: &str) -> bool {
        match self.pending.iter().position(|(n, _)| n == name) {
            Some(index) => {
                self.pending.drain(..=index);
                true
            }
            None => false,
        }
    }

    /// Forgets every pending mark (the audio was cleared).
    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// Whether audio we sent is still playing at `now`: some mark is
    /// pending and not yet given up on.
    pub fn playing(&mut self, now: Duration) -> bool {
        while let Some((name, give_up)) = self.pending.front() {
            if *give_up > now {
                return true;
            }
            tracing::warn!(
                mark = %name,
                "Twilio did not echo a mark in time; assuming its audio has played"
            );
            self.given_up += 1;
            self.pending.pop_front();
        }
        false
    }

    /// How many marks were given up on.
    pub fn given_up(&self) -> u64 {
        self.given_up
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn an_echo_confirms_its_mark_and_every_earlier_one() {
        let mut marks = MarkTracker::new();
        let first = marks.sent(ms(100));
        let second = marks.sent(ms(200));
        assert!(marks.playing(ms(150)));
        assert!(marks.echoed(&second));
        assert!(!marks.playing(ms(210)));
        assert!(!marks.echoed(&first), "already confirmed by the later echo");
    }

    #[test]
    fn echoes_of_cleared_marks_are_ignored() {
        let mut marks = MarkTracker::new();
        let name = marks.sent(ms(100));
        marks.clear();
        assert!(!marks.playing(ms(100)));
        assert!(!marks.echoed(&name));
    }

    #[test]
    fn a_mark_that_never_comes_back_is_given_up_on() {
        let mut marks = MarkTracker::new();
        marks.sent(ms(100));
        assert!(marks.playing(ms(100) + MarkTracker::TIMEOUT - ms(1)));
        assert!(!marks.playing(ms(100) + MarkTracker::TIMEOUT));
        assert_eq!(marks.given_up(), 1);
    }

    #[test]
    fn only_names_of_our_form_could_be_ours() {
        let mut marks = MarkTracker::new();
        let name = marks.sent(Duration::ZERO);
        assert!(MarkTracker::could_be_ours(&name));
        assert!(MarkTracker::could_be_ours("voxpipe-18446744073709551615"));
        for foreign in [
            "",
            "voxpipe-",
            "voxpipe-1x",
            "other-1",
            "x".repeat(60_000).as_str(),
        ] {
            assert!(!MarkTracker::could_be_ours(foreign), "{foreign:.20}");
        }
        assert!(!MarkTracker::could_be_ours(&format!(
            "voxpipe-{}",
            "9".repeat(30)
        )));
    }
}
