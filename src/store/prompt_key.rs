//! [`PromptKey`]: where a segment's system prompt may be stored, most
//! specific first: `prompt:segment:{country}:{industry}`, then
//! `prompt:segment:*:{industry}`, then `prompt:base`.

use std::fmt;

use super::call::{Segment, is_segment_part};
use super::keys::{Keys, part_of};

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

    /// `{<key>}:history`: its deployed versions, in the prompt's slot
    /// (deployed together with it).
    pub fn history_key(&self, keys: &Keys) -> String {
        part_of(&self.key(keys), format_args!("history"))
    }

    /// `{<key>}:version`: the version counter, in the prompt's slot.
    pub fn version_key(&self, keys: &Keys) -> String {
        part_of(&self.key(keys), format_args!("version"))
    }

    /// `{key}:optimisations`: recent optimisations, for the rate limit.
    pub fn optimisations_key(&self, keys: &Keys) -> String {
        format!("{}:optimisations", self.key(keys))
    }

    /// `{key}:optimisation_attempts`: per optimisation id, its runs cut
    /// short by a model after another had answered (a hash, kept a day).
    pub fn attempts_key(&self, keys: &Keys) -> String {
        format!("{}:optimisation_attempts", self.key(keys))
    }

    /// `{key}:failures`: failed calls not yet acted on.
    pub fn failures_key(&self, keys: &Keys) -> String {
        format!("{}:failures", self.key(keys))
    }

    /// The key written `name` (without prefix), e.g.
    /// `prompt:segment:US:healthcare`; `None` if it is not a prompt key
    /// (the optimiser's keys beside one included).
    pub fn parse(name: &str) -> Option<PromptKey> {
        if name == "prompt:base" {
            return Some(PromptKey::Base);
        }
        let rest = name.strip_prefix("prompt:segment:")?;
        let (country, industry) = rest.split_once(':')?;
        if !(country == "*" || is_segment_part(country)) || !is_segment_part(industry) {
            return None;
        }
        Some(match country {
            "*" => PromptKey::Industry {
                industry: industry.to_owned(),
            },
            _ => PromptKey::Segment {
                country: country.to_owned(),
                industry: industry.to_owned(),
            },
        })
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

    #[test]
    fn parses_what_it_prints_and_nothing_beside() {
        for name in [
            "prompt:segment:US:retail",
            "prompt:segment:*:retail",
            "prompt:segment:US:real estate",
            "prompt:base",
        ] {
            let key = PromptKey::parse(name).unwrap();
            assert_eq!(key.to_string(), name);
        }
        for name in [
            "prompt:segment:US:retail:history",
            "prompt:segment:US",
            "prompt:segment::retail",
            "prompt:base:version",
            "call:x",
            "prompt:segment:{US}:retail",
            "prompt:segment:US:re{tail}",
            "prompt:segment:US:re*tail",
        ] {
            assert_eq!(PromptKey::parse(name), None, "{name}");
        }
        let keys = Keys::new("acme:");
        let key = PromptKey::parse("prompt:segment:US:retail").unwrap();
        assert_eq!(
            key.history_key(&keys),
            "{acme:prompt:segment:US:retail}:history"
        );
        assert_eq!(
            key.version_key(&keys),
            "{acme:prompt:segment:US:retail}:version"
        );
    }
}
