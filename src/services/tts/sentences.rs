//! Cutting streamed LLM text into sentences for the TTS, sans-IO.
//!
//! Text comes in token by token; a sentence is handed on as soon as it is
//! known to be complete, so the first one is spoken while the LLM still
//! writes the rest. A `.`, `!`, `?` or `…` (with any closing quotes or
//! brackets) ends a sentence only when whitespace and then the start of
//! the next sentence follow, which rules out decimals (`3.5`), dotted
//! abbreviations (`e.g.`, `U.S.`, `a.m.`) and anything followed by a
//! lower-case word (`approx. five`). A `.` after a known title or
//! abbreviation (`Dr.`, `Mr.`, `St.`, `vs.`) or a single capital (an
//! initial, `J. Smith`) does not end one either. A line break ends a
//! sentence (lists); CJK full stops end one at once. The cost of the look
//! ahead is that a sentence is cut when the first character of the next
//! one arrives, or when the response ends ([`SentenceSplitter::finish`]).

/// Words that take a `.` without ending a sentence, lower-case, without
/// the dot.
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "fig", "approx", "dept", "est",
    "cf", "al", "gen", "col", "lt", "sgt", "capt", "rev", "hon", "ave", "blvd",
];

/// Accumulates text and hands out complete sentences.
#[derive(Debug, Default, Clone)]
pub struct SentenceSplitter {
    buffer: String,
}

impl SentenceSplitter {
    /// An empty splitter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds streamed text; returns the sentences it completes, trimmed.
    pub fn push(&mut self, text: &str) -> Vec<String> {
        self.buffer.push_str(text);
        let mut sentences = Vec::new();
        while let Some((end, next)) = find_cut(&self.buffer) {
            let sentence = self.buffer[..end].trim().to_owned();
            self.buffer.drain(..next);
            if !sentence.is_empty() {
                sentences.push(sentence);
            }
        }
        sentences
    }

    /// The response ended: whatever is left is the last sentence.
    pub fn finish(&mut self) -> Option<String> {
        let rest = self.buffer.trim().to_owned();
        self.buffer.clear();
        (!rest.is_empty()).then_some(rest)
    }

    /// Drops text not yet handed out (an interruption).
    pub fn clear(&mut self) {
        self.buffer.clear();
    }
}

/// Whether a sentence ends with `word` when `next` is the word spoken after
/// it, by the same rules as the splitter (so `Dr.` before `Smith` does not
/// end one). Words are whitespace-free, as a word-timing TTS reports them.
pub fn ends_sentence(word: &str, next: &str) -> bool {
    matches!(find_cut(&format!("{word} {next}")), Some((end, _)) if end <= word.len())
}

/// The first cut in `text`: (end of the sentence, start of what follows).
fn find_cut(text: &str) -> Option<(usize, usize)> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let byte_at = |i: usize| chars.get(i).map_or(text.len(), |&(b, _)| b);
    for (i, &(_, c)) in chars.iter().enumerate() {
        match c {
            '\n' if !text[..byte_at(i)].trim().is_empty() => {
                return Some((byte_at(i), byte_at(i + 1)));
            }
            '。' | '！' | '？' => {
                let j = skip_closers(&chars, i + 1);
                return Some((byte_at(j), byte_at(j)));
            }
            '.' | '!' | '?' | '…' => {
                let j = skip_closers(&chars, i + 1);
                // Undecidable until more text comes.
                let (_, after) = *chars.get(j)?;
                if !after.is_whitespace() {
                    continue;
                }
                let k = (j..chars.len()).find(|&k| !chars[k].1.is_whitespace())?;
                let next = chars[k].1;
                if c == '.'
                    && (next.is_lowercase() || is_abbreviation(word_before(text, byte_at(i))))
                {
                    continue;
                }
                if after == '\n' {
                    return Some((byte_at(j), byte_at(j + 1)));
                }
                return Some((byte_at(j), byte_at(k)));
            }
            _ => {}
        }
    }
    None
}

