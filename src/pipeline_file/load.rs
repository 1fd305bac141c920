//! Reading and validating a pipeline file.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::agent::skills::search_context_stand_in;
use crate::config::{
    ConfigError, ConfigErrors, Errors, Override, PipelineSection, apply_overrides, blame_overrides,
};
use crate::pipeline::{BuildError, ProcessorEntry};
use crate::processors::{ParallelFactory, ProcessorRegistry};
use crate::services::llm::tools::ToolRegistry;

use super::config::{PipelineConfig, Sections};
use super::section_checks::{section_problems, start_problems};

/// Reads `path`, applies `overrides`, and validates the result against
/// `registry`. The file is validated as written first, so that its errors
/// name its own lines; errors the overrides bring are reported against them.
pub fn load_pipeline(
    path: &Path,
    overrides: &[Override],
    registry: &ProcessorRegistry,
) -> Result<PipelineConfig, ConfigErrors> {
    load_text(path, overrides, registry).map(|(config, _text)| config)
}

/// [`load_pipeline`], and the text it read (with the overrides applied).
fn load_text(
    path: &Path,
    overrides: &[Override],
    registry: &ProcessorRegistry,
) -> Result<(PipelineConfig, String), ConfigErrors> {
    with_overrides(path, read_text(path)?, overrides, registry)
}

/// Validates pipeline TOML `text`, read from `path`, then again with
/// `overrides` applied: [`load_pipeline`] without the file system.
pub fn parse_pipeline_with_overrides(
    path: &Path,
    text: &str,
    overrides: &[Override],
    registry: &ProcessorRegistry,
) -> Result<PipelineConfig, ConfigErrors> {
    with_overrides(path, text.to_owned(), overrides, registry).map(|(config, _text)| config)
}

/// The file as written is validated first, so that its errors name its own
/// lines; errors the overrides bring are reported against them.
fn with_overrides(
    path: &Path,
    text: String,
    overrides: &[Override],
    registry: &ProcessorRegistry,
) -> Result<(PipelineConfig, String), ConfigErrors> {
    let config = parse_pipeline(path, &text, registry)?;
    if overrides.is_empty() {
        return Ok((config, text));
    }
    let changed = apply_overrides(&text, overrides)?;
    let config = parse_pipeline(path, &changed, registry)
        .map_err(|errors| blame_overrides(errors, overrides))?;
    Ok((config, changed))
}

/// The file's text. A file that is not UTF-8 is an error at the first bad
/// byte, naming its line and the key it is in.
fn read_text(path: &Path) -> Result<String, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|err| {
        let offset = err.utf8_error().valid_up_to();
        let text = String::from_utf8_lossy(err.as_bytes());
        let key = DeTable::parse(&text)
            .ok()
            .map(|root| crate::config::key_path_at(root.get_ref(), offset).join("."))
            .filter(|key| !key.is_empty())
            .unwrap_or_else(|| "-".to_owned());
        Errors { path, text: &text }.key_error(
            offset,
            key,
            "the file is not valid UTF-8 here: write the value as UTF-8".to_owned(),
        )
    })
}

/// [`load_pipeline`], then each processor built once as every session
/// will build it, so that what loads but cannot run (`gain_db = 100`, a
/// rate the resampler does not take) is refused here too, naming the file,
/// the line and the key: `voxpipe check` refuses what `run` and `serve`
/// refuse. Secrets are not needed: a `*_env` variable that is not set is
/// left to the server's start or the session to report. Call it inside a
/// Tokio runtime (a processor may start tasks as it is built).
pub fn load_and_probe(
    path: &Path,
    overrides: &[Override],
    registry: &ProcessorRegistry,
) -> Result<PipelineConfig, ConfigErrors> {
    let text = read_text(path)?;
    let written = parse_pipeline(path, &text, registry)?;
    if overrides.is_empty() {
        probe(path, &text, &written)?;
        return Ok(written);
    }
    // What the overrides leave wrong (they may also mend the file: a
    // `--set server.public_host=…`): a problem the file has as written is
    // named at the file's own line (the rewritten text's lines are not the
    // file's); any other is blamed on the override that set its key.
    let (config, changed) = with_overrides(path, text.clone(), overrides, registry)?;
    let Err(left) = probe(path, &changed, &config) else {
        return Ok(config);
    };
    let mut in_the_file = probe(path, &text, &written)
        .err()
        .map_or_else(Vec::new, |e| e.0);
    let mut blamed = Vec::new();
    let mut from_overrides = Vec::new();
    for error in left.0 {
        // The same problem in the file as written is the file's own.
        let written_at = match &error {
            ConfigError::Key { key, message, .. } => in_the_file.iter().position(|e| {
                matches!(e, ConfigError::Key { key: k, message: m, .. } if k == key && m == message)
            }),
            _ => None,
        };
        match written_at {
            Some(at) => blamed.push(in_the_file.swap_remove(at)),
            None => from_overrides.push(error),
        }
    }
    blamed.extend(blame_overrides(ConfigErrors(from_overrides), overrides).0);
    Err(ConfigErrors(blamed))
}

