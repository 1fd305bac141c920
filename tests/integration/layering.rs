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

/// Bottom to top, as in `docs/architecture.md`. Modules in
/// one row may import each other only one way.
const LAYERS: &[&[&str]] = &[
    &["random", "audio", "config"],
    &["conversation"],
    &["frame"],
    &["metrics", "pipeline"],
    &["events"],
    &["vad", "services", "store", "objects"],
    &["processors"],
    &["transport"],
    &["agent", "recording"],
    &["outbound"],
    &["session", "text"],
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

/// The text before the `#[cfg(test)] mod …` block: tests may reach
/// anywhere. A `#[cfg(test)]` on anything else (a helper method) is code
/// like the rest and stays in.
fn without_tests(text: &str) -> &str {
    let mut from = 0;
    while let Some(at) = text[from..].find("#[cfg(test)]") {
        let at = from + at;
        let after = text[at + "#[cfg(test)]".len()..].trim_start();
        if after.starts_with("mod ") || after.starts_with("pub(crate) mod ") {
            return &text[..at];
        }
        from = at + 1;
    }
    text
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand_use(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    // `a as b` keeps `a`: drop the rename before the spaces go.
    let mut renamed = String::with_capacity(tree.len());
    let mut rest = tree;
    while let Some(at) = rest.find(" as ") {
        renamed.push_str(&rest[..at]);
        rest = rest[at + 4..].trim_start();
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        rest = &rest[end..];
    }
    renamed.push_str(rest);
    let tree: String = renamed.chars().filter(|c| !c.is_whitespace()).collect();
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
            let mut path = prefix.clone();
            path.extend(item.split("::").map(str::to_owned));
            out.push(path);
        }
    }
}

/// One `use` of a file: its expanded paths, and whether it re-exports
/// them (`pub use`, `pub(crate) use`).
struct Use {
    paths: Vec<Vec<String>>,
    public: bool,
}

/// The `use` statements of a file's text, expanded.
fn uses(text: &str) -> Vec<Use> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("use ") {
        let before = &rest[..at];
        rest = &rest[at + 4..];
        if before
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let line_start = before.rfind('\n').map_or(0, |n| n + 1);
        let lead = before[line_start..].trim();
        if lead.starts_with("//") {
            continue;
        }
        let Some(end) = rest.find(';') else { break };
        let mut paths = Vec::new();
        expand_use(&rest[..end], &mut Vec::new(), &mut paths);
        found.push(Use {
            paths,
            public: lead.starts_with("pub"),
        });
    }
    found
}

/// `path` as written in `module`, made absolute (without `crate`), if it
/// is a path into this crate.
fn absolute(
    module: &[String],
    mut path: Vec<String>,
    modules: &BTreeMap<Vec<String>, PathBuf>,
) -> Option<Vec<String>> {
    match path.first().map(String::as_str) {
        Some("crate") => {
            path.remove(0);
            Some(path)
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
            Some(base)
        }
        // `use child::X` in a module that has a child module `child`.
        Some(first) => {
            let mut child = module.to_vec();
            child.push(first.to_owned());
            modules.contains_key(&child).then(|| {
                let mut base = module.to_vec();
                base.extend(path);
                base
            })
        }
        None => None,
    }
}

