//! [`AssistantTurnTracker`]: what the bot actually said in a turn, without
//! I/O.
//!
//! A turn opens with the LLM's response (or a TTS utterance of its own) and
//! completes when its audio has played out, or at once when the response
//! ended without audio. The tracker counts the audio the TTS produced for
//! the turn and places each [`SpokenText`] in it. When the user interrupts,
//! the output transport reports how much queued audio it dropped (`cut`):
//! the audio heard is what was produced minus what was cut, and the turn
//! keeps the words that start before that point. A sentence without word
//! timing is spread evenly over its audio (until the next spoken text), so
//! its words are kept in proportion to its audio heard: an estimate, but
//! never more than the words whose sound could have been heard.
//!
//! A turn with no spoken text at all (a pipeline without TTS) keeps the
//! LLM's text.

use std::time::Duration;

use crate::frame::{SpokenText, SpokenTiming};
use crate::services::tts::ends_sentence;

use crate::conversation::{Reflection, ToolCall};

/// What a completed assistant turn said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedTurn {
    /// What the user heard.
    pub text: String,
    /// The user interrupted the turn.
    pub interrupted: bool,
    /// The tools the turn called.
    pub tool_calls: Vec<ToolCall>,
    /// The specialist agent that answered, if the LLM has agents.
    pub agent: Option<String>,
    /// The reviewer's verdict, if the LLM reflects.
    pub reflection: Option<Reflection>,
}

#[derive(Debug, Default)]
struct OpenTurn {
    llm_text: String,
    spoken: Vec<SpokenText>,
    audio: Duration,
    tool_calls: Vec<ToolCall>,
    agent: Option<String>,
    reflection: Option<Reflection>,
    /// How long the bot has spoken since the turn opened, speaking now
    /// not counted (see [`AssistantTurnTracker::far_end_gone`]).
    played: Duration,
    /// The audio of the turn before still to play when this one opened:
    /// the first of `played` is that turn's tail, not this one's.
    owed: Duration,
    /// Opened by a TTS utterance rather than an LLM response.
    tts_only: bool,
    ended: bool,
    interrupted: bool,
}

/// Follows one assistant turn at a time. See the module docs.
#[derive(Debug, Default)]
pub struct AssistantTurnTracker {
    turn: Option<OpenTurn>,
    bot_speaking: bool,
    /// Session time since which the bot speaks for the open turn.
    speaking_since: Option<Duration>,
    /// The bot stopped speaking after the last audio was produced.
    stopped_since_audio: bool,
}

impl AssistantTurnTracker {
    /// A tracker with no turn open.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a turn is open.
    pub fn is_open(&self) -> bool {
        self.turn.is_some()
    }

    /// An LLM response starts a turn at session time `now`; a turn still
    /// open (its audio not yet confirmed played) completes first, and what
    /// is left of its audio plays before the new turn's.
    pub fn response_started(&mut self, now: Duration) -> Option<CompletedTurn> {
        let previous = self.turn.take();
        let owed = previous
            .as_ref()
            .map_or(Duration::ZERO, |turn| self.still_to_play(turn, now));
        self.open(
            OpenTurn {
                owed,
                ..OpenTurn::default()
            },
            now,
        );
        previous.map(|turn| complete(turn, None))
    }

    /// Synthesis starts at session time `now`: opens a turn of its own if
    /// no response is open.
    pub fn tts_started(&mut self, now: Duration) {
        if self.turn.is_none() {
            let turn = OpenTurn {
                tts_only: true,
                ..OpenTurn::default()
            };
            self.open(turn, now);
        }
    }

    /// What the bot speaks from `now` on plays for `turn`.
    fn open(&mut self, turn: OpenTurn, now: Duration) {
        self.turn = Some(turn);
        if self.bot_speaking {
            self.speaking_since = Some(now);
        }
    }

    /// How much of `turn`'s audio has not played by `now`.
    fn still_to_play(&self, turn: &OpenTurn, now: Duration) -> Duration {
        let speaking = self
            .speaking_since
            .map_or(Duration::ZERO, |since| now.saturating_sub(since));
        turn.audio.saturating_sub(turn.played + speaking)
    }

    /// LLM text of the open turn.
    pub fn llm_text(&mut self, text: &str) {
        if let Some(turn) = &mut self.turn {
            turn.llm_text.push_str(text);
        }
    }

