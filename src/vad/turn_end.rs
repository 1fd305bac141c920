//! [`TurnEnd`]: when the user's turn is over, combining every signal at
//! hand; sans-IO, the session time passed in.
//!
//! The VAD's stop (short: `stop_secs` 0.2 in the shipped agents) says the
//! user went quiet, not that they are done: a speaker who hesitates for
//! 400 to 600 ms mid-sentence goes quiet too. The decision weighs:
//!
//! - **the silence so far**, from the end of speech the VAD reported;
//! - **the transcript**: one that ends mid-phrase (no closing punctuation,
//!   or a last word that cannot end a sentence: "and", "the", "to", "um")
//!   says the user is not done;
//! - **a learned end-of-turn model's probability**
//!   ([`EndOfTurnModel`](super::EndOfTurnModel), e.g. Smart Turn), when the
//!   pipeline has one; while it is still computing, the turn is not taken
//!   as done.
//!
//! A turn that looks done (the transcript complete, and the model, if any,
//! at least `end_probability` sure) ends after `complete_secs` of silence;
//! any other turn after `fallback_secs`: the timeout that keeps an unsure
//! decision from waiting blindly, and long enough that a 1 s hesitation is
//! never taken for the end (the VAD reports the user speaking again only
//! after its `start_secs`, so the fallback must cover the hesitation plus
//! that: at 1.2 s, 1 s hesitations were cut off on espeak speech). Between `preemptive_secs` of silence and the
//! end, the decision says [`TurnDecision::Prepare`]: a reply may be
//! prepared (not played) so it is ready the moment the turn ends.
//!
//! Nothing is decided without a transcript: there is nothing to answer.

use std::time::Duration;

/// The tunable parameters of [`TurnEnd`] (`user_context`'s TOML keys of
/// the same names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TurnEndParams {
    /// Silence after which a reply may be prepared. Default 0 (as soon as
    /// the VAD stops and a transcript is at hand).
    pub preemptive_secs: Duration,
    /// Silence after which a turn that looks done ends. Default 0.3 s.
    pub complete_secs: Duration,
    /// Silence after which any turn ends: the fallback. Default 1.5 s.
    pub fallback_secs: Duration,
    /// The model's probability from which a turn looks done. Default 0.5.
    pub end_probability: f32,
}

impl Default for TurnEndParams {
    fn default() -> Self {
        TurnEndParams {
            preemptive_secs: Duration::ZERO,
            complete_secs: Duration::from_millis(300),
            fallback_secs: Duration::from_millis(1_500),
            end_probability: 0.5,
        }
    }
}

/// What the decision says at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnDecision {
    /// The user may go on: do nothing yet.
    Wait,
    /// Not over yet, but a reply may be prepared.
    Prepare,
    /// The turn is over.
    End,
}

/// The model's say on the current pause.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ModelSay {
    /// The pipeline has no model.
    None,
    /// It is computing.
    Pending,
    /// Its probability that the turn is complete.
    Probability(f32),
}

/// The turn-end decision of one session. See the module docs.
#[derive(Debug, Clone)]
pub struct TurnEnd {
    params: TurnEndParams,
    has_model: bool,
    /// Where the user's speech ended, while they are quiet.
    quiet_since: Option<Duration>,
    model: ModelSay,
    /// Whether the transcript so far ends mid-phrase, once there is one.
    mid_phrase: Option<bool>,
}

impl TurnEnd {
    /// A decision with `params`, weighing a model's probability if
    /// `has_model`.
    pub fn new(params: TurnEndParams, has_model: bool) -> Self {
        TurnEnd {
            params,
            has_model,
            quiet_since: None,
            model: ModelSay::None,
            mid_phrase: None,
        }
    }

    /// Whether a pause is being weighed (the user went quiet and the turn
    /// has not ended since).
    pub fn in_pause(&self) -> bool {
        self.quiet_since.is_some()
    }

    /// The parameters.
    pub fn params(&self) -> &TurnEndParams {
        &self.params
    }

