//! Words for keyword search: lowercase runs of letters and digits, common
//! English function words left out. Shared by the document and the table
//! tools, and by the router's keyword rules.

/// Words too common to tell passages apart.
const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "how",
    "i", "if", "in", "is", "it", "me", "my", "of", "on", "or", "our", "the", "to", "what", "when",
    "where", "which", "who", "with", "you", "your",
];

/// The searchable words of `text`, in order.
pub(crate) fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lowercase_alphanumeric_runs_without_stopwords() {
        let found: Vec<String> = words("What is the Price of the X-200 (in €)?").collect();
        assert_eq!(found, ["price", "x", "200"]);
        assert_eq!(words("Größe: ÜBER").collect::<Vec<_>>(), ["größe", "über"]);
    }
}
