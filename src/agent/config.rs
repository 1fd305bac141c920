//! `[context]`: where conversations are kept, and the `search_context`
//! skills.
//!
//! ```toml
//! [context]
//! store = "redis"                # "memory" (the default) or "redis"
//! url_env = "REDIS_URL"          # the variable holding the Redis URL
//! cluster = false                # true: a Redis Cluster; url_env then names
//!                                # seed nodes, comma-separated
//! path = "voxpipe-context.jsonl" # memory store only: keep it in this file
//! prefix = ""                    # key prefix, e.g. "acme:" (in a Cluster, no braces)
//! call_ttl_secs = 172800         # call:{id} and its transcript (48 h)
//! session_tactics_ttl_secs = 86400
//! op_timeout_ms = 2000           # one Redis operation; then retried
//! wait_replicas = 0              # replicas that must hold a turn (WAIT) first
//! flush_timeout_secs = 120       # after a session ends, keep retrying this long
//! spool_dir = "voxpipe-data/context-spool"  # while the store fails, pending turns
//!                                # are kept here too, and written when it is back;
//!                                # "" keeps them in memory only
//! lost_session_grace_secs = 150  # a voice session renews a lease in the store every
//!                                # third of this; one left this long (its process
//!                                # stopped mid-call) is ended `session_lost` by any process
//! prompt_timeout_ms = 1500       # session start: read prompts this long, else the TOML's
//! country = "US"                 # the segment when the call brings none
//! industry = "healthcare"
//! tactics_heading = "Winning tactics to use when appropriate:"
//! tactic_min_calls = 1           # a winning tactic goes into prompts once this
//!                                # many distinct successful calls named it
//!
//! [context.skills]               # the search_context tool
//! base_url = "https://api.openai.com/v1"
//! model = "text-embedding-3-small"
//! api_key_env = "OPENAI_API_KEY"
//! dimensions = 768               # optional: ask for shorter vectors
//! top_k = 3
//! candidates = 512               # re-ranked exactly per query
//! refresh_secs = 60
//! connection = { response_timeout_secs = 10 }    # as for services
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::turn_spool::TurnSpool;
use super::writer::WriterSettings;
use crate::agent::eval::{ApiEndpoint, default_base_url};
use crate::config::Seconds;
use crate::pipeline::BuildError;
use crate::services::{ApiKey, ConnectionOptions};
use crate::store::{Keys, SEGMENT_PART_RULE, Segment, StoreSettings, is_segment_part};

/// Which store backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// The embedded store (optionally in a file).
    #[default]
    Memory,
    /// Redis at the URL in `url_env`.
    Redis,
}

/// `[context]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContextSection {
    /// The backend.
    pub store: StoreKind,
    /// The variable holding the Redis URL.
    pub url_env: String,
    /// A Redis Cluster: `url_env` names one or more seed nodes,
    /// comma-separated.
    pub cluster: bool,
    /// The embedded store's file, if it is kept in one.
    pub path: Option<PathBuf>,
    /// Prefix of every key (in a Redis Cluster, without braces: they would
    /// become every key's hash tag).
    pub prefix: String,
    /// TTL of call keys, seconds.
    pub call_ttl_secs: u64,
    /// TTL of `session:{id}:tactics`, seconds.
    pub session_tactics_ttl_secs: u64,
    /// One store operation, milliseconds.
    pub op_timeout_ms: u64,
    /// Replicas that must acknowledge a turn's write.
    pub wait_replicas: u32,
    /// Retry time after a session ends, seconds.
    pub flush_timeout_secs: Seconds,
    /// The turn spool's directory (empty: none).
    pub spool_dir: PathBuf,
    /// How long a voice session's lease lasts unrenewed (renewed every
    /// third of it while its writer runs): a call whose process stopped is
    /// ended this long after the last renewal.
    pub lost_session_grace_secs: Seconds<30_000, 3600>,
    /// Time allowed to read the prompt at session start, milliseconds.
    pub prompt_timeout_ms: u64,
    /// The country when the call brings none.
    #[serde(deserialize_with = "segment_part")]
    pub country: Option<String>,
    /// The industry when the call brings none.
    #[serde(deserialize_with = "segment_part")]
    pub industry: Option<String>,
    /// The line before the tactics in the system prompt.
    pub tactics_heading: String,
    /// Distinct successful calls that must name a winning tactic before it
    /// goes into the system prompt (1, the default: the first success
    /// promotes it, as the refinement loop's design has it; 0 counts as 1).
    pub tactic_min_calls: u64,
    /// The skills behind `search_context`.
    pub skills: Option<SkillsSection>,
}