/// What the start refuses in `config` (read from `text`) though it parses,
/// and each processor built once, as every session will: what cannot be
/// built, blamed on its key.
fn probe(path: &Path, text: &str, config: &PipelineConfig) -> Result<(), ConfigErrors> {
    let Ok(root) = DeTable::parse(text) else {
        return Ok(());
    };
    let lookup = root.get_ref();
    let errors = Errors { path, text };
    let setup = config.session_setup("check");
    if config.context.skills.is_some() {
        // An LLM may name search_context, which the agent runtime serves.
        let mut tools = setup
            .resources
            .get::<ToolRegistry>(ToolRegistry::RESOURCE)
            .map_or_else(ToolRegistry::builtin, |r| ToolRegistry::clone(&r));
        tools.register(search_context_stand_in());
        setup.resources.insert(ToolRegistry::RESOURCE, tools);
    }
    let mut found: Vec<ConfigError> = start_problems(config)
        .into_iter()
        .map(|problem| {
            let at = key_offset(lookup, &problem.key);
            errors.key_error(at, problem.key, problem.message)
        })
        .collect();
    for (index, entry) in config.processors.iter().enumerate() {
        let problem = match entry.factory.build(&setup) {
            Ok(_) | Err(BuildError::MissingEnv { .. }) => continue,
            Err(err) => err.to_string(),
        };
        let (offset, key) = processor_key(lookup, index, &problem);
        found.push(errors.key_error(offset, key, problem));
    }
    if found.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(found))
    }
}

/// Where to blame a build problem of processor `index`: the key its
/// message starts with (`gain_db must be …`) when the table has it, else
/// the table.
fn processor_key(lookup: &DeTable<'_>, index: usize, problem: &str) -> (usize, String) {
    let table_key = format!("processor.{index}");
    let Some(DeValue::Array(tables)) = lookup.get("processor").map(Spanned::get_ref) else {
        return (0, table_key);
    };
    let Some(item) = tables.get(index) else {
        return (0, table_key);
    };
    let DeValue::Table(table) = item.get_ref() else {
        return (item.span().start, table_key);
    };
    let first_word: String = problem
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    match table.get_key_value(first_word.as_str()) {
        Some((name, value)) if !first_word.is_empty() => (
            value.span().start.max(name.span().start),
            format!("{table_key}.{first_word}"),
        ),
        _ => (item.span().start, table_key),
    }
}

/// Validates pipeline TOML `text`, read from `path` (used in messages).
pub fn parse_pipeline(
    path: &Path,
    text: &str,
    registry: &ProcessorRegistry,
) -> Result<PipelineConfig, ConfigErrors> {
    let errors = Errors { path, text };
    let root = DeTable::parse(text).map_err(|e| errors.toml_error(&DeTable::default(), &e))?;
    let lookup = root.get_ref().clone();
    let root_span = root.span();
    let mut table = root.into_inner();
    let processor_tables = table.remove("processor");

    let mut found = Vec::new();
    let sections =
        Sections::deserialize(toml::de::Deserializer::from(Spanned::new(root_span, table)))
            .map_err(|e| found.push(errors.toml_error(&lookup, &e)))
            .ok();

    let processors = match processor_tables {
        None => Vec::new(),
        Some(tables) => parse_chain("processor", tables, registry, &errors, &lookup, &mut found),
    };

    // The extraction schema is read (from a file next to this one) and
    // compiled now, so a bad one fails `voxpipe check`.
    let base_dir = path.parent().unwrap_or(Path::new(""));
    let extraction = sections
        .as_ref()
        .and_then(|s| s.extraction.as_ref())
        .and_then(|section| {
            section
                .load(base_dir)
                .map_err(|problem| {
                    let at = key_offset(&lookup, problem.key);
                    found.push(errors.key_error(at, problem.key.to_owned(), problem.message));
                })
                .ok()
        });

    // What the start would refuse across sections.
    for problem in sections.iter().flat_map(section_problems) {
        let at = key_offset(&lookup, &problem.key);
        found.push(errors.key_error(at, problem.key, problem.message));
    }
    if let Some(sections) = &sections
        && let Some((key, message)) = opening_problem(&sections.pipeline, &processors)
    {
        found.push(errors.key_error(key_offset(&lookup, key), key.to_owned(), message));
    }

    match sections {
        Some(sections) if found.is_empty() => Ok(PipelineConfig {
            path: path.to_owned(),
            pipeline: sections.pipeline,
            transport: sections.transport,
            context: sections.context,
            evaluator: sections.evaluator,
            webhook: sections.webhook,
            extraction,
            storage: sections.storage,
            learning: sections.learning,
            optimiser: sections.optimiser,
            interruption: sections.interruption,
            server: sections.server,
            recording: sections.recording,
            outbound: sections.outbound,
            text: sections.text,
            processors,
        }),
        _ => Err(ConfigErrors(found)),
    }
}

