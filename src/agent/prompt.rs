//! The system prompt a session starts with.
//!
//! The prompt text comes from the most specific key that holds one:
//! `prompt:segment:{country}:{industry}`, then `prompt:segment:*:{industry}`,
//! then `prompt:base`, then the pipeline's own (TOML) prompt. The refinement
//! loop's tactics follow it: the newest [`MAX_TACTICS_IN_PROMPT`] winning
//! tactics first (each cleaned to one short line, [`clean_tactic`], with
//! phone numbers and e-mail addresses redacted: they come from what
//! callers said; and, with `tactic_min_calls` above 1, only those named in
//! that many distinct calls), then the operator's base tactics, merged
//! without repeats, under a heading such as "Winning tactics to use when
//! appropriate:".

use crate::agent::redact::redact_contacts;
use crate::pipeline::SystemPromptSource;
use crate::store::{
    MAX_TACTICS_IN_PROMPT, PromptKey, Segment, Store, StoreError, TacticsList, clean_tactic,
    merge_tactics, tactic_identity,
};

/// What a session's system prompt is made of, read from the store at
/// session start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionPrompt {
    /// The stored prompt and its key; `None`: use the pipeline's.
    pub stored: Option<(PromptKey, String)>,
    /// The newest winning tactics, then base tactics, without repeats.
    pub tactics: Vec<String>,
    /// The line put before the tactics.
    pub tactics_heading: String,
}

impl SessionPrompt {
    /// Reads the prompt for `segment` and both tactics lists, concurrently;
    /// every winning tactic may go in (as `tactic_min_calls = 1`).
    pub async fn load(
        store: &dyn Store,
        segment: &Segment,
        tactics_heading: &str,
    ) -> Result<SessionPrompt, StoreError> {
        Self::load_promoted(store, segment, tactics_heading, 1).await
    }

    /// As [`Self::load`], with only the winning tactics named in at least
    /// `min_calls` distinct calls (`[context] tactic_min_calls`): one call
    /// cannot put a line into every later prompt alone.
    pub async fn load_promoted(
        store: &dyn Store,
        segment: &Segment,
        tactics_heading: &str,
        min_calls: u64,
    ) -> Result<SessionPrompt, StoreError> {
        let candidates = PromptKey::candidates(segment);
        let calls = async {
            if min_calls > 1 {
                store.tactic_calls(TacticsList::Winning).await.map(Some)
            } else {
                Ok(None)
            }
        };
        let (stored, winning, base, calls) = tokio::try_join!(
            store.first_prompt(&candidates),
            store.tactics(TacticsList::Winning),
            store.tactics(TacticsList::Base),
            calls,
        )?;
        let promoted: Vec<&String> = match &calls {
            None => winning.iter().collect(),
            Some(calls) => winning
                .iter()
                .filter(|t| calls.get(&tactic_identity(t)).copied().unwrap_or(0) >= min_calls)
                .collect(),
        };
        let newest = promoted.len().saturating_sub(MAX_TACTICS_IN_PROMPT);
        // Redacted here too: lists written before redaction, or by hand.
        let winning: Vec<String> = promoted[newest..]
            .iter()
            .filter_map(|t| clean_tactic(&redact_contacts(t)))
            .collect();
        Ok(SessionPrompt {
            stored,
            tactics: merge_tactics([winning.as_slice(), base.as_slice()]),
            tactics_heading: tactics_heading.to_owned(),
        })
    }

    /// The key the prompt text came from, or `toml`.
    pub fn source(&self) -> String {
        self.stored
            .as_ref()
            .map_or_else(|| "toml".to_owned(), |(key, _)| key.to_string())
    }

    /// The system prompt: the stored text (or `pipeline_prompt`), then the
    /// tactics.
    pub fn render(&self, pipeline_prompt: &str) -> String {
        let text = self
            .stored
            .as_ref()
            .map_or(pipeline_prompt, |(_, text)| text.as_str())
            .trim_end();
        if self.tactics.is_empty() {
            return text.to_owned();
        }
        let mut prompt = String::with_capacity(text.len() + 64 * (self.tactics.len() + 1));
        prompt.push_str(text);
        if !prompt.is_empty() {
            prompt.push_str("\n\n");
        }
        prompt.push_str(self.tactics_heading.trim());
        for tactic in &self.tactics {
            prompt.push_str("\n- ");
            prompt.push_str(tactic);
        }
        prompt
    }
}

impl SystemPromptSource for SessionPrompt {
    fn system_prompt(&self, pipeline_prompt: &str) -> String {
        self.render(pipeline_prompt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_stored_prompt_then_the_tactics() {
        let prompt = SessionPrompt {
            stored: Some((PromptKey::Base, "Sell well.\n".into())),
            tactics: vec!["Anchor high".into(), "Stay calm".into()],
            tactics_heading: "Winning tactics to use when appropriate:".into(),
        };
        assert_eq!(
            prompt.render("ignored"),
            "Sell well.\n\nWinning tactics to use when appropriate:\n- Anchor high\n- Stay calm"
        );
        assert_eq!(prompt.source(), "prompt:base");
        let toml_only = SessionPrompt::default();
        assert_eq!(toml_only.render("From TOML"), "From TOML");
        assert_eq!(toml_only.source(), "toml");
    }
}