    /// Spoken text of the open turn.
    pub fn spoken(&mut self, spoken: SpokenText) {
        if let Some(turn) = &mut self.turn {
            turn.spoken.push(spoken);
        }
    }

    /// Audio of the open turn, on its way to the output.
    pub fn audio(&mut self, duration: Duration) {
        if let Some(turn) = &mut self.turn {
            turn.audio += duration;
            self.stopped_since_audio = false;
        }
    }

    /// A tool the open turn called.
    pub fn tool_call(&mut self, call: ToolCall) {
        if let Some(turn) = &mut self.turn {
            turn.tool_calls.push(call);
        }
    }

    /// The specialist agent answering the open turn.
    pub fn agent_selected(&mut self, agent: &str) {
        if let Some(turn) = &mut self.turn {
            turn.agent = Some(agent.to_owned());
        }
    }

    /// The reviewer's verdict on the open turn's answer.
    pub fn reviewed(&mut self, reflection: Reflection) {
        if let Some(turn) = &mut self.turn {
            turn.reflection = Some(reflection);
        }
    }

    /// The LLM response ended.
    pub fn response_ended(&mut self) -> Option<CompletedTurn> {
        let turn = self.turn.as_mut()?;
        turn.ended = true;
        self.complete_if_played()
    }

    /// Synthesis ended: ends a TTS-only turn.
    pub fn tts_stopped(&mut self) -> Option<CompletedTurn> {
        let turn = self.turn.as_mut()?;
        if turn.tts_only {
            turn.ended = true;
        }
        self.complete_if_played()
    }

    /// The bot's audio started playing at session time `now`.
    pub fn bot_started_speaking(&mut self, now: Duration) {
        self.bot_speaking = true;
        self.speaking_since = Some(now);
    }

    /// The bot's audio finished playing at session time `now`.
    pub fn bot_stopped_speaking(&mut self, now: Duration) -> Option<CompletedTurn> {
        self.bot_speaking = false;
        self.stopped_since_audio = true;
        if let (Some(since), Some(turn)) = (self.speaking_since.take(), &mut self.turn) {
            turn.played += now.saturating_sub(since);
        }
        self.complete_if_played()
    }

    /// The far end went away at session time `now` (hung up, disconnected,
    /// timed out): the audio not yet played will never be heard, so the
    /// open turn completes with what played, an estimate from the time the
    /// bot spoke since the turn opened (less the tail of the turn before),
    /// and is marked interrupted if that was not all of it.
    pub fn far_end_gone(&mut self, now: Duration) -> Option<CompletedTurn> {
        let mut turn = self.turn.take()?;
        if let Some(since) = self.speaking_since.take() {
            turn.played += now.saturating_sub(since);
        }
        self.bot_speaking = false;
        let heard = turn.played.saturating_sub(turn.owed).min(turn.audio);
        turn.interrupted |= heard < turn.audio;
        Some(complete(turn, Some(heard)))
    }

    /// An interruption went by: the turn is cut, by how much the output
    /// transport will say.
    pub fn interrupted(&mut self) {
        if let Some(turn) = &mut self.turn {
            turn.interrupted = true;
        }
    }

    /// What the user did not hear of the open turn if `cut` of its audio
    /// is dropped: every spoken piece that had not finished playing (or
    /// had not started: a sentence's text may come before its audio), the
    /// interrupted sentence from its start (what a resumed bot says again).
    /// With word timing, the interrupted word's sentence starts after the
    /// last word before it that ends a sentence.
    pub fn unheard(&self, cut: Duration) -> String {
        let Some(turn) = &self.turn else {
            return String::new();
        };
        let spoken = &turn.spoken;
        let heard = turn.audio.saturating_sub(cut);
        let unplayed = |i: usize, piece: &SpokenText| {
            let end = spoken.get(i + 1).map_or(turn.audio, |next| next.start);
            end > heard || piece.start >= heard
        };
        let Some(mut from) = spoken.iter().enumerate().position(|(i, p)| unplayed(i, p)) else {
            return String::new();
        };
        while from > 0
            && spoken[from].timing == SpokenTiming::Word
            && spoken[from - 1].timing == SpokenTiming::Word
            && !ends_sentence(&spoken[from - 1].text, &spoken[from].text)
        {
            from -= 1;
        }
        let words: Vec<&str> = spoken[from..]
            .iter()
            .flat_map(|piece| piece.text.split_whitespace())
            .collect();
        words.join(" ")
    }