/// What is wrong with the pipeline's opening (`[pipeline] first_message`,
/// `llm_opens`), as the key to blame and why: the two keys exclude each
/// other, and each needs the processors that carry it out (`user_context`
/// starts it; a `tts` speaks the message, an `llm` writes the opening).
fn opening_problem(
    pipeline: &PipelineSection,
    processors: &[ProcessorEntry],
) -> Option<(&'static str, String)> {
    let has = |type_name: &str| processors.iter().any(|p| p.type_name == type_name);
    let (key, needs): (&str, &[&str]) = match (&pipeline.first_message, pipeline.llm_opens) {
        (None, false) => return None,
        (Some(_), true) => {
            return Some((
                "pipeline.llm_opens",
                "set either `first_message` (fixed words) or `llm_opens` (the LLM writes them), \
                 not both"
                    .into(),
            ));
        }
        (Some(text), false) if text.trim().is_empty() => {
            return Some((
                "pipeline.first_message",
                "the first message is empty; remove the key to let the caller speak first".into(),
            ));
        }
        (Some(_), false) => ("pipeline.first_message", &["user_context", "tts"]),
        (None, true) => ("pipeline.llm_opens", &["user_context", "llm"]),
    };
    let missing: Vec<String> = needs
        .iter()
        .filter(|type_name| !has(type_name))
        .map(|type_name| format!("`{type_name}`"))
        .collect();
    (!missing.is_empty()).then(|| {
        (
            key,
            format!(
                "the bot cannot open this conversation: it needs {} processor(s) in the chain \
                 (`user_context` starts the opening, a `tts` speaks it, an `llm` writes it), \
                 and this pipeline has none",
                missing.join(" and ")
            ),
        )
    })
}

/// Where the dotted `key` is written (its deepest part that is), for
/// errors found after deserialization.
fn key_offset(lookup: &DeTable<'_>, key: &str) -> usize {
    let mut table = lookup;
    let mut offset = 0;
    for part in key.split('.') {
        let Some((name, value)) = table.get_key_value(part) else {
            break;
        };
        offset = name.span().start;
        match value.get_ref() {
            DeValue::Table(inner) => table = inner,
            _ => break,
        }
    }
    offset
}

/// Parses an array of processor tables at `path` into entries with unique
/// names, pushing what is wrong onto `found`.
fn parse_chain(
    path: &str,
    tables: Spanned<DeValue<'_>>,
    registry: &ProcessorRegistry,
    errors: &Errors<'_>,
    lookup: &DeTable<'_>,
    found: &mut Vec<ConfigError>,
) -> Vec<ProcessorEntry> {
    let span = tables.span();
    let DeValue::Array(items) = tables.into_inner() else {
        found.push(errors.key_error(
            span.start,
            path.to_owned(),
            "expected an array of processor tables (write each processor as [[processor]])".into(),
        ));
        return Vec::new();
    };
    let mut entries = Vec::new();
    let mut seen_names: HashMap<String, usize> = HashMap::new();
    for (index, item) in items.iter().cloned().enumerate() {
        match parse_processor(&format!("{path}.{index}"), item, registry, errors, lookup) {
            Ok(mut entry) => {
                let repeats = seen_names.entry(entry.name.clone()).or_default();
                *repeats += 1;
                if *repeats > 1 {
                    entry.name = format!("{}#{repeats}", entry.name);
                }
                entries.push(entry);
            }
            Err(error) => found.push(error),
        }
    }
    entries
}