    /// The user speaks (again): the pause, and what was known of it, are
    /// over. The transcript is kept: the turn goes on.
    pub fn user_spoke(&mut self) {
        self.quiet_since = None;
        self.model = ModelSay::None;
    }

    /// The VAD says the user's speech ended at `end` (session time). With a
    /// model, its probability is awaited from now on.
    pub fn user_quiet(&mut self, end: Duration) {
        self.quiet_since = Some(end);
        self.model = if self.has_model {
            ModelSay::Pending
        } else {
            ModelSay::None
        };
    }

    /// The model's probability that the turn is complete, for this pause.
    pub fn model_says(&mut self, probability: f32) {
        if self.quiet_since.is_some() && self.has_model {
            self.model = ModelSay::Probability(probability);
        }
    }

    /// The transcript of the whole turn so far.
    pub fn transcript(&mut self, text: &str) {
        self.mid_phrase = Some(ends_mid_phrase(text));
    }

    /// A new turn starts: forget the last one's transcript.
    pub fn reset(&mut self) {
        self.quiet_since = None;
        self.model = ModelSay::None;
        self.mid_phrase = None;
    }

    /// Whether the turn looks done, from what is known now.
    fn looks_done(&self) -> bool {
        let model_done = match self.model {
            ModelSay::None => true,
            ModelSay::Pending => false,
            ModelSay::Probability(p) => p >= self.params.end_probability,
        };
        model_done && self.mid_phrase == Some(false)
    }

    /// The decision at session time `now`.
    pub fn decide(&self, now: Duration) -> TurnDecision {
        let (Some(since), Some(_)) = (self.quiet_since, self.mid_phrase) else {
            return TurnDecision::Wait;
        };
        let silence = now.saturating_sub(since);
        let needed = if self.looks_done() {
            self.params.complete_secs
        } else {
            self.params.fallback_secs
        };
        if silence >= needed {
            TurnDecision::End
        } else if silence >= self.params.preemptive_secs {
            TurnDecision::Prepare
        } else {
            TurnDecision::Wait
        }
    }

    /// When the decision may next change, if the user stays quiet.
    pub fn next_change(&self) -> Option<Duration> {
        let since = self.quiet_since?;
        self.mid_phrase?;
        let needed = if self.looks_done() {
            self.params.complete_secs
        } else {
            self.params.fallback_secs
        };
        Some(since + needed)
    }
}

/// Words that do not end an English sentence: a transcript ending in one
/// was cut by a pause. Articles and possessives wanting a noun,
/// conjunctions wanting what they join, the infinitive's "to" (an
/// elliptical "I'd love to." waits for the fallback, a smaller cost than
/// cutting off "I want to"), hesitations. Not prepositions: questions end
/// on them ("Where are you from?", "What is it about?").
const CONTINUING_WORDS: &[&str] = &[
    "a", "an", "the", "my", "your", "our", "their", "its", "and", "or", "nor", "but", "because",
    "if", "unless", "although", "whereas", "whether", "than", "to", "um", "uh", "er", "erm",
];

