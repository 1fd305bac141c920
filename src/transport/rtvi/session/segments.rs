//! [`Segments`]: what the bot says, as `bot-output` segments, without I/O.
//!
//! Each piece of spoken text (a `tts_text` event) is announced as a
//! segment (protocol 2 `new`, 1.x `spoken` false) and marked spoken
//! (`completed`, `spoken` true) when the bot stops speaking; an
//! interruption drops what it cut, never marked spoken.
//!
//! A word-timing TTS gives a protocol 2 client the sentences its words
//! make (a segment a word, client-react would show the words run
//! together), and each sentence's progress as its words are heard
//! (`bot_word_heard`, which the output transport reports as the playout
//! reaches each word): a `bot-output` `in-progress` per word, `completed`
//! at the last, as Pipecat 1.4 sends them from its output transport
//! (`AggregatedTextProgressFrame`, built by `AggregatedFrameSequencer.
//! process_word` and sent by `RTVIObserver._handle_aggregated_progress`).
//! A sentence is only known once the first word of the next one comes (or
//! the TTS stops): words heard before that wait for their sentence's `new`,
//! and follow it at once. Such a segment is marked spoken by its words,
//! not when the bot stops speaking (the TTS may already have announced the
//! next response's first sentence, still unheard, or the bot may have
//! paused mid-sentence while the TTS fell behind), unless the bot stopped
//! twice with words of it unheard (they were never reported).

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::{Value, json};

use super::super::outbound::{bot_output, bot_output_progress};
use crate::services::tts::SentenceSplitter;

/// The most segments announced and not yet spoken; past it the oldest is
/// marked spoken at once.
const MAX_OPEN: usize = 256;

/// The most words of a word-timing TTS awaiting their sentence or their
/// hearing; past it the oldest is forgotten.
const MAX_WORDS: usize = 1_024;

/// A segment announced and not yet spoken.
struct OpenSegment {
    id: u64,
    /// The `tts_text` fields it was announced with (`text`, `timing`).
    fields: Value,
    /// Marked spoken by its words (protocol 2, word timing).
    by_words: bool,
    /// Some of its words were heard.
    begun: bool,
    /// The bot stopped speaking once since it was announced, some of its
    /// words unheard.
    waited: bool,
}

/// A word of a word-timing TTS, until it is heard and its sentence known.
struct Word {
    text: String,
    heard: bool,
    /// Its segment, the segment's text and where the word ends in it.
    place: Option<(u64, Arc<str>, usize)>,
}

/// A call's `bot-output` segments. See the module docs.
pub(super) struct Segments {
    next_id: u64,
    open: VecDeque<OpenSegment>,
    /// Words since the last whole sentence.
    sentences: SentenceSplitter,
    /// Words not yet both heard and placed in their sentence, oldest first.
    words: VecDeque<Word>,
}

impl Segments {
    pub(super) fn new() -> Self {
        Segments {
            next_id: 1,
            open: VecDeque::new(),
            sentences: SentenceSplitter::new(),
            words: VecDeque::new(),
        }
    }

    /// Spoken text (a `tts_text` event's fields) for a client of protocol
    /// 1 (`legacy`) or 2; the messages to send.
    pub(super) fn spoken(&mut self, fields: &Value, legacy: bool) -> Vec<Value> {
        let mut out = Vec::new();
        if legacy || fields["timing"] != "word" {
            self.announce(fields.clone(), false, legacy, &mut out);
            return out;
        }
        let word = fields["text"].as_str().unwrap_or_default().trim();
        if !word.is_empty() {
            if self.words.len() == MAX_WORDS {
                self.words.pop_front();
            }
            self.words.push_back(Word {
                text: word.to_owned(),
                heard: false,
                place: None,
            });
        }
        for sentence in self.sentences.push(&format!("{word} ")) {
            self.announce_sentence(sentence, &mut out);
        }
        out
    }

    /// The response's audio ended (`tts_stopped`): its last words make a
    /// sentence.
    pub(super) fn audio_ended(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        if let Some(rest) = self.sentences.finish() {
            self.announce_sentence(rest, &mut out);
        }
        out
    }

    /// A word of a word-timing TTS is heard (`bot_word_heard`): its
    /// sentence's progress, once the sentence is announced. Words before
    /// it not yet heard were too (their reports lost); a word not awaited
    /// (an interruption cut it) is dropped.
    pub(super) fn heard(&mut self, text: &str) -> Vec<Value> {
        let text = text.trim();
        let Some(at) = self.words.iter().position(|w| !w.heard && w.text == text) else {
            return Vec::new();
        };
        for word in self.words.iter_mut().take(at + 1) {
            word.heard = true;
        }
        let mut out = Vec::new();
        self.report_heard(&mut out);
        out
    }

