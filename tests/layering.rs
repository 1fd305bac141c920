//! The layering `docs/architecture.md` draws, checked on the source: a
//! module imports only from the layers below it (or its own layer, without
//! a cycle), and no file imports another file that imports it back.
//!
//! Imports are read from the text (`use` trees and `crate::` paths, doc
//! links included: a doc link to a module above is an upward reference
//! too), not from the compiler, so the check stays cheap and obvious.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Bottom to top, as in `docs/architecture.md` and `src/lib.rs`. Modules in
/// one row may import each other only one way.
const LAYERS: &[&[&str]] = &[
    &["random", "audio", "config"],
    &["conversation"],
    &["frame"],
    &["metrics", "pipeline"],
    &["events"],
    &["vad", "services", "store"],
    &["processors"],
    &["transport"],
    &["agent"],
    &["session"],
    &["pipeline_file"],
    &["server", "testing"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|row| row.contains(&module))
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under `src/`: `src/agent/eval/mod.rs` is
/// `["agent", "eval"]`, `src/frame/kind.rs` is `["frame", "kind"]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts
}

/// The text before the first `#[cfg(test)]`: tests may reach anywhere.
fn without_tests(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand_use(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let mut depth = 0;
    let mut item = String::new();
    let mut items = Vec::new();
    for ch in tree.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if ch == ',' && depth == 0 {
            items.push(std::mem::take(&mut item));
        } else {
            item.push(ch);
        }
    }
    items.push(item);
    for item in items.into_iter().filter(|i| !i.is_empty()) {
        if let Some(open) = item.find('{') {
            let head = item[..open].trim_end_matches("::");
            let inner = &item[open + 1..item.len() - 1];
            let added: Vec<String> = head
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            let n = added.len();
            prefix.extend(added);
            expand_use(inner, prefix, out);
            prefix.truncate(prefix.len() - n);
        } else {
            let item = item.split(" as ").next().unwrap_or(&item);
            let mut path = prefix.clone();
            path.extend(item.split("::").map(str::to_owned));
            out.push(path);
        }
    }
}

/// The module paths a file refers to, absolute (without `crate`).
fn references(module: &[String], text: &str) -> Vec<Vec<String>> {
    let text = without_tests(text);
    let mut paths = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        rest = &rest[at + 4..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(end) = rest.find(';') else { break };
        let tree = &rest[..end];
        let mut expanded = Vec::new();
        expand_use(tree, &mut Vec::new(), &mut expanded);
        for mut path in expanded {
            match path.first().map(String::as_str) {
                Some("crate") => {
                    path.remove(0);
                    paths.push(path);
                }
                Some("super") | Some("self") => {
                    let mut base = module.to_vec();
                    while path.first().is_some_and(|p| p == "super") {
                        base.pop();
                        path.remove(0);
                    }
                    if path.first().is_some_and(|p| p == "self") {
                        path.remove(0);
                    }
                    base.extend(path);
                    paths.push(base);
                }
                _ => {}
            }
        }
    }
    for (at, _) in text.match_indices("crate::") {
        let path: String = text[at + 7..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        paths.push(
            path.split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        );
    }
    paths
}

struct Tree {
    /// Module path to file.
    modules: BTreeMap<Vec<String>, PathBuf>,
    /// File module to the file modules it refers to.
    edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
}

fn read_tree() -> Tree {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> = files
        .iter()
        .filter(|f| !f.starts_with(src.join("cli")) && !f.ends_with("main.rs"))
        .map(|f| (module_of(&src, f), f.clone()))
        .collect();
    let resolve = |path: &[String]| -> Option<Vec<String>> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|m| modules.contains_key(m))
    };
    let mut edges = BTreeMap::new();
    for (module, file) in &modules {
        let text = fs::read_to_string(file).unwrap_or_default();
        let targets: BTreeSet<Vec<String>> = references(module, &text)
            .iter()
            .filter_map(|p| resolve(p))
            // A file may use its own ancestors' re-exports and its children.
            .filter(|t| t != module && !t.is_empty() && !module.starts_with(t))
            .collect();
        edges.insert(module.clone(), targets);
    }
    Tree { modules, edges }
}

#[test]
fn every_top_level_module_has_a_layer() {
    let tree = read_tree();
    let tops: BTreeSet<&str> = tree
        .modules
        .keys()
        .filter_map(|m| m.first().map(String::as_str))
        .collect();
    let missing: Vec<&str> = tops.into_iter().filter(|t| layer_of(t).is_none()).collect();
    assert!(
        missing.is_empty(),
        "modules with no layer (add them to LAYERS and docs/architecture.md): {missing:?}"
    );
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let tree = read_tree();
    let mut upward = Vec::new();
    let mut same_layer = BTreeSet::new();
    for (from, targets) in &tree.edges {
        let Some(from_top) = from.first() else {
            continue;
        };
        for to in targets {
            let to_top = &to[0];
            if from_top == to_top {
                continue;
            }
            match (layer_of(from_top), layer_of(to_top)) {
                (Some(a), Some(b)) if b > a => {
                    upward.push(format!("{} -> {}", from.join("::"), to.join("::")));
                }
                (Some(a), Some(b)) if a == b => {
                    same_layer.insert((from_top.clone(), to_top.clone()));
                }
                _ => {}
            }
        }
    }
    assert!(upward.is_empty(), "imports from a layer above: {upward:#?}");
    let knots: Vec<_> = same_layer
        .iter()
        .filter(|(a, b)| same_layer.contains(&(b.clone(), a.clone())))
        .collect();
    assert!(
        knots.is_empty(),
        "modules of one layer importing each other: {knots:?}"
    );
}

#[test]
fn no_file_imports_a_file_that_imports_it_back() {
    let tree = read_tree();
    let mut pairs = Vec::new();
    for (a, targets) in &tree.edges {
        for b in targets {
            if a < b && tree.edges.get(b).is_some_and(|back| back.contains(a)) {
                pairs.push(format!("{} <-> {}", a.join("::"), b.join("::")));
            }
        }
    }
    assert!(pairs.is_empty(), "files that import each other: {pairs:#?}");
}

#[test]
fn the_check_sees_an_upward_import_and_a_cycle() {
    // The reader itself: a `use` tree and a doc link are both references.
    let refs = references(
        &["store".into(), "call".into()],
        "use super::{keys::Keys, time};\n/// [x](crate::agent::Memory)\nfn f() {}",
    );
    assert!(refs.contains(&vec!["store".into(), "keys".into(), "Keys".into()]));
    assert!(refs.contains(&vec!["store".into(), "time".into()]));
    assert!(refs.contains(&vec!["agent".into(), "Memory".into()]));
    assert!(layer_of("agent") > layer_of("store"));
}