/// Whether `text` ends mid-phrase: without closing punctuation, with a
/// trailing ellipsis, comma or dash, or on a word that cannot end a
/// sentence.
pub fn ends_mid_phrase(text: &str) -> bool {
    let text = text.trim_end();
    if text.ends_with("...") || text.ends_with('…') {
        return true;
    }
    let Some(last) = text.chars().last() else {
        return true;
    };
    if !matches!(last, '.' | '?' | '!') {
        return true;
    }
    let last_word = text
        .trim_end_matches(['.', '?', '!'])
        .rsplit(|c: char| c.is_whitespace())
        .next()
        .unwrap_or("")
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase();
    // A question may end on "to" ("Who am I speaking to?").
    if last == '?' && last_word == "to" {
        return false;
    }
    CONTINUING_WORDS.contains(&last_word.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn params() -> TurnEndParams {
        TurnEndParams {
            preemptive_secs: ms(100),
            complete_secs: ms(300),
            fallback_secs: ms(1_200),
            end_probability: 0.5,
        }
    }

    #[test]
    fn transcripts_that_end_mid_phrase() {
        for text in [
            "I would like to",
            "I would like",
            "Book a table for...",
            "Well, um.",
            "and the",
            "Send it to the.",
            "I was going to say um.",
            "",
            "So I was thinking,",
        ] {
            assert!(ends_mid_phrase(text), "{text:?}");
        }
        for text in [
            "I would like a pizza.",
            "What time is it?",
            "Yes!",
            "Thank you. ",
            "What is it about?",
        ] {
            assert!(!ends_mid_phrase(text), "{text:?}");
        }
    }

    #[test]
    fn to_and_the_conjunctions_wanting_a_clause_do_not_end_a_sentence_prepositions_may() {
        for text in [
            "I would like to.",
            "Book it unless.",
            "Ask them whether.",
            "Neither the red nor.",
            "It lost its.",
        ] {
            assert!(ends_mid_phrase(text), "{text:?}");
        }
        for text in [
            "Where are you from?",
            "What is it for?",
            "Who is it with?",
            "Who am I speaking to?",
        ] {
            assert!(!ends_mid_phrase(text), "{text:?}");
        }
    }

    #[test]
    fn a_complete_transcript_ends_the_turn_after_complete_secs_and_prepares_before() {
        let mut turn = TurnEnd::new(params(), false);
        turn.user_quiet(ms(1_000));
        assert_eq!(turn.decide(ms(1_200)), TurnDecision::Wait, "no transcript");
        turn.transcript("I would like a pizza.");
        assert_eq!(turn.decide(ms(1_050)), TurnDecision::Wait);
        assert_eq!(turn.decide(ms(1_100)), TurnDecision::Prepare);
        assert_eq!(turn.next_change(), Some(ms(1_300)));
        assert_eq!(turn.decide(ms(1_299)), TurnDecision::Prepare);
        assert_eq!(turn.decide(ms(1_300)), TurnDecision::End);
    }

    #[test]
    fn a_hesitation_mid_phrase_waits_for_the_fallback() {
        let mut turn = TurnEnd::new(params(), false);
        turn.user_quiet(ms(1_000));
        turn.transcript("I would like to");
        assert_eq!(turn.decide(ms(1_600)), TurnDecision::Prepare, "600 ms");
        assert_eq!(turn.decide(ms(2_199)), TurnDecision::Prepare);
        assert_eq!(turn.decide(ms(2_200)), TurnDecision::End, "the fallback");
        // The user resumes: nothing is decided while they speak.
        turn.user_spoke();
        assert_eq!(turn.decide(ms(5_000)), TurnDecision::Wait);
        turn.user_quiet(ms(5_000));
        turn.transcript("I would like to order a pizza.");
        assert_eq!(turn.decide(ms(5_300)), TurnDecision::End);
    }

    #[test]
    fn the_model_must_say_done_before_the_short_wait_applies() {
        let mut turn = TurnEnd::new(params(), true);
        turn.transcript("I would like a pizza.");
        turn.user_quiet(ms(1_000));
        assert_eq!(turn.decide(ms(1_500)), TurnDecision::Prepare, "pending");
        turn.model_says(0.2);
        assert_eq!(turn.decide(ms(1_500)), TurnDecision::Prepare, "not done");
        assert_eq!(turn.decide(ms(2_200)), TurnDecision::End, "the fallback");
        turn.user_spoke();
        turn.model_says(0.9);
        turn.user_quiet(ms(3_000));
        turn.model_says(0.9);
        assert_eq!(turn.decide(ms(3_300)), TurnDecision::End);
        // A sure model does not override a transcript cut mid-phrase.
        turn.user_spoke();
        turn.transcript("I would like a pizza and");
        turn.user_quiet(ms(4_000));
        turn.model_says(0.99);
        assert_eq!(turn.decide(ms(4_300)), TurnDecision::Prepare);
        turn.reset();
        assert_eq!(turn.decide(ms(9_000)), TurnDecision::Wait);
    }
}