    /// The bot stopped speaking: what it said is spoken (see the module
    /// docs for a word-timing TTS's segments).
    pub(super) fn bot_stopped(&mut self, legacy: bool) -> Vec<Value> {
        let mut out = self.audio_ended();
        let mut kept = VecDeque::new();
        while let Some(mut segment) = self.open.pop_front() {
            // A sentence whose words have not all played waits for them
            // through one stop: the bot may have paused mid-sentence (the
            // TTS fell behind), or the sentence may be the next reply's.
            let unheard = self
                .words
                .iter()
                .any(|w| !w.heard && w.place.as_ref().is_some_and(|(id, ..)| *id == segment.id));
            if segment.by_words && (!segment.begun || unheard) && !segment.waited {
                segment.waited = true;
                kept.push_back(segment);
            } else {
                out.push(bot_output(&segment.fields, segment.id, legacy, true));
            }
        }
        self.open = kept;
        out
    }

    /// The bot was interrupted: nothing it had not said is ever spoken.
    pub(super) fn interrupted(&mut self) {
        self.open.clear();
        self.sentences.clear();
        self.words.clear();
    }

    /// Announces a sentence a word-timing TTS's words make, and reports
    /// its words already heard.
    fn announce_sentence(&mut self, sentence: String, out: &mut Vec<Value>) {
        let id = self.next_id;
        let fields = json!({"text": &sentence, "timing": "sentence"});
        self.announce(fields, true, false, out);
        self.place_words(id, &sentence);
        self.report_heard(out);
    }

    /// Announces spoken text as a new segment, in the client's protocol
    /// (`new`, or 1.x's `spoken` false).
    fn announce(&mut self, fields: Value, by_words: bool, legacy: bool, out: &mut Vec<Value>) {
        let id = self.next_id;
        self.next_id += 1;
        out.push(bot_output(&fields, id, legacy, false));
        if self.open.len() == MAX_OPEN
            && let Some(oldest) = self.open.pop_front()
        {
            out.push(bot_output(&oldest.fields, oldest.id, legacy, true));
        }
        self.open.push_back(OpenSegment {
            id,
            fields,
            by_words,
            begun: false,
            waited: false,
        });
    }

    /// Places the words not yet placed in `sentence`, the text of segment
    /// `id`, as far as they make it up: each where it ends in the text.
    fn place_words(&mut self, id: u64, sentence: &str) {
        let text: Arc<str> = sentence.into();
        let mut cursor = 0;
        for word in self.words.iter_mut().filter(|w| w.place.is_none()) {
            let rest = &sentence[cursor..];
            let end = match rest.find(word.text.as_str()) {
                Some(at) => cursor + at + word.text.len(),
                // A word the sentence ends inside (a CJK full stop in it).
                None if !rest.trim().is_empty() && word.text.starts_with(rest.trim_start()) => {
                    sentence.len()
                }
                // The next sentence's.
                None => break,
            };
            word.place = Some((id, Arc::clone(&text), end));
            cursor = end;
            if end == sentence.len() {
                break;
            }
        }
    }