fn parse_processor(
    path: &str,
    item: Spanned<DeValue<'_>>,
    registry: &ProcessorRegistry,
    errors: &Errors<'_>,
    lookup: &DeTable<'_>,
) -> Result<ProcessorEntry, ConfigError> {
    let span = item.span();
    let key = |k: &str| format!("{path}.{k}");
    let DeValue::Table(mut table) = item.into_inner() else {
        return Err(errors.key_error(span.start, path.to_owned(), "expected a table".into()));
    };
    let type_value = table.remove("type").ok_or_else(|| {
        errors.key_error(
            span.start,
            key("type"),
            "missing required key `type`".into(),
        )
    })?;
    let type_span = type_value.span();
    let Some(type_name) = type_value.get_ref().as_str().map(str::to_owned) else {
        return Err(errors.key_error(type_span.start, key("type"), "expected a string".into()));
    };
    let name = match table.remove("name") {
        None => type_name.clone(),
        Some(value) => match value.get_ref().as_str() {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => {
                return Err(errors.key_error(
                    value.span().start,
                    key("name"),
                    "expected a non-empty string".into(),
                ));
            }
        },
    };
    if type_name == PARALLEL {
        let factory = parse_parallel(path, &name, span, table, registry, errors, lookup)?;
        return Ok(ProcessorEntry {
            type_name,
            name,
            factory: Arc::new(factory),
        });
    }
    let provider = if registry.has_providers(&type_name) {
        Some(take_provider(
            &mut table, &type_name, registry, errors, span.start, path,
        )?)
    } else {
        None
    };
    let deserializer = toml::de::ValueDeserializer::from(Spanned::new(span, DeValue::Table(table)));
    let parsed = match &provider {
        Some(provider) => registry.parse_provider(&type_name, provider, deserializer),
        None => registry.parse(&type_name, deserializer),
    };
    match parsed {
        None => Err(errors.key_error(
            type_span.start,
            key("type"),
            format!(
                "unknown processor type `{type_name}`; known types: {}",
                registry
                    .type_names()
                    .chain([PARALLEL])
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
        Some(Err(e)) => Err(errors.toml_error(lookup, &e)),
        Some(Ok(factory)) => Ok(ProcessorEntry {
            type_name,
            name,
            factory,
        }),
    }
}

/// The type of the built-in composite processor, which holds processors of
/// its own and so is read here rather than by the registry.
const PARALLEL: &str = "parallel";

/// `branches = [[{ type = .. }, ..], ..]`: each branch a chain of its own.
fn parse_parallel(
    path: &str,
    name: &str,
    span: std::ops::Range<usize>,
    mut table: DeTable<'_>,
    registry: &ProcessorRegistry,
    errors: &Errors<'_>,
    lookup: &DeTable<'_>,
) -> Result<ParallelFactory, ConfigError> {
    let branches = table.remove("branches").ok_or_else(|| {
        errors.key_error(
            span.start,
            format!("{path}.branches"),
            "missing required key `branches`".into(),
        )
    })?;
    if let Some((key, _)) = table.iter().next() {
        return Err(errors.key_error(
            key.span().start,
            format!("{path}.{}", key.get_ref()),
            format!("unknown key `{}`, expected `branches`", key.get_ref()),
        ));
    }
    let branches_span = branches.span();
    let DeValue::Array(branches) = branches.into_inner() else {
        return Err(errors.key_error(
            branches_span.start,
            format!("{path}.branches"),
            "expected an array of branches, each an array of processor tables".into(),
        ));
    };
    if branches.is_empty() {
        return Err(errors.key_error(
            branches_span.start,
            format!("{path}.branches"),
            "a parallel processor needs at least one branch".into(),
        ));
    }
    let mut found = Vec::new();
    let mut chains = Vec::new();
    for (b, branch) in branches.iter().cloned().enumerate() {
        let mut chain = parse_chain(
            &format!("{path}.branches.{b}"),
            branch,
            registry,
            errors,
            lookup,
            &mut found,
        );
        for entry in &mut chain {
            entry.name = format!("{name}.{b}.{}", entry.name);
        }
        chains.push(chain);
    }
    match found.into_iter().next() {
        Some(error) => Err(error),
        None => Ok(ParallelFactory::new(chains)),
    }
}

/// Removes and checks the `provider` key of a processor table whose type
/// is chosen by provider.
fn take_provider(
    table: &mut DeTable<'_>,
    type_name: &str,
    registry: &ProcessorRegistry,
    errors: &Errors<'_>,
    table_start: usize,
    path: &str,
) -> Result<String, ConfigError> {
    let key = format!("{path}.provider");
    let known = || {
        registry
            .provider_names(type_name)
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(value) = table.remove("provider") else {
        return Err(errors.key_error(
            table_start,
            key,
            format!(
                "missing required key `provider`; `{type_name}` providers: {}",
                known()
            ),
        ));
    };
    let at = value.span().start;
    match value.get_ref().as_str() {
        Some(provider) if registry.provider_names(type_name).any(|p| p == provider) => {
            Ok(provider.to_owned())
        }
        Some(provider) => Err(errors.key_error(
            at,
            key,
            format!(
                "unknown provider `{provider}` for `{type_name}`; known providers: {}",
                known()
            ),
        )),
        None => Err(errors.key_error(at, key, "expected a string".into())),
    }
}
