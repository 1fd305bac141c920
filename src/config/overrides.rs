//! `--set key.path=value` overrides, applied to the TOML text before it is
//! validated.
//!
//! A path is dotted; a numeric segment indexes an array (of tables):
//! `processor.0.gain_db=-6`. The value is read as a TOML value (`-6`,
//! `true`, `"text"`, `[1, 2]`) and, when it is not one, as a bare string
//! (`context.store=redis`, `base_url=http://127.0.0.1:8080/v1`). Missing
//! tables on the way are created; indexing past the end of an array is an
//! error. Whether the key exists in the schema is checked afterwards, by the
//! same validation as the file itself.

use std::str::FromStr;

use toml_edit::{DocumentMut, Item, Value};

use super::error::ConfigError;

/// One parsed `--set` override.
#[derive(Debug, Clone)]
pub struct Override {
    spec: String,
    path: Vec<String>,
    value: Value,
}

impl Override {
    /// The override as the user wrote it.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// The dotted path, split.
    pub fn path(&self) -> &[String] {
        &self.path
    }
}

impl FromStr for Override {
    type Err = ConfigError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let bad = |message: &str| ConfigError::Override {
            spec: spec.to_owned(),
            message: message.to_owned(),
        };
        let (path, raw) = spec
            .split_once('=')
            .ok_or_else(|| bad("expected key.path=value"))?;
        let path: Vec<String> = path.trim().split('.').map(str::to_owned).collect();
        if path.iter().any(String::is_empty) {
            return Err(bad("the key path has an empty segment"));
        }
        let value = Value::from_str(raw.trim()).unwrap_or_else(|_| Value::from(raw.trim()));
        Ok(Override {
            spec: spec.to_owned(),
            path,
            value,
        })
    }
}

/// Applies every override to `text`, giving back the new TOML text.
pub(crate) fn apply(text: &str, overrides: &[Override]) -> Result<String, ConfigError> {
    let mut doc = DocumentMut::from_str(text).map_err(|e| ConfigError::Override {
        spec: overrides
            .first()
            .map(|o| o.spec.clone())
            .unwrap_or_default(),
        message: format!("the file is not valid TOML: {e}"),
    })?;
    for o in overrides {
        set(doc.as_item_mut(), &o.path, o.value.clone()).map_err(|message| {
            ConfigError::Override {
                spec: o.spec.clone(),
                message,
            }
        })?;
    }
    Ok(doc.to_string())
}

fn set(item: &mut Item, path: &[String], value: Value) -> Result<(), String> {
    let Some((segment, rest)) = path.split_first() else {
        return Err("empty key path".into());
    };
    let index = segment.parse::<usize>().ok();
    let child: &mut Item = match (item, index) {
        (Item::ArrayOfTables(array), Some(i)) => {
            let len = array.len();
            let table = array
                .get_mut(i)
                .ok_or_else(|| format!("index {i} is past the end ({len} entries)"))?;
            return if rest.is_empty() {
                Err(format!("`{segment}` is a table; name a key inside it"))
            } else {
                set_in_table(table, rest, value)
            };
        }
        (Item::Value(Value::Array(array)), Some(i)) => {
            let len = array.len();
            let slot = array
                .get_mut(i)
                .ok_or_else(|| format!("index {i} is past the end ({len} entries)"))?;
            return set_in_value(slot, rest, value);
        }
        (item, _) => {
            let table = item
                .as_table_like_mut()
                .ok_or_else(|| format!("`{segment}`: the value above it is not a table"))?;
            if rest.is_empty() {
                table.insert(segment, Item::Value(value));
                return Ok(());
            }
            if table.get(segment).is_none() {
                table.insert(segment, Item::Table(toml_edit::Table::new()));
            }
            table
                .get_mut(segment)
                .ok_or_else(|| format!("`{segment}` could not be created"))?
        }
    };
    set(child, rest, value)
}

