//! [`FalseInterruption`]: a barge-in that carried no words resumes the bot.
//!
//! The VAD interrupts the bot on sound alone (a cough held long enough, a
//! "hmm", a door). When the interrupting speech has stopped and no user
//! turn (no words) has come `timeout` later, the interruption was false:
//! the bot says again what the user did not hear, from the interrupted
//! sentence on. Words from the user (a completed user turn, a reply on its
//! way) make it a real interruption. Sans-IO: the session time passed in.

use std::time::Duration;

/// The false-interruption watch of one session. See the module docs.
#[derive(Debug, Clone)]
pub(super) struct FalseInterruption {
    timeout: Duration,
    /// What the bot had left to say when it was interrupted.
    unheard: Option<String>,
    /// When the interrupting speech stopped.
    quiet_since: Option<Duration>,
}

impl FalseInterruption {
    /// A watch resuming the bot when no words came `timeout` after the
    /// interrupting speech stopped.
    pub(super) fn new(timeout: Duration) -> Self {
        FalseInterruption {
            timeout,
            unheard: None,
            quiet_since: None,
        }
    }

    /// The bot was interrupted with `unheard` left to say.
    pub(super) fn interrupted(&mut self, unheard: String) {
        self.unheard = (!unheard.is_empty()).then_some(unheard);
        self.quiet_since = None;
    }

    /// The user speaks.
    pub(super) fn user_started(&mut self) {
        self.quiet_since = None;
    }

    /// The user's speech ended at `end` (session time).
    pub(super) fn user_stopped(&mut self, end: Duration) {
        if self.unheard.is_some() {
            self.quiet_since = Some(end);
        }
    }

    /// The user said something: the interruption was real.
    pub(super) fn words(&mut self) {
        self.unheard = None;
        self.quiet_since = None;
    }

    /// What to say again, once the wait for words has run out at `now`.
    pub(super) fn poll(&mut self, now: Duration) -> Option<String> {
        let since = self.quiet_since?;
        if now < since + self.timeout {
            return None;
        }
        self.quiet_since = None;
        self.unheard.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn no_words_after_the_barge_in_resumes_the_bot_once() {
        let mut watch = FalseInterruption::new(ms(1_000));
        watch.interrupted("The shop opens at nine.".into());
        assert_eq!(watch.poll(ms(5_000)), None, "the user is still speaking");
        watch.user_stopped(ms(2_000));
        assert_eq!(watch.poll(ms(2_999)), None);
        watch.user_started();
        watch.user_stopped(ms(3_500));
        assert_eq!(watch.poll(ms(4_000)), None, "the wait restarts");
        assert_eq!(
            watch.poll(ms(4_500)).as_deref(),
            Some("The shop opens at nine.")
        );
        assert_eq!(watch.poll(ms(9_000)), None);
    }

    #[test]
    fn words_make_it_a_real_interruption() {
        let mut watch = FalseInterruption::new(ms(1_000));
        watch.interrupted("The shop opens at nine.".into());
        watch.user_stopped(ms(2_000));
        watch.words();
        assert_eq!(watch.poll(ms(9_000)), None);
        // Nothing left to say: nothing to resume.
        watch.interrupted(String::new());
        watch.user_stopped(ms(10_000));
        assert_eq!(watch.poll(ms(20_000)), None);
    }
}