impl Default for ContextSection {
    fn default() -> Self {
        ContextSection {
            store: StoreKind::Memory,
            url_env: "REDIS_URL".into(),
            cluster: false,
            path: None,
            prefix: String::new(),
            call_ttl_secs: 48 * 3600,
            session_tactics_ttl_secs: 24 * 3600,
            op_timeout_ms: 2000,
            wait_replicas: 0,
            flush_timeout_secs: Seconds::from_millis(120_000),
            spool_dir: PathBuf::from(Self::DEFAULT_SPOOL_DIR),
            lost_session_grace_secs: Seconds::from_millis(150_000),
            prompt_timeout_ms: 1500,
            country: None,
            industry: None,
            tactics_heading: "Winning tactics to use when appropriate:".into(),
            tactic_min_calls: 1,
            skills: None,
        }
    }
}

impl ContextSection {
    /// Where pending turns are kept while the store fails, by default
    /// (relative to the process's working directory).
    pub const DEFAULT_SPOOL_DIR: &'static str = "voxpipe-data/context-spool";

    /// Key names and lifetimes for the store.
    pub fn store_settings(&self) -> StoreSettings {
        StoreSettings {
            keys: Keys::new(self.prefix.clone()),
            call_ttl: Duration::from_secs(self.call_ttl_secs.max(1)),
            session_tactics_ttl: Duration::from_secs(self.session_tactics_ttl_secs.max(1)),
            op_timeout: Duration::from_millis(self.op_timeout_ms.max(1)),
            wait_replicas: self.wait_replicas,
            ..StoreSettings::default()
        }
    }

    /// How session writers retry, and where they spool;
    /// `store` is the store's [`identity`](crate::store::Store::identity).
    pub fn writer_settings(&self, store: String) -> WriterSettings {
        let spool = (!self.spool_dir.as_os_str().is_empty())
            .then(|| std::sync::Arc::new(TurnSpool::new(&self.spool_dir, store)));
        WriterSettings {
            flush_timeout: self.flush_timeout_secs.duration(),
            spool,
            ..WriterSettings::default()
        }
    }

    /// The segment of calls that bring none.
    pub fn default_segment(&self) -> Segment {
        Segment {
            country: self.country.clone(),
            industry: self.industry.clone(),
        }
    }
}

/// A `country` or `industry`: refused with the rule unless
/// [`is_segment_part`].
fn segment_part<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let value = String::deserialize(deserializer)?;
    if is_segment_part(&value) {
        Ok(Some(value))
    } else {
        Err(serde::de::Error::custom(format!(
            "{value:?} cannot be part of a prompt key: use {SEGMENT_PART_RULE}"
        )))
    }
}

/// `[context.skills]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkillsSection {
    /// The OpenAI-compatible API.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The embedding model.
    #[serde(default = "default_model")]
    pub model: String,
    /// The variable holding the API key, if the server needs one.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Vector length to ask for, if the model can shorten its vectors.
    #[serde(default)]
    pub dimensions: Option<u32>,
    /// Rebuttals returned per query.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// Candidates re-ranked exactly per query.
    #[serde(default = "default_candidates")]
    pub candidates: usize,
    /// Seconds between index refreshes (at most a day; under 1 s counts as
    /// 1 s).
    #[serde(default = "default_refresh")]
    pub refresh_secs: Seconds,
    /// Timeouts and retries of each embeddings request (the services'
    /// `connection` table).
    #[serde(default)]
    pub connection: ConnectionOptions,
}

fn default_model() -> String {
    "text-embedding-3-small".into()
}
fn default_top_k() -> usize {
    3
}
fn default_candidates() -> usize {
    512
}
fn default_refresh() -> Seconds {
    Seconds::from_millis(60_000)
}

impl SkillsSection {
    /// The embeddings endpoint, with the resolved key.
    pub fn endpoint(&self, api_key: Option<ApiKey>) -> Result<ApiEndpoint, BuildError> {
        ApiEndpoint::new(&self.base_url, api_key, &self.connection, "embeddings")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_industry_may_have_spaces_but_not_key_syntax() {
        let section: ContextSection = toml::from_str("industry = \"real estate\"").unwrap();
        assert_eq!(section.industry.as_deref(), Some("real estate"));
        let refused = toml::from_str::<ContextSection>("industry = \"re:tail\"").unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("cannot be part of a prompt key")
        );
    }
}