    /// The output transport dropped `cut` of queued audio on an
    /// interruption: the turn completes with what was heard.
    pub fn bot_interrupted(&mut self, cut: Duration) -> Option<CompletedTurn> {
        self.bot_speaking = false;
        let mut turn = self.turn.take()?;
        turn.interrupted = true;
        let heard = turn.audio.saturating_sub(cut);
        Some(complete(turn, Some(heard)))
    }

    /// The session ends: the open turn completes as it stands (its audio
    /// plays out before the session ends).
    pub fn finish(&mut self) -> Option<CompletedTurn> {
        self.turn.take().map(|t| complete(t, None))
    }

    fn complete_if_played(&mut self) -> Option<CompletedTurn> {
        let turn = self.turn.as_ref()?;
        let played = turn.audio.is_zero() || (!self.bot_speaking && self.stopped_since_audio);
        if turn.ended && !turn.interrupted && played {
            return self.turn.take().map(|t| complete(t, None));
        }
        None
    }
}

fn complete(turn: OpenTurn, heard: Option<Duration>) -> CompletedTurn {
    // Text that never became audio (no TTS in the pipeline) was still shown.
    let text = if turn.spoken.is_empty() {
        turn.llm_text.trim().to_owned()
    } else {
        heard_text(&turn.spoken, heard, turn.audio)
    };
    CompletedTurn {
        text,
        interrupted: turn.interrupted,
        tool_calls: turn.tool_calls,
        agent: turn.agent,
        reflection: turn.reflection,
    }
}

