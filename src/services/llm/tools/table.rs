//! Table lookup declared in TOML: rows of a CSV file found by their words,
//! for a catalogue agent.
//!
//! ```toml
//! [[processor.csv_tools]]
//! name = "search_catalogue"
//! description = "Look up products: name, category, price, stock."
//! path = "assets/specialists/catalogue.csv"   # first line: the column names
//! results = 5                                  # rows returned, default 5
//! ```
//!
//! A row matches when any of the query's words is one of its fields'
//! words; rows matching more words come first, then in file order. Each
//! row goes back as an object keyed by column name, each field cut at 500
//! characters and the rows at 16 KiB in all (the result says how many
//! were left out). Each row's words are found when the file is read, so a
//! search only looks them up. The file is read once per process, at the
//! first build (RFC 4180: quoted fields, `""` inside
//! quotes, CRLF or LF line ends); a file that cannot be read or parsed
//! fails the build, naming its line.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::pipeline::BuildError;
use crate::services::error::shorten;

use super::documents::MAX_SOURCE_BYTES;
use super::tool::{Tool, ToolError, ToolOutcome, ToolSpec, is_tool_name};
use super::words::words;

/// The longest field returned, in characters.
const MAX_FIELD_CHARS: usize = 500;
/// The longest result, in bytes, as for HTTP and MCP tools.
const MAX_RESULT: usize = 16 * 1024;

/// `[[processor.csv_tools]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvToolConfig {
    /// The name the model calls it by.
    pub name: String,
    /// What the table holds, for the model.
    pub description: String,
    /// The CSV file (relative to the working directory); its first line
    /// names the columns.
    pub path: PathBuf,
    /// Rows returned per search, 1 to 50. Default 5.
    #[serde(default = "default_results")]
    pub results: usize,
    /// The table, read by the first build and shared by later ones.
    #[serde(skip)]
    table: Arc<OnceLock<Arc<Table>>>,
}

fn default_results() -> usize {
    5
}

impl CsvToolConfig {
    /// The tool for one session; the file is read by the first build.
    pub fn build(&self) -> Result<CsvTool, BuildError> {
        let invalid =
            |message: String| BuildError::Invalid(format!("csv tool `{}`: {message}", self.name));
        if !is_tool_name(&self.name) {
            return Err(invalid(
                "the name must be letters, digits, `_` or `-`".into(),
            ));
        }
        if !(1..=50).contains(&self.results) {
            return Err(invalid(format!(
                "results must be between 1 and 50, not {}",
                self.results
            )));
        }
        let table = match self.table.get() {
            Some(table) => Arc::clone(table),
            None => {
                let table = Arc::new(Table::read(&self.path).map_err(invalid)?);
                Arc::clone(self.table.get_or_init(|| table))
            }
        };
        Ok(CsvTool {
            spec: ToolSpec {
                name: self.name.clone(),
                description: format!(
                    "{} Columns: {}.",
                    self.description,
                    table.columns.join(", ")
                ),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "query": {"type": "string", "description": "Words to look for in the rows (a name, a category, a code)."}
                    },
                    "required": ["query"]
                }),
            },
            table,
            results: self.results,
        })
    }
}

/// A CSV file's columns and rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Each row's words, sorted, without repeats.
    words: Vec<Vec<String>>,
}

