//! Tactics: the short lessons the refinement loop keeps between sessions.
//!
//! Two tactics are the same when they match after trimming, collapsing runs
//! of whitespace and ASCII lower-casing ([`tactic_identity`]); the Redis
//! store's Lua scripts apply the same rule, so a list never holds two
//! spellings of one tactic, whichever side merged them.

use std::collections::HashSet;

/// The three agent-wide tactics lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TacticsList {
    /// `agent:tactics`: seeded by the operator; voxpipe sessions never
    /// write it.
    Base,
    /// `agent:winning_tactics`: from sessions judged a success; first in the
    /// next system prompt.
    Winning,
    /// `agent:failed_tactics`: from sessions judged a failure; for analysis,
    /// never fed back.
    Failed,
}

impl TacticsList {
    /// The key name without prefix.
    pub fn key_name(self) -> &'static str {
        match self {
            TacticsList::Base => "agent:tactics",
            TacticsList::Winning => "agent:winning_tactics",
            TacticsList::Failed => "agent:failed_tactics",
        }
    }

    /// The list named `base`, `winning` or `failed`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "base" => Some(TacticsList::Base),
            "winning" => Some(TacticsList::Winning),
            "failed" => Some(TacticsList::Failed),
            _ => None,
        }
    }
}

/// What decides whether two tactics are the same.
pub fn tactic_identity(tactic: &str) -> String {
    tactic
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

/// `lists` concatenated in order, trimmed, without empties or repeats (the
/// first spelling wins).
pub fn merge_tactics<'a>(lists: impl IntoIterator<Item = &'a [String]>) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut merged = Vec::new();
    for tactic in lists.into_iter().flatten() {
        let tactic = tactic.trim();
        if !tactic.is_empty() && seen.insert(tactic_identity(tactic)) {
            merged.push(tactic.to_owned());
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_order_and_the_first_spelling() {
        let winning = vec!["Anchor high".to_owned(), "Mirror  the buyer".to_owned()];
        let base = vec![
            " anchor HIGH ".to_owned(),
            String::new(),
            "Walk away".to_owned(),
        ];
        assert_eq!(
            merge_tactics([winning.as_slice(), base.as_slice()]),
            ["Anchor high", "Mirror  the buyer", "Walk away"]
        );
    }
}
