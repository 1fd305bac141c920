//! [`TurnEnding`]: the state of `user_context`'s turn-end decision: the
//! turn's words until it ends, the words a reply was prepared for, and
//! what holds the end back.

use std::time::Duration;

use super::turn_analyzer::TurnAnalyzer;
use crate::vad::TurnEnd;

/// The state of the turn-end decision (see `user`'s module docs).
pub(super) struct TurnEnding {
    pub(super) decision: TurnEnd,
    pub(super) analyzer: Option<TurnAnalyzer>,
    pub(super) preemptive: bool,
    /// The turn's words, handed by the tracker, until the turn ends.
    pub(super) pending: Option<String>,
    /// The words a preemptive reply was sent for.
    pub(super) prepared: Option<String>,
    /// An interruption was asked for (a discard) and has not passed yet:
    /// nothing goes to the LLM before it, or it would be dropped with it.
    pub(super) interrupting: bool,
    /// Since when an interim newer than the pending words has been held (a
    /// streaming STT still finalising the end of the speech): the turn does
    /// not end before its final, for up to the transcript timeout, or the
    /// final would come after the turn's end and start a second turn.
    pub(super) unfinalised_since: Option<Duration>,
}

impl TurnEnding {
    /// `text` is the turn's words now; returns whether a reply was
    /// prepared for other words.
    pub(super) fn set_pending(&mut self, text: String) -> bool {
        self.decision.transcript(&text);
        let changed = self
            .prepared
            .as_deref()
            .is_some_and(|prepared| !same_words(prepared, &text));
        self.pending = Some(text);
        changed
    }
}

/// Whether two transcripts say the same words, case and punctuation aside
/// (a streaming STT's final may punctuate what its interim did not).
pub(super) fn same_words(a: &str, b: &str) -> bool {
    words_of(a) == words_of(b)
}

/// The words of `text`, lower-case, without punctuation.
pub(super) fn words_of(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::same_words;

    #[test]
    fn same_words_ignores_case_and_punctuation_not_words() {
        assert!(same_words("i would like a pizza", "I would like a pizza."));
        assert!(same_words("it's fine", "It's, fine!"));
        assert!(!same_words("i would like a pizza", "I would like a pasta."));
        assert!(!same_words("i would like", "I would like a pizza."));
    }
}
