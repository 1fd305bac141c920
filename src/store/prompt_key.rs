//! [`PromptKey`]: where a segment's system prompt may be stored, most
//! specific first: `prompt:segment:{country}:{industry}`, then
//! `prompt:segment:*:{industry}`, then `prompt:base`.

use std::fmt;

use super::call::Segment;
use super::keys::Keys;

/// Where a prompt may be stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PromptKey {
    /// `prompt:segment:{country}:{industry}`.
    Segment {
        /// Country code.
        country: String,
        /// Industry.
        industry: String,
    },
    /// `prompt:segment:*:{industry}`: any country.
    Industry {
        /// Industry.
        industry: String,
    },
    /// `prompt:base`.
    Base,
}

impl PromptKey {
    /// The full key under `keys`' prefix.
    pub fn key(&self, keys: &Keys) -> String {
        match self {
            PromptKey::Segment { country, industry } => keys.segment_prompt(country, industry),
            PromptKey::Industry { industry } => keys.segment_prompt("*", industry),
            PromptKey::Base => keys.base_prompt(),
        }
    }

    /// The keys to try for `segment`, most specific first.
    pub fn candidates(segment: &Segment) -> Vec<PromptKey> {
        let mut keys = Vec::with_capacity(3);
        if let Some(industry) = &segment.industry {
            if let Some(country) = &segment.country {
                keys.push(PromptKey::Segment {
                    country: country.clone(),
                    industry: industry.clone(),
                });
            }
            keys.push(PromptKey::Industry {
                industry: industry.clone(),
            });
        }
        keys.push(PromptKey::Base);
        keys
    }
}

impl fmt::Display for PromptKey {
    /// The key without prefix, e.g. `prompt:segment:*:retail`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key(&Keys::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_go_from_specific_to_base() {
        let full = Segment {
            country: Some("US".into()),
            industry: Some("retail".into()),
        };
        let names: Vec<String> = PromptKey::candidates(&full)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            names,
            [
                "prompt:segment:US:retail",
                "prompt:segment:*:retail",
                "prompt:base"
            ]
        );
        let country_only = Segment {
            country: Some("US".into()),
            industry: None,
        };
        assert_eq!(PromptKey::candidates(&country_only), [PromptKey::Base]);
    }
}