/// The words of `spoken` heard in the first `heard` of `total` audio (all of
/// them when `heard` is `None`). See the module docs.
pub fn heard_text(spoken: &[SpokenText], heard: Option<Duration>, total: Duration) -> String {
    let mut words: Vec<&str> = Vec::new();
    for (i, piece) in spoken.iter().enumerate() {
        let Some(heard) = heard else {
            words.extend(piece.text.split_whitespace());
            continue;
        };
        // A piece starting where the audio heard ends was not heard, even
        // with nothing cut: a sentence's text may come before its audio.
        if piece.start >= heard {
            continue;
        }
        match piece.timing {
            SpokenTiming::Word => words.extend(piece.text.split_whitespace()),
            SpokenTiming::Sentence => {
                let end = spoken
                    .get(i + 1)
                    .map_or(total, |next| next.start)
                    .max(piece.start);
                let all: Vec<&str> = piece.text.split_whitespace().collect();
                if heard >= end || end == piece.start {
                    words.extend(all);
                } else {
                    let share =
                        (heard - piece.start).as_secs_f64() / (end - piece.start).as_secs_f64();
                    let keep = (share * all.len() as f64).floor() as usize;
                    words.extend(&all[..keep.min(all.len())]);
                }
            }
        }
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unheard_part_starts_with_the_interrupted_sentence() {
        let mut t = AssistantTurnTracker::new();
        t.response_started(Duration::ZERO);
        for (text, at) in [("It is ten.", 0), ("The shop opens at nine.", 1_000)] {
            t.spoken(SpokenText {
                text: text.into(),
                start: Duration::from_millis(at),
                timing: SpokenTiming::Sentence,
            });
        }
        t.audio(Duration::from_millis(2_000));
        assert_eq!(
            t.unheard(Duration::from_millis(500)),
            "The shop opens at nine."
        );
        assert_eq!(
            t.unheard(Duration::from_millis(1_500)),
            "It is ten. The shop opens at nine."
        );
        assert_eq!(t.unheard(Duration::ZERO), "");
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_sentence_whose_text_came_before_its_audio_is_neither_heard_nor_skipped_on_resume() {
        // An HTTP TTS sends a sentence's text when its reply's headers
        // come: the user interrupts before any of its audio is produced,
        // so nothing is cut and the heard audio is all of it.
        let mut t = AssistantTurnTracker::new();
        t.response_started(Duration::ZERO);
        t.spoken(sentence("It is ten.", 0));
        t.audio(ms(1_000));
        t.spoken(sentence("The shop opens at nine.", 1_000));
        assert_eq!(t.unheard(Duration::ZERO), "The shop opens at nine.");
        let turn = t.bot_interrupted(Duration::ZERO).unwrap();
        assert_eq!(turn.text, "It is ten.");
        assert!(turn.interrupted);
        // Before the first audio.
        t.response_started(Duration::ZERO);
        t.spoken(sentence("Hello.", 0));
        assert_eq!(t.unheard(Duration::ZERO), "Hello.");
        assert_eq!(t.bot_interrupted(Duration::ZERO).unwrap().text, "");
    }

    #[test]
    fn with_timed_words_the_unheard_part_starts_with_the_interrupted_sentence() {
        let mut t = AssistantTurnTracker::new();
        t.response_started(Duration::ZERO);
        for (text, at) in [
            ("Dr.", 0),
            ("Smith", 200),
            ("is", 400),
            ("in.", 500),
            ("The", 700),
            ("shop", 900),
            ("opens", 1_100),
            ("at", 1_300),
            ("nine.", 1_400),
        ] {
            t.spoken(word(text, at));
        }
        t.audio(ms(1_800));
        // Cut in "at": the sentence from "The".
        assert_eq!(t.unheard(ms(450)), "The shop opens at nine.");
        // Cut in "The" itself, and in the first sentence past "Dr.".
        assert_eq!(t.unheard(ms(1_000)), "The shop opens at nine.");
        assert_eq!(
            t.unheard(ms(1_500)),
            "Dr. Smith is in. The shop opens at nine."
        );
        assert_eq!(t.unheard(Duration::ZERO), "");
        // What was heard is still only the words before the cut.
        assert_eq!(
            t.bot_interrupted(ms(450)).unwrap().text,
            "Dr. Smith is in. The shop opens at"
        );
    }

    fn sentence(text: &str, start: u64) -> SpokenText {
        SpokenText {
            text: text.into(),
            start: ms(start),
            timing: SpokenTiming::Sentence,
        }
    }

    fn word(text: &str, start: u64) -> SpokenText {
        SpokenText {
            text: text.into(),
            start: ms(start),
            timing: SpokenTiming::Word,
        }
    }

    #[test]
    fn timed_words_are_kept_up_to_the_point_heard() {
        let spoken = [
            word("It", 0),
            word("is", 200),
            word("sunny", 400),
            word("today.", 800),
        ];
        assert_eq!(heard_text(&spoken, Some(ms(450)), ms(1200)), "It is sunny");
        assert_eq!(heard_text(&spoken, None, ms(1200)), "It is sunny today.");
        assert_eq!(heard_text(&spoken, Some(ms(0)), ms(1200)), "");
    }

    #[test]
    fn untimed_sentences_are_kept_in_proportion_to_their_audio_heard() {
        let spoken = [
            sentence("Dr. Smith is in.", 0),
            sentence("He will see you at three thirty today.", 1000),
        ];
        assert_eq!(
            heard_text(&spoken, Some(ms(1500)), ms(2000)),
            "Dr. Smith is in. He will see you"
        );
        assert_eq!(heard_text(&spoken, Some(ms(999)), ms(2000)), "Dr. Smith is");
        assert_eq!(
            heard_text(&spoken, Some(ms(2000)), ms(2000)),
            "Dr. Smith is in. He will see you at three thirty today."
        );
    }

    #[test]
    fn a_far_end_gone_mid_answer_heard_only_what_played() {
        let mut t = AssistantTurnTracker::new();
        t.response_started(ms(1_000));
        t.spoken(word("We", 0));
        t.spoken(word("can", 300));
        t.spoken(word("offer", 600));
        t.spoken(word("you", 900));
        t.spoken(word("more.", 1_200));
        t.audio(ms(1_500));
        t.bot_started_speaking(ms(1_100));
        // The caller hangs up 700 ms into the answer.
        let turn = t.far_end_gone(ms(1_800)).unwrap();
        assert_eq!(turn.text, "We can offer");
        assert!(turn.interrupted);
        assert!(!t.is_open());
        // A turn that had played out is heard in full.
        t.response_started(ms(2_000));
        t.spoken(word("Bye.", 0));
        t.audio(ms(400));
        t.bot_started_speaking(ms(2_000));
        assert_eq!(t.bot_stopped_speaking(ms(2_400)), None, "not ended yet");
        let turn = t.far_end_gone(ms(3_000)).unwrap();
        assert_eq!(turn.text, "Bye.");
        assert!(!turn.interrupted);
    }

    #[test]
    fn a_turn_opened_while_the_last_one_plays_counts_from_its_opening() {
        let mut t = AssistantTurnTracker::new();
        t.bot_started_speaking(ms(0));
        t.response_started(ms(5_000));
        t.spoken(word("Sure,", 0));
        t.spoken(word("one", 500));
        t.spoken(word("moment.", 1_000));
        t.audio(ms(1_500));
        let turn = t.far_end_gone(ms(5_600)).unwrap();
        assert_eq!(turn.text, "Sure, one");
        assert!(turn.interrupted);
    }

    #[test]
    fn a_turn_opened_while_the_last_one_plays_hears_that_tail_first() {
        let mut t = AssistantTurnTracker::new();
        t.response_started(ms(0));
        t.spoken(word("Done.", 0));
        t.audio(ms(1_000));
        t.bot_started_speaking(ms(0));
        // The next answer starts with 600 ms of the last one still to play.
        assert_eq!(t.response_started(ms(400)).unwrap().text, "Done.");
        t.spoken(word("Sure,", 0));
        t.spoken(word("one", 500));
        t.spoken(word("moment.", 1_000));
        t.audio(ms(1_500));
        // 1,000 ms later, 400 of them this answer's.
        let turn = t.far_end_gone(ms(1_400)).unwrap();
        assert_eq!(turn.text, "Sure,");
        assert!(turn.interrupted);
    }

    #[test]
    fn a_turn_completes_once_its_audio_has_played() {
        let mut t = AssistantTurnTracker::new();
        assert_eq!(t.response_started(Duration::ZERO), None);
        t.spoken(sentence("Hello there.", 0));
        t.audio(ms(800));
        t.bot_started_speaking(Duration::ZERO);
        assert_eq!(t.response_ended(), None, "still playing");
        let turn = t.bot_stopped_speaking(Duration::ZERO).unwrap();
        assert_eq!(turn.text, "Hello there.");
        assert!(!turn.interrupted);
        assert!(!t.is_open());
    }

    #[test]
    fn audio_played_out_before_the_response_ended_completes_at_the_end() {
        let mut t = AssistantTurnTracker::new();
        t.response_started(Duration::ZERO);
        t.spoken(sentence("Let me check.", 0));
        t.audio(ms(600));
        t.bot_started_speaking(Duration::ZERO);
        assert_eq!(t.bot_stopped_speaking(Duration::ZERO), None);
        t.tool_call(ToolCall {
            id: "c".into(),
            name: "lookup".into(),
            arguments: "{}".into(),
        });
        let turn = t.response_ended().unwrap();
        assert_eq!(turn.text, "Let me check.");
        assert_eq!(turn.tool_calls.len(), 1);
    }

    #[test]
    fn an_interrupted_turn_keeps_what_was_heard() {
        let mut t = AssistantTurnTracker::new();
        t.response_started(Duration::ZERO);
        t.spoken(word("One", 0));
        t.spoken(word("two", 500));
        t.spoken(word("three.", 1000));
        t.audio(ms(1500));
        t.bot_started_speaking(Duration::ZERO);
        t.response_ended();
        t.interrupted();
        assert_eq!(
            t.bot_stopped_speaking(Duration::ZERO),
            None,
            "waits for the cut"
        );
        let turn = t.bot_interrupted(ms(900)).unwrap();
        assert_eq!(turn.text, "One two");
        assert!(turn.interrupted);
    }

    #[test]
    fn text_without_speech_is_kept_and_a_response_without_audio_completes_at_once() {
        let mut t = AssistantTurnTracker::new();
        t.response_started(Duration::ZERO);
        t.llm_text("Shown ");
        t.llm_text("only.");
        assert_eq!(t.response_ended().unwrap().text, "Shown only.");
        // A TTS utterance of its own is a turn too.
        t.tts_started(Duration::ZERO);
        t.spoken(sentence("Welcome!", 0));
        assert_eq!(t.tts_stopped().unwrap().text, "Welcome!");
    }
}
