//! [`BargeIn`]: when the user's speech interrupts the bot.
//!
//! The user barges in when they have spoken for at least `min_speech`
//! (measured from where their speech began to the end of its latest
//! speaking chunk) while the bot is speaking, and interruptions are allowed.
//! The guard keeps a cough, a "mm-hm" or a door slam that the VAD took for
//! the start of speech from cutting the bot off: those end before
//! `min_speech`. One utterance interrupts at most once.
//!
//! It lives next to the VAD (the `vad` processor owns one) because that is
//! where both inputs meet: the user's speech is decided there, and the
//! bot's speaking state, which the output transport pushes upstream, passes
//! through it on its way to the transport input. Deciding at the VAD also
//! interrupts as early as the evidence allows, with no hop in between.

use std::time::Duration;

/// The interruption policy of one session. See the module docs.
#[derive(Debug, Clone)]
pub struct BargeIn {
    allowed: bool,
    min_speech: Duration,
    bot_speaking: bool,
    /// The start of the utterance that already interrupted.
    interrupted_by: Option<Duration>,
}

impl BargeIn {
    /// A policy that interrupts (if `allowed`) after `min_speech` of user
    /// speech over the bot.
    pub fn new(allowed: bool, min_speech: Duration) -> Self {
        BargeIn {
            allowed,
            min_speech,
            bot_speaking: false,
            interrupted_by: None,
        }
    }

    /// Whether the user may interrupt at all.
    pub fn set_allowed(&mut self, allowed: bool) {
        self.allowed = allowed;
    }

    /// The bot started or stopped speaking.
    pub fn set_bot_speaking(&mut self, speaking: bool) {
        self.bot_speaking = speaking;
    }

    /// Given the user's current speech as `(start, voiced_until)` session
    /// times, if any: true when the bot should be interrupted now.
    pub fn should_interrupt(&mut self, speech: Option<(Duration, Duration)>) -> bool {
        let Some((start, voiced_until)) = speech else {
            return false;
        };
        let interrupt = self.allowed
            && self.bot_speaking
            && self.interrupted_by != Some(start)
            && voiced_until.saturating_sub(start) >= self.min_speech;
        if interrupt {
            self.interrupted_by = Some(start);
        }
        interrupt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn interrupts_once_speech_over_the_bot_lasts_min_speech() {
        let mut policy = BargeIn::new(true, ms(300));
        policy.set_bot_speaking(true);
        assert!(!policy.should_interrupt(None));
        assert!(!policy.should_interrupt(Some((ms(1000), ms(1250)))));
        assert!(policy.should_interrupt(Some((ms(1000), ms(1300)))));
        assert!(
            !policy.should_interrupt(Some((ms(1000), ms(1400)))),
            "once per utterance"
        );
        assert!(
            policy.should_interrupt(Some((ms(3000), ms(3400)))),
            "a new utterance"
        );
    }

    #[test]
    fn a_cough_a_silent_bot_or_interruptions_off_never_interrupt() {
        let mut cough = BargeIn::new(true, ms(300));
        cough.set_bot_speaking(true);
        // The cough's speech ends at 220 ms; later checks see the same span.
        for _ in 0..5 {
            assert!(!cough.should_interrupt(Some((ms(0), ms(220)))));
        }

        let mut silent_bot = BargeIn::new(true, ms(300));
        assert!(!silent_bot.should_interrupt(Some((ms(0), ms(900)))));
        silent_bot.set_bot_speaking(true);
        assert!(silent_bot.should_interrupt(Some((ms(0), ms(920)))));

        let mut off = BargeIn::new(false, ms(0));
        off.set_bot_speaking(true);
        assert!(!off.should_interrupt(Some((ms(0), ms(5000)))));
    }
}