impl Table {
    fn read(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        let size = std::fs::metadata(path)
            .map_err(|e| format!("cannot read `{shown}`: {e}"))?
            .len();
        if size > MAX_SOURCE_BYTES {
            return Err(format!("`{shown}` exceeds {MAX_SOURCE_BYTES} bytes"));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read `{shown}`: {e}"))?;
        Table::parse(&text).map_err(|e| format!("`{shown}`: {e}"))
    }

    /// The table in `text`: a header line, then one record per line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut records = parse_csv(text)?.into_iter();
        let Some((_, columns)) = records.next() else {
            return Err("the file is empty: the first line must name the columns".into());
        };
        let mut rows = Vec::new();
        for (line, row) in records {
            if row.len() == 1 && row[0].is_empty() {
                continue; // a blank line
            }
            if row.len() != columns.len() {
                return Err(format!(
                    "line {line}: {} fields, but the header names {} columns",
                    row.len(),
                    columns.len()
                ));
            }
            rows.push(row);
        }
        let words = rows
            .iter()
            .map(|row| {
                let mut row_words: Vec<String> = row.iter().flat_map(|f| words(f)).collect();
                row_words.sort_unstable();
                row_words.dedup();
                row_words
            })
            .collect();
        Ok(Table {
            columns,
            rows,
            words,
        })
    }

    /// The rows sharing the most words with `query`, best first.
    fn search(&self, query: &str, limit: usize) -> (usize, Vec<&[String]>) {
        let mut wanted: Vec<String> = words(query).collect();
        wanted.sort();
        wanted.dedup();
        let mut scored: Vec<(usize, &[String])> = self
            .rows
            .iter()
            .zip(&self.words)
            .filter_map(|(row, row_words)| {
                let hits = wanted
                    .iter()
                    .filter(|w| row_words.binary_search(w).is_ok())
                    .count();
                (hits > 0).then_some((hits, row.as_slice()))
            })
            .collect();
        // Stable: equal scores keep the file's order.
        scored.sort_by_key(|s| std::cmp::Reverse(s.0));
        let total = scored.len();
        (
            total,
            scored.into_iter().take(limit).map(|(_, row)| row).collect(),
        )
    }
}

/// The records of a CSV text, each with the line it starts on (from 1).
fn parse_csv(text: &str) -> Result<Vec<(usize, Vec<String>)>, String> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut line = 1;
    let mut start = 1;
    let mut quoted = false;
    let mut chars = text
        .strip_prefix('\u{feff}')
        .unwrap_or(text)
        .chars()
        .peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                if c == '\n' {
                    line += 1;
                }
                field.push(c);
            }
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push((start, std::mem::take(&mut record)));
                line += 1;
                start = line;
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err(format!("line {start}: a quoted field is never closed"));
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push((start, record));
    }
    Ok(records)
}

/// A CSV lookup tool. See the module docs.
#[derive(Debug)]
pub struct CsvTool {
    spec: ToolSpec,
    table: Arc<Table>,
    results: usize,
}

