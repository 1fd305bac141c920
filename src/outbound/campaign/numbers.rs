//! A campaign's numbers from a JSON list or a CSV text: each number
//! checked (E.164), duplicates kept once, bad rows reported by line while
//! the good ones are kept.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::outbound::{PhoneNumber, check_parameters};
use crate::store::CampaignEntry;

/// One number of a JSON list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumberItem {
    /// The number (checked per item: a bad one is a rejected row).
    pub to: String,
    /// The call's custom parameters.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
}

/// A row that was not queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedRow {
    /// The CSV line (the header is line 1), or the list position (from 1).
    pub line: u64,
    /// Why.
    pub reason: String,
}

/// The numbers to queue and what was left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Numbers {
    /// The numbers, each once, in the order given.
    pub entries: Vec<CampaignEntry>,
    /// Rows refused.
    pub rejected: Vec<RejectedRow>,
    /// Rows whose number an earlier row has (dialled once).
    pub duplicates: u64,
}

impl Numbers {
    /// Adds row `line`'s number unless bad or already listed.
    fn add(
        &mut self,
        seen: &mut HashMap<String, u64>,
        line: u64,
        to: &str,
        parameters: BTreeMap<String, String>,
    ) {
        if let Err(err) = check_parameters(&parameters) {
            return self.reject(line, err.to_string());
        }
        match PhoneNumber::parse(to) {
            Err(err) => self.reject(line, err.to_string()),
            Ok(number) => {
                if seen.insert(number.as_str().to_owned(), line).is_some() {
                    self.duplicates += 1;
                } else {
                    self.entries.push(CampaignEntry {
                        to: number.into(),
                        parameters,
                    });
                }
            }
        }
    }

    fn reject(&mut self, line: u64, reason: impl Into<String>) {
        self.rejected.push(RejectedRow {
            line,
            reason: reason.into(),
        });
    }

    /// The numbers of a JSON list.
    pub fn from_list(items: Vec<NumberItem>) -> Numbers {
        let mut numbers = Numbers::default();
        let mut seen = HashMap::new();
        for (line, item) in (1..).zip(items) {
            numbers.add(&mut seen, line, &item.to, item.parameters);
        }
        numbers
    }

    /// The numbers of a CSV text: a header line naming the columns, one of
    /// them `to`; the others become each call's parameters (empty cells
    /// left out). Fields may be quoted (`"a, b"`, `""` for a quote).
    pub fn from_csv(text: &str) -> Result<Numbers, CsvError> {
        // Excel's "CSV UTF-8" starts with a byte-order mark.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = (1..)
            .zip(text.lines())
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines.next().ok_or(CsvError::NoHeader)?;
        let columns = split_row(header).map_err(|_| CsvError::NoHeader)?;
        let columns: Vec<String> = columns.iter().map(|c| c.trim().to_owned()).collect();
        let to_column = columns
            .iter()
            .position(|c| c == "to")
            .ok_or(CsvError::NoToColumn)?;
        let mut numbers = Numbers::default();
        let mut seen = HashMap::new();
        for (line, row) in lines {
            let cells = match split_row(row) {
                Ok(cells) => cells,
                Err(reason) => {
                    numbers.reject(line, reason);
                    continue;
                }
            };
            if cells.len() != columns.len() {
                let reason = format!("{} fields, the header has {}", cells.len(), columns.len());
                numbers.reject(line, reason);
                continue;
            }
            let parameters = columns
                .iter()
                .zip(&cells)
                .enumerate()
                .filter(|&(i, (_, cell))| i != to_column && !cell.is_empty())
                .map(|(_, (name, cell))| (name.clone(), cell.clone()))
                .collect();
            numbers.add(&mut seen, line, &cells[to_column], parameters);
        }
        Ok(numbers)
    }
}

/// A CSV text no row of which can be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    /// Empty, or the header cannot be read.
    #[error("the CSV has no header line naming its columns")]
    NoHeader,
    /// The header has no `to` column.
    #[error("the CSV header has no `to` column")]
    NoToColumn,
}

/// One CSV line's fields (RFC 4180 quoting, within the line).
fn split_row(line: &str) -> Result<Vec<String>, &'static str> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("a quoted field is not closed on its line"),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {}
                Some(_) => return Err("text after a quoted field"),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field.trim().to_owned());
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some(c) => field.push(c),
                }
            }
            field = field.trim().to_owned();
        }
        fields.push(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_are_checked_one_by_one() {
        let csv = "to,country,industry\n\
                   +15551230001,US,healthcare\n\
                   5551230002,US,retail\n\
                   +15551230003,\"GB\"\n\
                   +15551230001,US,dup\n\
                   \"+15551230004\",\"U,S\",\n\
                   \n\
                   +15551230005,\"US,x\n";
        let numbers = Numbers::from_csv(csv).unwrap();
        let tos: Vec<&str> = numbers.entries.iter().map(|e| e.to.as_str()).collect();
        assert_eq!(tos, ["+15551230001", "+15551230004"]);
        assert_eq!(numbers.entries[0].parameters["industry"], "healthcare");
        assert_eq!(numbers.entries[1].parameters["country"], "U,S");
        assert!(!numbers.entries[1].parameters.contains_key("industry"));
        assert_eq!(numbers.duplicates, 1);
        let lines: Vec<u64> = numbers.rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, [3, 4, 8]);
        assert!(numbers.rejected[0].reason.contains("E.164"));
    }

    #[test]
    fn a_csv_saved_by_excel_with_a_byte_order_mark_is_read() {
        let numbers = Numbers::from_csv("\u{feff}to,name\n+15551230001,Ada\n").unwrap();
        assert_eq!(numbers.entries[0].to, "+15551230001");
        assert_eq!(numbers.entries[0].parameters["name"], "Ada");
    }

    #[test]
    fn a_row_whose_parameters_do_not_fit_a_calls_twiml_is_refused() {
        let csv = format!(
            "to,notes\n+15551230001,short\n+15551230002,{}\n",
            "x".repeat(4_000)
        );
        let numbers = Numbers::from_csv(&csv).unwrap();
        assert_eq!(numbers.entries.len(), 1);
        assert_eq!(numbers.rejected[0].line, 3);
        assert!(numbers.rejected[0].reason.contains("TwiML"));
    }

    #[test]
    fn a_csv_needs_a_to_column() {
        assert_eq!(Numbers::from_csv(""), Err(CsvError::NoHeader));
        assert_eq!(
            Numbers::from_csv("phone\n+15551230001\n"),
            Err(CsvError::NoToColumn)
        );
    }

    #[test]
    fn list_items_are_numbered_from_one() {
        let items = serde_json::from_str::<Vec<NumberItem>>(
            r#"[{"to": "+15551230001"}, {"to": "nope"}, {"to": " +15551230001 "}]"#,
        )
        .unwrap();
        let numbers = Numbers::from_list(items);
        assert_eq!(numbers.entries.len(), 1);
        assert_eq!(numbers.rejected[0].line, 2);
        assert_eq!(numbers.duplicates, 1);
    }
}
