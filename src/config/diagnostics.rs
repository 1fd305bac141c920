//! Errors in the words of a TOML file: parser and serde errors turned into
//! [`ConfigError`]s that name the file, the line and the key, and errors
//! that `--set` overrides caused blamed on them.

use std::path::{Path, PathBuf};

use toml::de::DeTable;

use super::error::{ConfigError, ConfigErrors, Location};
use super::keypath::key_path_at;
use super::overrides::Override;

/// Turns parser and serde errors into [`ConfigError`]s for one text.
pub(crate) struct Errors<'a> {
    /// The file the text came from.
    pub(crate) path: &'a Path,
    /// The text.
    pub(crate) text: &'a str,
}

impl Errors<'_> {
    pub(crate) fn location(&self, offset: usize) -> Location {
        Location::at(PathBuf::from(self.path), self.text, offset)
    }

    pub(crate) fn key_error(&self, offset: usize, key: String, message: String) -> ConfigError {
        ConfigError::Key {
            location: self.location(offset),
            key,
            message,
        }
    }

    pub(crate) fn toml_error(&self, lookup: &DeTable<'_>, error: &toml::de::Error) -> ConfigError {
        let message = error.message().trim().to_owned();
        let offset = error.span().map_or(0, |span| span.start);
        let mut path = key_path_at(lookup, offset);
        if path.is_empty() && lookup.is_empty() {
            return ConfigError::Syntax {
                location: self.location(offset),
                message,
            };
        }
        // serde reports a missing field at the table that lacks it.
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            path.push(field.to_owned());
            return self.key_error(
                offset,
                path.join("."),
                format!("missing required key `{field}`"),
            );
        }
        let message = plain_types(&message);
        if path.is_empty() {
            // A root-level unknown key spans only itself.
            if let Some(key) = message
                .strip_prefix("unknown key `")
                .and_then(|rest| rest.split('`').next())
            {
                path.push(key.to_owned());
            }
        }
        self.key_error(offset, path.join("."), message)
    }
}

/// serde's words for types, in the words of a TOML file.
fn plain_types(message: &str) -> String {
    let mut message = message.replace("unknown field", "unknown key");
    if message.starts_with("unknown key") {
        message = message.replace("expected one of", "expected one of the keys");
    }
    for (serde_word, toml_word) in [
        ("expected f32", "expected a number"),
        ("expected f64", "expected a number"),
        ("expected u8", "expected a whole number"),
        ("expected u16", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected usize", "expected a whole number"),
        ("expected i32", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected a sequence", "expected an array"),
    ] {
        if let Some(rest) = message.strip_suffix(serde_word) {
            message = format!("{rest}{toml_word}");
        }
    }
    if let Some(at) = message.find("expected struct ") {
        message.truncate(at);
        message.push_str("expected a table");
    }
    message
}

/// Points each error that an override caused at the override.
pub(crate) fn blame_overrides(errors: ConfigErrors, overrides: &[Override]) -> ConfigErrors {
    ConfigErrors(
        errors
            .0
            .into_iter()
            .map(|error| {
                let ConfigError::Key { key, message, .. } = &error else {
                    return error;
                };
                let key_path: Vec<&str> = key.split('.').collect();
                let culprit = overrides.iter().rev().find(|o| {
                    let n = key_path.len().min(o.path().len());
                    key_path[..n]
                        == o.path()[..n].iter().map(String::as_str).collect::<Vec<_>>()[..]
                });
                match culprit {
                    Some(o) => ConfigError::Override {
                        spec: o.spec().to_owned(),
                        message: format!("key `{key}`: {message}"),
                    },
                    None => error,
                }
            })
            .collect(),
    )
}
