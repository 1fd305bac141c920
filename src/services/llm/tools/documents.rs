//! Document search declared in TOML: BM25 over the sections of markdown
//! files, `search_context`-style retrieval for an information agent.
//!
//! ```toml
//! [[processor.document_tools]]
//! name = "search_documents"
//! description = "Search the shop's policies: delivery, returns, opening hours."
//! path = "assets/specialists/docs"    # a markdown file, or a folder of them
//! results = 3                          # passages returned, default 3
//! ```
//!
//! Each file is cut into passages at its headings (a passage is a heading
//! and the text under it); the query's words rank them by Okapi BM25
//! (k1 = 1.2, b = 0.75). The files are read once per process, when the
//! first session is built; a path that cannot be read fails the build.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::pipeline::BuildError;

use super::tool::{Tool, ToolError, ToolOutcome, ToolSpec, is_tool_name};
use super::words::words;

/// The most text read from a tool's files, in bytes.
pub(crate) const MAX_SOURCE_BYTES: u64 = 16 * 1024 * 1024;
/// The longest passage returned, in characters.
const MAX_PASSAGE_CHARS: usize = 1_500;
const K1: f64 = 1.2;
const B: f64 = 0.75;

/// `[[processor.document_tools]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentToolConfig {
    /// The name the model calls it by.
    pub name: String,
    /// What the documents hold, for the model.
    pub description: String,
    /// A markdown file, or a folder whose `.md` files are searched
    /// (relative to the working directory).
    pub path: PathBuf,
    /// Passages returned per search, 1 to 10. Default 3.
    #[serde(default = "default_results")]
    pub results: usize,
    /// The index, read by the first build and shared by later ones.
    #[serde(skip)]
    index: Arc<OnceLock<Arc<DocumentIndex>>>,
}

fn default_results() -> usize {
    3
}

impl DocumentToolConfig {
    /// The tool for one session; the files are read by the first build.
    pub fn build(&self) -> Result<DocumentTool, BuildError> {
        let invalid = |message: String| {
            BuildError::Invalid(format!("document tool `{}`: {message}", self.name))
        };
        if !is_tool_name(&self.name) {
            return Err(invalid(
                "the name must be letters, digits, `_` or `-`".into(),
            ));
        }
        if !(1..=10).contains(&self.results) {
            return Err(invalid(format!(
                "results must be between 1 and 10, not {}",
                self.results
            )));
        }
        let index = match self.index.get() {
            Some(index) => Arc::clone(index),
            None => {
                let index = Arc::new(DocumentIndex::read(&self.path).map_err(invalid)?);
                Arc::clone(self.index.get_or_init(|| index))
            }
        };
        Ok(DocumentTool {
            spec: ToolSpec {
                name: self.name.clone(),
                description: self.description.clone(),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "query": {"type": "string", "description": "What to look for, in a few words."}
                    },
                    "required": ["query"]
                }),
            },
            index,
            results: self.results,
        })
    }
}

/// One passage: a heading and the text under it.
#[derive(Debug, Clone, PartialEq)]
struct Passage {
    source: String,
    heading: String,
    text: String,
    /// How often each word occurs in the passage.
    terms: HashMap<String, u32>,
    length: usize,
}

/// Passages ranked by BM25. See the module docs.
#[derive(Debug, Default)]
pub struct DocumentIndex {
    passages: Vec<Passage>,
    /// In how many passages each word occurs.
    document_frequency: HashMap<String, u32>,
    mean_length: f64,
}

impl DocumentIndex {
    /// Reads `path`: one markdown file, or every `.md` file of a folder.
    fn read(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        let files = if path.is_dir() {
            let entries =
                std::fs::read_dir(path).map_err(|e| format!("cannot read `{shown}`: {e}"))?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "md"))
                .collect();
            files.sort();
            files
        } else {
            vec![path.to_owned()]
        };
        let mut documents = Vec::with_capacity(files.len());
        let mut total = 0u64;
        for file in &files {
            let shown = file.display();
            total += std::fs::metadata(file)
                .map_err(|e| format!("cannot read `{shown}`: {e}"))?
                .len();
            if total > MAX_SOURCE_BYTES {
                return Err(format!("the documents exceed {MAX_SOURCE_BYTES} bytes"));
            }
            let text =
                std::fs::read_to_string(file).map_err(|e| format!("cannot read `{shown}`: {e}"))?;
            let name = file
                .file_name()
                .map_or_else(|| shown.to_string(), |n| n.to_string_lossy().into_owned());
            documents.push((name, text));
        }
        let index = DocumentIndex::from_markdown(&documents);
        if index.passages.is_empty() {
            return Err(format!("`{}` holds no markdown text", path.display()));
        }
        Ok(index)
    }

    /// The index of `documents`, as (name, markdown) pairs.
    pub fn from_markdown(documents: &[(String, String)]) -> Self {
        let mut index = DocumentIndex::default();
        for (source, markdown) in documents {
            for (heading, text) in sections(markdown) {
                let mut terms = HashMap::new();
                let mut length = 0;
                for word in words(&heading).chain(words(&text)) {
                    *terms.entry(word).or_insert(0) += 1;
                    length += 1;
                }
                if length == 0 {
                    continue;
                }
                for word in terms.keys() {
                    *index.document_frequency.entry(word.clone()).or_insert(0) += 1;
                }
                index.passages.push(Passage {
                    source: source.clone(),
                    heading,
                    text,
                    terms,
                    length,
                });
            }
        }
        let total: usize = index.passages.iter().map(|p| p.length).sum();
        index.mean_length = total as f64 / index.passages.len().max(1) as f64;
        index
    }

    /// The `limit` best passages for `query`, best first, with their
    /// scores; passages sharing no word with it are left out.
    fn search(&self, query: &str, limit: usize) -> Vec<(&Passage, f64)> {
        let mut query_words: Vec<String> = words(query).collect();
        query_words.sort();
        query_words.dedup();
        let n = self.passages.len() as f64;
        let mut scored: Vec<(&Passage, f64)> = self
            .passages
            .iter()
            .map(|passage| {
                let score = query_words
                    .iter()
                    .filter_map(|word| {
                        let tf = f64::from(*passage.terms.get(word)?);
                        let df = f64::from(self.document_frequency.get(word).copied().unwrap_or(0));
                        let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
                        let norm = K1 * (1.0 - B + B * passage.length as f64 / self.mean_length);
                        Some(idf * tf * (K1 + 1.0) / (tf + norm))
                    })
                    .sum::<f64>();
                (passage, score)
            })
            .filter(|(_, score)| *score > 0.0)
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored.truncate(limit);
        scored
    }
}

