//! Finding the dotted key path (`processor.0.gain_db`) of a byte offset in a
//! parsed TOML document, so that an error can name its key.

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The dotted path of the deepest key whose key or value covers `offset`.
pub(crate) fn key_path_at(root: &DeTable<'_>, offset: usize) -> Vec<String> {
    let mut path = Vec::new();
    walk_table(root, offset, &mut path);
    path
}

fn walk_table(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>) {
    for (key, value) in table.iter() {
        if covers(key.span(), offset) {
            path.push(key.get_ref().to_string());
            return;
        }
        if covers(value.span(), offset) {
            path.push(key.get_ref().to_string());
            walk_value(value, offset, path);
            return;
        }
    }
    // Tables written as `[header]` sections span only their header: look for
    // the section whose keys cover the offset.
    for (key, value) in table.iter() {
        let mut inner = Vec::new();
        walk_value(value, offset, &mut inner);
        if !inner.is_empty() {
            path.push(key.get_ref().to_string());
            path.extend(inner);
            return;
        }
    }
}

fn walk_value(value: &Spanned<DeValue<'_>>, offset: usize, path: &mut Vec<String>) {
    match value.get_ref() {
        DeValue::Table(table) => walk_table(table, offset, path),
        DeValue::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let mut inner = Vec::new();
                walk_value(item, offset, &mut inner);
                if covers(item.span(), offset) || !inner.is_empty() {
                    path.push(index.to_string());
                    path.extend(inner);
                    return;
                }
            }
        }
        _ => {}
    }
}

fn covers(span: std::ops::Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end.max(span.start + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of(text: &str, needle: &str) -> String {
        let root = DeTable::parse(text).unwrap();
        key_path_at(root.get_ref(), text.find(needle).unwrap()).join(".")
    }

    #[test]
    fn finds_keys_in_sections_and_arrays_of_tables() {
        let text = "[pipeline]\nname = \"x\"\n\n[[processor]]\ntype = \"gain\"\n\n[[processor]]\ntype = \"vad\"\nstop_secs = \"slow\"\n";
        assert_eq!(path_of(text, "\"x\""), "pipeline.name");
        assert_eq!(path_of(text, "\"gain\""), "processor.0.type");
        assert_eq!(path_of(text, "stop_secs"), "processor.1.stop_secs");
        assert_eq!(path_of(text, "\"slow\""), "processor.1.stop_secs");
    }

    #[test]
    fn finds_keys_in_inline_tables_and_dotted_keys() {
        let text = "transport.twilio = { auth_token_env = 3 }\n";
        assert_eq!(path_of(text, "3"), "transport.twilio.auth_token_env");
    }
}