    /// Reports the oldest words both heard and placed, in order: each its
    /// segment's progress, `completed` once nothing speakable is left (as
    /// Pipecat's `WordCompletionTracker.is_complete`).
    fn report_heard(&mut self, out: &mut Vec<Value>) {
        while self
            .words
            .front()
            .is_some_and(|w| w.heard && w.place.is_some())
        {
            let Some(Word {
                place: Some((id, text, end)),
                ..
            }) = self.words.pop_front()
            else {
                break;
            };
            // Spoken already (the bot stopped, too many open) or cut.
            let Some(at) = self.open.iter().position(|s| s.id == id) else {
                continue;
            };
            let complete = !text[end..].chars().any(char::is_alphanumeric);
            if complete {
                self.open.remove(at);
                out.push(bot_output_progress(&text, id, text.len()));
            } else {
                self.open[at].begun = true;
                out.push(bot_output_progress(&text, id, end));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(text: &str) -> Value {
        json!({"text": text, "timing": "word"})
    }

    /// `(spoken_status, accumulated_text)` of each message.
    fn progress(messages: &[Value]) -> Vec<(&str, &str)> {
        messages
            .iter()
            .map(|m| {
                let data = &m["data"];
                let status = data["spoken_status"].as_str().unwrap_or_default();
                let heard = data["spoken_progress"]["accumulated_text"].as_str();
                (status, heard.unwrap_or_default())
            })
            .collect()
    }

    #[test]
    fn a_two_word_sentence_is_new_then_in_progress_then_completed_as_pipecat_sends_it() {
        let mut segments = Segments::new();
        assert!(segments.spoken(&word("Hello"), false).is_empty());
        assert!(segments.spoken(&word("world."), false).is_empty());
        let new = segments.audio_ended();
        assert_eq!(
            new,
            [json!({"label": "rtvi-ai", "type": "bot-output", "data": {
                "text": "Hello world.", "spoken": false, "will_be_spoken": true,
                "aggregated_by": "sentence", "segment_id": 1, "spoken_status": "new",
                "spoken_progress": {"accumulated_text": "", "remaining_text": "Hello world."}}})]
        );
        assert_eq!(
            segments.heard("Hello"),
            [json!({"label": "rtvi-ai", "type": "bot-output", "data": {
                "text": "Hello world.", "will_be_spoken": true,
                "aggregated_by": "sentence", "segment_id": 1, "spoken_status": "in-progress",
                "spoken_progress": {"accumulated_text": "Hello", "remaining_text": " world."}}})]
        );
        assert_eq!(
            segments.heard("world."),
            [json!({"label": "rtvi-ai", "type": "bot-output", "data": {
                "text": "Hello world.", "will_be_spoken": true,
                "aggregated_by": "sentence", "segment_id": 1, "spoken_status": "completed",
                "spoken_progress": {"accumulated_text": "Hello world.", "remaining_text": ""}}})]
        );
        assert!(segments.bot_stopped(false).is_empty(), "spoken once");
    }

    #[test]
    fn a_pause_mid_sentence_leaves_it_in_progress_until_its_last_word_plays() {
        let mut segments = Segments::new();
        for w in ["Hello", "there", "world."] {
            segments.spoken(&word(w), false);
        }
        segments.audio_ended();
        assert_eq!(segments.heard("Hello").len(), 1);
        // The TTS fell behind: the bot stopped speaking mid-sentence.
        assert!(segments.bot_stopped(false).is_empty(), "not completed yet");
        let progress = segments.heard("there");
        assert_eq!(progress[0]["data"]["spoken_status"], "in-progress");
        let done = segments.heard("world.");
        assert_eq!(done[0]["data"]["spoken_status"], "completed");
        assert!(segments.bot_stopped(false).is_empty(), "completed once");
    }

    #[test]
    fn a_1x_client_gets_each_word_spoken_when_the_bot_stops_and_no_progress() {
        let mut segments = Segments::new();
        let announced: Vec<Value> = ["Hello", "world."]
            .iter()
            .flat_map(|w| segments.spoken(&word(w), true))
            .collect();
        assert_eq!(
            announced,
            [
                json!({"label": "rtvi-ai", "type": "bot-output",
                    "data": {"text": "Hello", "aggregated_by": "word", "spoken": false}}),
                json!({"label": "rtvi-ai", "type": "bot-output",
                    "data": {"text": "world.", "aggregated_by": "word", "spoken": false}}),
            ]
        );
        // The session gives a 1.x client's heard words nothing to do; the
        // words are not awaited here either.
        assert!(segments.heard("Hello").is_empty());
        assert!(segments.audio_ended().is_empty());
        assert_eq!(
            segments.bot_stopped(true),
            [
                json!({"label": "rtvi-ai", "type": "bot-output",
                    "data": {"text": "Hello", "aggregated_by": "word", "spoken": true}}),
                json!({"label": "rtvi-ai", "type": "bot-output",
                    "data": {"text": "world.", "aggregated_by": "word", "spoken": true}}),
            ]
        );
    }

    #[test]
    fn nothing_is_heard_before_its_report_and_the_next_replys_sentence_waits_for_its_words() {
        let mut segments = Segments::new();
        for w in ["It", "is", "late."] {
            segments.spoken(&word(w), false);
        }
        segments.audio_ended();
        segments.heard("It");
        // The next reply's first sentence, announced while the last plays.
        segments.spoken(&word("Bye."), false);
        assert_eq!(progress(&segments.audio_ended()), [("new", "")]);
        // The bot stops with words of the first sentence unheard (their
        // reports lost, or a pause mid-sentence): neither is spoken yet.
        assert!(segments.bot_stopped(false).is_empty());
        // A later word heard: the words before it were heard too.
        assert_eq!(
            progress(&segments.heard("Bye.")),
            [
                ("in-progress", "It is"),
                ("completed", "It is late."),
                ("completed", "Bye.")
            ]
        );
        // A sentence whose words are never reported is taken as spoken at
        // the second stop.
        segments.spoken(&word("Lost."), false);
        segments.audio_ended();
        assert!(segments.bot_stopped(false).is_empty());
        assert_eq!(
            progress(&segments.bot_stopped(false)),
            [("completed", "Lost.")]
        );
    }

    #[test]
    fn a_lost_report_counts_as_heard_and_a_stray_one_is_dropped() {
        let mut segments = Segments::new();
        for w in ["One", "two", "three."] {
            segments.spoken(&word(w), false);
        }
        segments.audio_ended();
        assert!(segments.heard("four").is_empty(), "never awaited");
        assert_eq!(
            progress(&segments.heard("two")),
            [("in-progress", "One"), ("in-progress", "One two")]
        );
        assert_eq!(
            progress(&segments.heard("three.")),
            [("completed", "One two three.")]
        );
    }

    #[test]
    fn a_sentence_ending_inside_a_word_is_completed_by_it() {
        let mut segments = Segments::new();
        let mut announced = segments.spoken(&word("好。对"), false);
        announced.extend(segments.audio_ended());
        let texts: Vec<&Value> = announced.iter().map(|m| &m["data"]["text"]).collect();
        assert_eq!(texts, ["好。", "对"]);
        assert_eq!(
            progress(&segments.heard("好。对")),
            [("completed", "好。")],
            "the word ends the first sentence; the next word says the second"
        );
    }
}