/// The sections of a markdown text, as (heading, text) pairs: text before
/// the first heading is a section with no heading.
fn sections(markdown: &str) -> Vec<(String, String)> {
    let mut sections = Vec::new();
    let mut heading = String::new();
    let mut text = String::new();
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') {
            if !text.trim().is_empty() || !heading.is_empty() {
                sections.push((heading, text.trim().to_owned()));
            }
            heading = trimmed.trim_start_matches('#').trim().to_owned();
            text = String::new();
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    if !text.trim().is_empty() || !heading.is_empty() {
        sections.push((heading, text.trim().to_owned()));
    }
    sections
}

/// A document search tool. See the module docs.
#[derive(Debug)]
pub struct DocumentTool {
    spec: ToolSpec,
    index: Arc<DocumentIndex>,
    results: usize,
}

#[async_trait]
impl Tool for DocumentTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    /// A lookup: a preemptive reply that is discarded changed nothing.
    fn safe_to_run_early(&self) -> bool {
        true
    }

    async fn call(&self, arguments: Value) -> Result<ToolOutcome, ToolError> {
        let query = arguments["query"].as_str().unwrap_or_default();
        let found: Vec<Value> = self
            .index
            .search(query, self.results)
            .into_iter()
            .map(|(passage, score)| {
                json!({
                    "source": passage.source,
                    "heading": passage.heading,
                    "text": passage.text.chars().take(MAX_PASSAGE_CHARS).collect::<String>(),
                    "score": (score * 1000.0).round() / 1000.0,
                })
            })
            .collect();
        let mut result = json!({ "results": found });
        if found.is_empty() {
            result["note"] = json!("Nothing in the documents matches; say you do not know.");
        }
        Ok(ToolOutcome::result(result.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> DocumentIndex {
        DocumentIndex::from_markdown(&[
            (
                "policies.md".into(),
                "# Returns\nItems can be returned within 30 days with the receipt.\n\
                 # Delivery\nDelivery takes two working days. Delivery is free over 50 euros.\n"
                    .into(),
            ),
            (
                "hours.md".into(),
                "Intro text.\n## Opening hours\nMonday to Saturday, 9 to 18.\n".into(),
            ),
        ])
    }

    #[test]
    fn markdown_is_cut_at_headings() {
        let found = sections("intro\n# A\none\n## B\ntwo\n#C\n");
        assert_eq!(
            found,
            [
                (String::new(), "intro".to_owned()),
                ("A".to_owned(), "one".to_owned()),
                ("B".to_owned(), "two".to_owned()),
                ("C".to_owned(), String::new()),
            ]
        );
    }

    #[test]
    fn the_passage_sharing_the_rarest_words_ranks_first() {
        let index = index();
        assert_eq!(index.passages.len(), 4);
        let found = index.search("how long does delivery take?", 3);
        assert_eq!(found[0].0.heading, "Delivery");
        let found = index.search("can I return it, receipt lost", 3);
        assert_eq!(found[0].0.heading, "Returns");
        let found = index.search("opening hours saturday", 1);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0.source, "hours.md");
        assert!(index.search("quantum chromodynamics", 3).is_empty());
    }

    #[tokio::test]
    async fn the_tool_returns_passages_or_says_nothing_matched() {
        let config: DocumentToolConfig = toml::from_str(
            "name = \"docs\"\ndescription = \"d\"\npath = \"/nonexistent/voxpipe-docs\"\n",
        )
        .unwrap();
        let error = config.build().unwrap_err().to_string();
        assert!(
            error.contains("document tool `docs`") && error.contains("cannot read"),
            "{error}"
        );
        let tool = DocumentTool {
            spec: ToolSpec {
                name: "docs".into(),
                description: String::new(),
                parameters: json!({}),
            },
            index: Arc::new(index()),
            results: 2,
        };
        let outcome = tool.call(json!({"query": "free delivery"})).await.unwrap();
        let result: Value = serde_json::from_str(&outcome.result).unwrap();
        assert_eq!(result["results"][0]["heading"], "Delivery");
        assert!(
            result["results"][0]["text"]
                .as_str()
                .unwrap()
                .contains("free over 50")
        );
        let outcome = tool.call(json!({"query": "zebra"})).await.unwrap();
        assert!(outcome.result.contains("\"note\""));
    }
}