/// Sets `path` inside a value written inline: an array's entry by its
/// index, an inline table's key (created if missing), at any depth (a
/// `parallel` processor's `branches`, `ice_servers` entries).
fn set_in_value(target: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let Some((segment, rest)) = path.split_first() else {
        *target = value;
        return Ok(());
    };
    match target {
        Value::Array(array) => {
            let i = segment
                .parse::<usize>()
                .map_err(|_| format!("`{segment}` is not an index, and the value is an array"))?;
            let len = array.len();
            let slot = array
                .get_mut(i)
                .ok_or_else(|| format!("index {i} is past the end ({len} entries)"))?;
            set_in_value(slot, rest, value)
        }
        Value::InlineTable(table) => {
            if rest.is_empty() {
                table.insert(segment, value);
                return Ok(());
            }
            if table.get(segment).is_none() {
                table.insert(segment, Value::InlineTable(toml_edit::InlineTable::new()));
            }
            let child = table
                .get_mut(segment)
                .ok_or_else(|| format!("`{segment}` could not be created"))?;
            set_in_value(child, rest, value)
        }
        _ => Err(format!(
            "`{segment}`: the value above it is neither a table nor an array"
        )),
    }
}

fn set_in_table(table: &mut toml_edit::Table, path: &[String], value: Value) -> Result<(), String> {
    let mut item = Item::Table(std::mem::take(table));
    let result = set(&mut item, path, value);
    if let Item::Table(t) = item {
        *table = t;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(spec: &str) -> Override {
        spec.parse().unwrap()
    }

    const FILE: &str =
        "[pipeline]\nname = \"x\"\n\n[[processor]]\ntype = \"gain\"\ngain_db = 3.0\n";

    #[test]
    fn sets_keys_in_arrays_of_tables_and_creates_missing_tables() {
        let out = apply(
            FILE,
            &[
                o("processor.0.gain_db=-6"),
                o("context.store=redis"),
                o("pipeline.name=\"y\""),
            ],
        )
        .unwrap();
        let value: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(value["processor"][0]["gain_db"].as_integer(), Some(-6));
        assert_eq!(value["context"]["store"].as_str(), Some("redis"));
        assert_eq!(value["pipeline"]["name"].as_str(), Some("y"));
    }

    #[test]
    fn sets_keys_inside_values_written_inline() {
        let file = "[pipeline]\nname = \"x\"\n\n[[processor]]\ntype = \"parallel\"\n\
                    branches = [[{ type = \"gain\", gain_db = 3.0 }], [{ type = \"parrot\" }]]\n\n\
                    [transport.webrtc]\nice_servers = [{ urls = [\"stun:a\"] }, { urls = [\"turn:b\"] }]\n";
        let out = apply(
            file,
            &[
                o("processor.0.branches.0.0.gain_db=-3"),
                o("transport.webrtc.ice_servers.1.credential_env=TURN_PASS"),
                o("transport.webrtc.ice_servers.0.urls.0=stun:c"),
            ],
        )
        .unwrap();
        let value: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(
            value["processor"][0]["branches"][0][0]["gain_db"].as_integer(),
            Some(-3)
        );
        let servers = &value["transport"]["webrtc"]["ice_servers"];
        assert_eq!(servers[1]["credential_env"].as_str(), Some("TURN_PASS"));
        assert_eq!(servers[0]["urls"][0].as_str(), Some("stun:c"));
        let past = apply(file, &[o("processor.0.branches.5.0.gain_db=1")]).unwrap_err();
        assert!(past.to_string().contains("past the end"), "{past}");
    }

    #[test]
    fn bare_words_and_urls_become_strings() {
        assert_eq!(
            o("a.base_url=http://127.0.0.1:9/v1").value.as_str(),
            Some("http://127.0.0.1:9/v1")
        );
        assert_eq!(o("a.b=true").value.as_bool(), Some(true));
    }

    #[test]
    fn rejects_bad_specs_and_indexes_past_the_end() {
        assert!("novalue".parse::<Override>().is_err());
        assert!("a..b=1".parse::<Override>().is_err());
        let err = apply(FILE, &[o("processor.3.gain_db=1")]).unwrap_err();
        assert!(err.to_string().contains("past the end"), "{err}");
        let err = apply(FILE, &[o("pipeline.name.deeper=1")]).unwrap_err();
        assert!(err.to_string().contains("not a table"), "{err}");
    }
}
