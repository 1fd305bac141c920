//! [`SkillLibrary`]: the store's skills, an in-memory index of them kept
//! fresh, and the `search_context` tool on top.
//!
//! Queries never touch the store: they embed the query text and search the
//! index. The index is filled from the store at start and refreshed in the
//! background (one key scan per refresh, fetching only skills it does not
//! hold and dropping those gone), so skills written by other processes or
//! programs (the learning loop's `skill:{hash}` hashes) appear within one
//! refresh period; skills added through the library appear at once.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::embedder::Embedder;
use super::index::{IndexError, SkillHit, SkillIndex};
use crate::services::ServiceError;
use crate::store::{Skill, Store, StoreError};

/// The tool's name, as the LLM sees it.
pub const SEARCH_CONTEXT: &str = "search_context";

/// The tool's description, as the LLM sees it.
pub const SEARCH_CONTEXT_DESCRIPTION: &str = "Find rebuttals that worked before against an objection \
the customer just raised. Pass the objection in the customer's words.";

/// The JSON schema of the tool's arguments.
pub fn search_context_parameters() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "The customer's objection."},
            "top_k": {"type": "integer", "minimum": 1, "maximum": 10,
                      "description": "How many rebuttals to return."}
        },
        "required": ["query"]
    })
}

/// A skill operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SkillError {
    /// The embeddings endpoint failed.
    #[error("embeddings: {0}")]
    Embed(#[from] ServiceError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The skill does not fit the index.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The tool's arguments are not `{"query": "...", "top_k": n}`.
    #[error("search_context arguments: {0}")]
    Arguments(String),
}

/// What a refresh changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refresh {
    /// Skills loaded.
    pub added: usize,
    /// Skills dropped (gone from the store).
    pub removed: usize,
    /// Skills held after.
    pub total: usize,
}

/// Skills: stored, indexed, searchable.
pub struct SkillLibrary {
    store: Arc<dyn Store>,
    embedder: Arc<dyn Embedder>,
    index: Arc<RwLock<SkillIndex>>,
    top_k: usize,
}

impl SkillLibrary {
    /// A library over `store`, empty until [`SkillLibrary::refresh`].
    pub fn new(
        store: Arc<dyn Store>,
        embedder: Arc<dyn Embedder>,
        candidates: usize,
        top_k: usize,
    ) -> Self {
        SkillLibrary {
            store,
            embedder,
            index: Arc::new(RwLock::new(SkillIndex::new(candidates))),
            top_k: top_k.max(1),
        }
    }

    /// Skills in the index.
    pub fn len(&self) -> usize {
        self.read_index().len()
    }

    /// True when the index is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Brings the index in line with the store.
    pub async fn refresh(&self) -> Result<Refresh, StoreError> {
        let stored: HashSet<String> = self.store.skill_hashes().await?.into_iter().collect();
        let (missing, gone): (Vec<String>, Vec<String>) = {
            let index = self.read_index();
            let missing = stored
                .iter()
                .filter(|h| !index.contains(h))
                .cloned()
                .collect();
            let gone = index
                .hashes()
                .filter(|h| !stored.contains(*h))
                .map(str::to_owned)
                .collect();
            (missing, gone)
        };
        let mut refresh = Refresh::default();
        // Fetched in batches so a large first load never holds the lock long.
        for batch in missing.chunks(1024) {
            let skills = self.store.skills(batch).await?;
            let mut index = self.write_index();
            for skill in skills.into_iter().flatten() {
                match index.insert(&skill) {
                    Ok(()) => refresh.added += 1,
                    Err(err) => tracing::warn!(error = %err, "skill not indexed"),
                }
            }
        }
        let mut index = self.write_index();
        for hash in &gone {
            if index.remove(hash) {
                refresh.removed += 1;
            }
        }
        refresh.total = index.len();
        Ok(refresh)
    }

    /// Refreshes every `period` until `shutdown` resolves.
    pub async fn run_refresh(&self, period: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            match self.refresh().await {
                Ok(r) if r.added + r.removed > 0 => {
                    tracing::info!(
                        added = r.added,
                        removed = r.removed,
                        total = r.total,
                        "skills refreshed"
                    );
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "cannot refresh the skills"),
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(period) => {}
            }
        }
    }

    /// Embeds `trigger`, stores the skill and indexes it.
    pub async fn add(&self, trigger: &str, rebuttal: &str) -> Result<Skill, SkillError> {
        let vector = self.embed_one(trigger).await?;
        let skill = Skill::new(trigger.trim(), rebuttal.trim(), vector);
        self.store.put_skill(&skill).await?;
        self.write_index().insert(&skill)?;
        Ok(skill)
    }

    /// The `k` skills whose triggers are closest to `text`.
    pub async fn search(&self, text: &str, k: usize) -> Result<Vec<SkillHit>, SkillError> {
        let query = self.embed_one(text).await?;
        {
            // Said, not answered with "nothing found": no skill could ever
            // match until the model matches the stored vectors again.
            let index = self.read_index();
            if !index.is_empty() && query.len() != index.dims() {
                return Err(SkillError::Index(IndexError::QueryDimensions {
                    expected: index.dims(),
                    got: query.len(),
                }));
            }
        }
        let index = Arc::clone(&self.index);
        // A search over a large index is a few milliseconds of CPU: off the
        // async workers.
        let search = tokio::task::spawn_blocking(move || {
            index
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .search(&query, k)
        });
        match search.await {
            Ok(hits) => Ok(hits),
            Err(err) => {
                tracing::error!(error = %err, "skill search failed");
                Ok(Vec::new())
            }
        }
    }

    /// Runs the `search_context` tool on its JSON `arguments`; the result is
    /// the JSON text the LLM reads.
    pub async fn search_context(&self, arguments: serde_json::Value) -> Result<String, SkillError> {
        #[derive(Deserialize)]
        struct Arguments {
            query: String,
            #[serde(default)]
            top_k: Option<usize>,
        }
        let args: Arguments =
            serde_json::from_value(arguments).map_err(|e| SkillError::Arguments(e.to_string()))?;
        if args.query.trim().is_empty() {
            return Err(SkillError::Arguments("`query` is empty".into()));
        }
        let k = args.top_k.unwrap_or(self.top_k).clamp(1, 10);
        let hits = self.search(&args.query, k).await?;
        let results: Vec<_> = hits
            .iter()
            .map(|hit| {
                json!({
                    "objection": &*hit.trigger,
                    "rebuttal": &*hit.rebuttal,
                    "similarity": (f64::from(hit.similarity) * 1000.0).round() / 1000.0,
                })
            })
            .collect();
        Ok(json!({ "results": results }).to_string())
    }

    async fn embed_one(&self, text: &str) -> Result<Vec<f32>, SkillError> {
        let mut vectors = self.embedder.embed(&[text.trim().to_owned()]).await?;
        vectors.pop().ok_or_else(|| {
            SkillError::Embed(ServiceError::Protocol(
                "embeddings: no embedding returned".into(),
            ))
        })
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, SkillIndex> {
        // The index is changed whole-skill at a time under the lock.
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_index(&self) -> std::sync::RwLockWriteGuard<'_, SkillIndex> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }
}