fn skip_closers(chars: &[(usize, char)], mut j: usize) -> usize {
    while chars.get(j).is_some_and(|&(_, c)| {
        matches!(
            c,
            '"' | '\'' | '”' | '’' | ')' | ']' | '»' | '.' | '!' | '?'
        )
    }) {
        j += 1;
    }
    j
}

/// The word that ends at byte `end` (exclusive), without leading quotes.
fn word_before(text: &str, end: usize) -> &str {
    let start = text[..end]
        .rfind(|c: char| c.is_whitespace() || matches!(c, '(' | '"' | '“' | '\''))
        .map_or(0, |i| {
            i + text[i..].chars().next().map_or(1, char::len_utf8)
        });
    &text[start..end]
}

fn is_abbreviation(word: &str) -> bool {
    let mut letters = word.chars();
    let single_capital =
        matches!((letters.next(), letters.next()), (Some(c), None) if c.is_uppercase());
    single_capital
        // Dotted forms: e.g, i.e, U.S, a.m, Ph.D
        || (word.contains('.') && word.split('.').all(|part| !part.is_empty() && part.chars().all(char::is_alphabetic)))
        || ABBREVIATIONS.contains(&word.to_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits `text` fed in pieces of `piece` characters, then finishes.
    fn split(text: &str, piece: usize) -> Vec<String> {
        let mut splitter = SentenceSplitter::new();
        let chars: Vec<char> = text.chars().collect();
        let mut out = Vec::new();
        for chunk in chars.chunks(piece) {
            out.extend(splitter.push(&chunk.iter().collect::<String>()));
        }
        out.extend(splitter.finish());
        out
    }

    #[test]
    fn sentences_are_cut_at_their_ends_however_the_tokens_fall() {
        let text = "It's sunny in Paris. Take sunglasses! Anything else? Bye…";
        for piece in 1..8 {
            assert_eq!(
                split(text, piece),
                [
                    "It's sunny in Paris.",
                    "Take sunglasses!",
                    "Anything else?",
                    "Bye…"
                ],
                "pieces of {piece}"
            );
        }
    }

    #[test]
    fn abbreviations_decimals_and_initials_do_not_end_sentences() {
        let text = "Dr. Smith paid 3.5 dollars, e.g. for coffee in the U.S. at 9 a.m. today. \
                    Mr. J. R. Tolkien agreed, approx. twice. St. Louis vs. Denver is next.";
        for piece in [1, 3, 100] {
            assert_eq!(
                split(text, piece),
                [
                    "Dr. Smith paid 3.5 dollars, e.g. for coffee in the U.S. at 9 a.m. today.",
                    "Mr. J. R. Tolkien agreed, approx. twice.",
                    "St. Louis vs. Denver is next."
                ]
            );
        }
    }

    #[test]
    fn quotes_lines_and_cjk_stops_are_handled() {
        assert_eq!(
            split("He said \"hello.\" Then he left.) Next", 2),
            ["He said \"hello.\"", "Then he left.)", "Next"]
        );
        assert_eq!(
            split("Options:\n- one\n- two", 1),
            ["Options:", "- one", "- two"]
        );
        assert_eq!(
            split("你好。今天天气很好！", 1),
            ["你好。", "今天天气很好！"]
        );
    }

    #[test]
    fn a_word_ends_a_sentence_by_the_splitters_rules() {
        assert!(ends_sentence("nine.", "It"));
        assert!(ends_sentence("else?", "Bye"));
        assert!(ends_sentence("\"hello.\"", "Then"));
        assert!(!ends_sentence("opens", "at"));
        assert!(!ends_sentence("Dr.", "Smith"));
        assert!(!ends_sentence("approx.", "five"));
        assert!(!ends_sentence("3.5", "dollars"));
    }

    #[test]
    fn a_sentence_is_handed_out_when_the_next_one_begins() {
        let mut splitter = SentenceSplitter::new();
        assert!(splitter.push("The first sentence.").is_empty());
        assert!(splitter.push(" ").is_empty());
        assert_eq!(splitter.push("The"), ["The first sentence."]);
        splitter.clear();
        assert_eq!(splitter.finish(), None);
    }
}