/// The `crate::` paths a text names outside `use` statements (paths in
/// code and doc links: a doc link to a module above is an upward
/// reference too).
fn inline_paths(text: &str) -> Vec<Vec<String>> {
    text.match_indices("crate::")
        .map(|(at, _)| {
            text[at + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect::<String>()
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

struct Tree {
    /// Module path to file.
    modules: BTreeMap<Vec<String>, PathBuf>,
    /// File module to the file modules it refers to, through re-exports
    /// to the file that defines what it names.
    edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
}

fn read_tree(src: &Path) -> Tree {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> = files
        .iter()
        .filter(|f| !f.starts_with(src.join("cli")) && !f.ends_with("main.rs"))
        .map(|f| (module_of(src, f), f.clone()))
        .collect();
    let texts: BTreeMap<Vec<String>, String> = modules
        .iter()
        .map(|(m, f)| {
            let text = fs::read_to_string(f).unwrap_or_default();
            (m.clone(), without_tests(&text).to_owned())
        })
        .collect();
    // What each module re-exports: name to the absolute path it stands for.
    let mut reexports: BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (module, text) in &texts {
        for u in uses(text).into_iter().filter(|u| u.public) {
            for path in u.paths {
                if let Some(full) = absolute(module, path, &modules)
                    && let Some(name) = full.last().filter(|n| *n != "self")
                {
                    reexports
                        .entry(module.clone())
                        .or_default()
                        .insert(name.clone(), full.clone());
                }
            }
        }
    }
    // The file that defines what `path` names, following re-exports.
    let resolve = |path: &[String]| -> Option<Vec<String>> {
        let mut path = path.to_vec();
        for _ in 0..8 {
            let module = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|m| modules.contains_key(m))?;
            let rest = &path[module.len()..];
            match rest
                .first()
                .and_then(|name| reexports.get(&module)?.get(name))
            {
                Some(target) if target.as_slice() != path.as_slice() => {
                    let mut next = target.clone();
                    next.extend(rest[1..].iter().cloned());
                    path = next;
                }
                _ => return Some(module),
            }
        }
        None
    };
    let mut edges = BTreeMap::new();
    for (module, text) in &texts {
        let mut paths: Vec<Vec<String>> = uses(text)
            .into_iter()
            .flat_map(|u| u.paths)
            .filter_map(|p| absolute(module, p, &modules))
            .collect();
        paths.extend(inline_paths(text));
        let targets: BTreeSet<Vec<String>> = paths
            .iter()
            // A link to an enclosing module's page (`crate::store` from
            // `store/api.rs`) names no item of it.
            .filter(|p| !module.starts_with(p))
            .filter_map(|p| resolve(p))
            .filter(|t| t != module && !t.is_empty())
            .collect();
        edges.insert(module.clone(), targets);
    }
    Tree { modules, edges }
}

fn src_tree() -> Tree {
    read_tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

/// `from -> to` for every reference to a module of a layer above.
fn upward_imports(tree: &Tree) -> Vec<String> {
    let mut upward = Vec::new();
    for (from, targets) in &tree.edges {
        let Some(from_top) = from.first() else {
            continue;
        };
        for to in targets {
            if let (Some(a), Some(b)) = (layer_of(from_top), layer_of(&to[0]))
                && b > a
            {
                upward.push(format!("{} -> {}", from.join("::"), to.join("::")));
            }
        }
    }
    upward
}

/// Groups of files that import each other, directly or around a loop
/// (Tarjan's strongly connected components of more than one file).
fn cycles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<String>> {
    struct Search<'a> {
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on_stack: BTreeSet<&'a Vec<String>>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut Search<'a>, v: &'a Vec<String>) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            let Some((w, _)) = s.edges.get_key_value(w) else {
                continue;
            };
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut group = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                group.push(w.join("::"));
                if w == v {
                    break;
                }
            }
            if group.len() > 1 {
                group.sort();
                s.found.push(group);
            }
        }
    }
    let mut search = Search {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !search.index.contains_key(v) {
            visit(&mut search, v);
        }
    }
    search.found
}

/// Top-level modules of one layer that import each other.
fn same_layer_knots(tree: &Tree) -> Vec<(String, String)> {
    let mut tops: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (from, targets) in &tree.edges {
        for to in targets {
            if from.first() != to.first() && layer_of(&from[0]) == layer_of(&to[0]) {
                tops.entry(vec![from[0].clone()])
                    .or_default()
                    .insert(vec![to[0].clone()]);
            }
        }
    }
    cycles(&tops)
        .into_iter()
        .map(|group| (group[0].clone(), group[1..].join(", ")))
        .collect()
}

#[test]
fn every_top_level_module_has_a_layer() {
    let tree = src_tree();
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
    let tree = src_tree();
    let upward = upward_imports(&tree);
    assert!(upward.is_empty(), "imports from a layer above: {upward:#?}");
    let knots = same_layer_knots(&tree);
    assert!(
        knots.is_empty(),
        "modules of one layer importing each other: {knots:?}"
    );
}

#[test]
fn no_file_imports_a_file_that_imports_it_back() {
    let tree = src_tree();
    let loops = cycles(&tree.edges);
    assert!(loops.is_empty(), "files that import each other: {loops:#?}");
}

#[test]
fn the_checks_see_an_upward_import_and_a_cycle_through_a_reexport() {
    // A small crate: `frame/x.rs` and `frame/y.rs` import each other, one
    // through `frame/mod.rs`'s re-export, around a third file; `frame`
    // links a doc to `agent`, a layer above; a `#[cfg(test)]` helper
    // method does not hide the code after it.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let write = |path: &str, text: &str| {
        let path = src.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    };
    write("lib.rs", "pub mod agent;\npub mod frame;\n");
    write("agent/mod.rs", "pub struct Memory;\n");
    write(
        "frame/mod.rs",
        "//! See [the memory](crate::agent::Memory).\nmod x;\nmod y;\nmod z;\npub use x::X;\n",
    );
    write("frame/x.rs", "use super::z::Z;\npub struct X(Z);\n");
    write(
        "frame/y.rs",
        "pub struct Y;\nimpl Y {\n    #[cfg(test)]\n    fn t() {}\n}\nuse super::X as Renamed;\n",
    );
    write("frame/z.rs", "use super::y::Y;\npub struct Z(Y);\n");
    let tree = read_tree(src);
    assert_eq!(upward_imports(&tree), ["frame -> agent"]);
    assert_eq!(
        cycles(&tree.edges),
        [vec![
            "frame::x".to_owned(),
            "frame::y".into(),
            "frame::z".into()
        ]]
    );
}