#[async_trait]
impl Tool for CsvTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    /// A lookup: a preemptive reply that is discarded changed nothing.
    fn safe_to_run_early(&self) -> bool {
        true
    }

    async fn call(&self, arguments: Value) -> Result<ToolOutcome, ToolError> {
        let query = arguments["query"].as_str().unwrap_or_default();
        let (matches, rows) = self.table.search(query, self.results);
        let found = rows.len();
        // Room for the rest of the answer (`matches`, the note).
        let mut room = MAX_RESULT - 256;
        let mut kept = Vec::with_capacity(found);
        for row in rows {
            let object: Map<String, Value> = self
                .table
                .columns
                .iter()
                .zip(row)
                .map(|(column, value)| {
                    (
                        shorten(column, MAX_FIELD_CHARS),
                        json!(shorten(value, MAX_FIELD_CHARS)),
                    )
                })
                .collect();
            let row = Value::Object(object);
            let size = row.to_string().len() + 1;
            if size > room {
                break;
            }
            room -= size;
            kept.push(row);
        }
        let mut result = json!({"matches": matches, "rows": kept});
        if kept.len() < found {
            result["note"] = json!(format!(
                "{} more rows matched but did not fit; ask with more precise words",
                found - kept.len()
            ));
        }
        Ok(ToolOutcome::result(result.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CATALOGUE: &str = "sku,name,category,price\r\n\
        K-100,\"Kettle, steel\",kitchen,39.90\r\n\
        T-200,Toaster,kitchen,24.50\r\n\
        L-300,\"Desk lamp \"\"Nova\"\"\",lighting,19.00\r\n\r\n";

    #[test]
    fn quoted_fields_and_line_ends_are_read_as_rfc_4180_says() {
        let table = Table::parse(CATALOGUE).unwrap();
        assert_eq!(table.columns, ["sku", "name", "category", "price"]);
        assert_eq!(table.rows.len(), 3);
        assert_eq!(table.rows[0][1], "Kettle, steel");
        assert_eq!(table.rows[2][1], "Desk lamp \"Nova\"");
        let multiline = Table::parse("a,b\n\"one\ntwo\",3\n").unwrap();
        assert_eq!(multiline.rows[0][0], "one\ntwo");
    }

    #[test]
    fn malformed_files_name_the_line() {
        let error = Table::parse("a,b\n1,2\n3\n").unwrap_err();
        assert!(error.starts_with("line 3:"), "{error}");
        let error = Table::parse("a,b\n\"open,2\n").unwrap_err();
        assert!(
            error.contains("line 2") && error.contains("never closed"),
            "{error}"
        );
        assert!(Table::parse("").is_err());
    }

    #[test]
    fn rows_matching_more_words_come_first() {
        let table = Table::parse(CATALOGUE).unwrap();
        let (total, rows) = table.search("steel kitchen kettle", 5);
        assert_eq!(total, 2);
        assert_eq!(rows[0][0], "K-100");
        assert_eq!(rows[1][0], "T-200");
        let (total, rows) = table.search("nova", 5);
        assert_eq!((total, rows[0][0].as_str()), (1, "L-300"));
        assert_eq!(table.search("sofa", 5).0, 0);
    }

    #[tokio::test]
    async fn long_fields_are_cut_and_the_rows_kept_to_the_result_limit() {
        let long = "word ".repeat(2_000);
        let mut csv = "sku,description\n".to_owned();
        for n in 0..50 {
            csv.push_str(&format!("S-{n},kettle {long}\n"));
        }
        let tool = CsvTool {
            spec: ToolSpec {
                name: "t".into(),
                description: String::new(),
                parameters: json!({}),
            },
            table: Arc::new(Table::parse(&csv).unwrap()),
            results: 50,
        };
        let outcome = tool.call(json!({"query": "kettle"})).await.unwrap();
        assert!(
            outcome.result.len() <= MAX_RESULT,
            "{}",
            outcome.result.len()
        );
        let result: Value = serde_json::from_str(&outcome.result).unwrap();
        assert_eq!(result["matches"], 50);
        let rows = result["rows"].as_array().unwrap();
        assert!(!rows.is_empty());
        let description = rows[0]["description"].as_str().unwrap();
        assert!(description.starts_with("kettle word"));
        assert_eq!(
            description.chars().count(),
            MAX_FIELD_CHARS + 1,
            "cut, with an ellipsis"
        );
        assert_eq!(
            result["note"],
            json!(format!(
                "{} more rows matched but did not fit; ask with more precise words",
                50 - rows.len()
            ))
        );
    }

    #[tokio::test]
    async fn the_tool_answers_rows_keyed_by_column() {
        let tool = CsvTool {
            spec: ToolSpec {
                name: "t".into(),
                description: String::new(),
                parameters: json!({}),
            },
            table: Arc::new(Table::parse(CATALOGUE).unwrap()),
            results: 1,
        };
        let outcome = tool.call(json!({"query": "kitchen"})).await.unwrap();
        let result: Value = serde_json::from_str(&outcome.result).unwrap();
        assert_eq!(result["matches"], 2);
        assert_eq!(
            result["rows"],
            json!([{"sku": "K-100", "name": "Kettle, steel", "category": "kitchen", "price": "39.90"}])
        );
        assert!(result.get("note").is_none());
    }
}
