//! `voxpipe calls objects ID` and `voxpipe calls fetch ID KIND`: a call's
//! objects in object storage, listed or fetched.

#![allow(clippy::print_stdout)]

use std::path::Path;

use anyhow::{Context as _, bail};
use voxpipe::objects::{ObjectKind, ObjectStorage};
use voxpipe::store::{CallRecord, StoredObjects};

use super::store_args::Operator;

/// The recorded key of `kind`.
pub(crate) fn key_of(objects: &StoredObjects, kind: ObjectKind) -> Option<&str> {
    match kind {
        ObjectKind::Recording => objects.recording.as_deref(),
        ObjectKind::Transcript => objects.transcript.as_deref(),
        ObjectKind::Profile => objects.profile.as_deref(),
        ObjectKind::Audit => objects.audit.as_deref(),
    }
}

fn storage(operator: &Operator) -> anyhow::Result<&ObjectStorage> {
    match operator.context.objects() {
        Some(objects) => Ok(objects),
        None => bail!(
            "{}: the pipeline has no [storage] section",
            operator.config.path.display()
        ),
    }
}

fn stored_call(operator: &Operator, id: &str) -> anyhow::Result<CallRecord> {
    let store = operator.context.store();
    match operator.block_on(store.call(id))? {
        Some(call) => Ok(call),
        None => bail!("no call {id} in the {} store", store.backend()),
    }
}

/// Prints each of the call's objects: its key and its size in storage.
pub(crate) fn list(operator: &Operator, id: &str, json: bool) -> anyhow::Result<()> {
    let storage = storage(operator)?;
    let call = stored_call(operator, id)?;
    let mut rows = Vec::new();
    for kind in ObjectKind::ALL {
        let key = key_of(&call.objects, kind);
        let size = match key {
            Some(key) => operator
                .block_on(storage.size(key))
                .with_context(|| format!("cannot look at {key}"))?,
            None => None,
        };
        rows.push((kind, key, size));
    }
    if json {
        let objects: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .map(|(kind, key, size)| {
                let entry = serde_json::json!({ "key": key, "bytes": size });
                (kind.as_str().to_owned(), entry)
            })
            .collect();
        let value = serde_json::json!({
            "call_id": id,
            "storage": storage.url().to_string(),
            "objects": objects,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).context("cannot print the objects")?
        );
        return Ok(());
    }
    println!("objects of call {id} in {}", storage.url());
    for (kind, key, size) in rows {
        let state = match (key, size) {
            (Some(key), Some(bytes)) => format!("{key}  ({bytes} bytes)"),
            (Some(key), None) => format!("{key}  (recorded, but missing from storage)"),
            (None, _) => "not stored".to_owned(),
        };
        println!("  {:<11} {state}", kind.as_str());
    }
    Ok(())
}

/// Writes the call's object of `kind` to `output` (`-`: standard output).
pub(crate) fn fetch(
    operator: &Operator,
    id: &str,
    kind: &str,
    output: &Path,
) -> anyhow::Result<()> {
    let Some(kind) = ObjectKind::parse(kind) else {
        bail!("unknown object `{kind}`: expected recording, transcript, profile or audit");
    };
    let storage = storage(operator)?;
    let call = stored_call(operator, id)?;
    let Some(key) = key_of(&call.objects, kind) else {
        bail!("call {id} has no stored {kind}");
    };
    let bytes = operator
        .block_on(storage.get(key))
        .with_context(|| format!("cannot fetch {key}"))?;
    if output == Path::new("-") {
        use std::io::Write as _;
        std::io::stdout()
            .write_all(&bytes)
            .context("cannot write to standard output")?;
    } else {
        std::fs::write(output, &bytes)
            .with_context(|| format!("cannot write {}", output.display()))?;
        eprintln!("{key} → {} ({} bytes)", output.display(), bytes.len());
    }
    Ok(())
}
