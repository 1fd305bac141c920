//! Reading a spool file for a replay, and setting aside one that cannot
//! be read.

use std::path::Path;

use serde::Deserialize;

use super::files::private_dir_all;
use super::{SpooledCall, VERSION};

/// What a spool file held.
pub(super) enum Read {
    /// A call of this build's format.
    Call(SpooledCall),
    /// Removed meanwhile (written by its writer after all).
    Gone,
    /// Not read (the disk failed): tried again later.
    Failed(String),
    /// Written by a newer build (its version): left for it.
    Newer(u32),
    /// Not a spooled call: where it fails, never what it holds.
    Unparsable(String),
}

/// Reads the spool file at `path`. Blocking.
pub(super) fn read_spooled(path: &Path) -> Read {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Read::Gone,
        Err(err) => return Read::Failed(err.to_string()),
    };
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    // Where it fails, never what it read: the file holds the call's words.
    let where_ = |err: serde_json::Error| {
        format!(
            "{:?} error at line {} column {}",
            err.classify(),
            err.line(),
            err.column()
        )
    };
    match serde_json::from_slice::<Version>(&bytes) {
        Ok(v) if v.version > VERSION => return Read::Newer(v.version),
        Ok(_) => {}
        Err(err) => return Read::Unparsable(where_(err)),
    }
    match serde_json::from_slice::<SpooledCall>(&bytes) {
        Ok(call) => Read::Call(call),
        Err(err) => Read::Unparsable(where_(err)),
    }
}

/// Moves an unreadable file to `aside`, named after its owner directory
/// too; true when it was moved.
pub(super) fn set_aside(path: &Path, aside: &Path, why: &str) -> bool {
    let owner = path
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .unwrap_or("unknown");
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("unnamed");
    let target = aside.join(format!("{owner}-{name}"));
    match private_dir_all(aside).and_then(|()| std::fs::rename(path, &target)) {
        Ok(()) => {
            tracing::error!(file = %path.display(), moved_to = %target.display(), reason = why, "unreadable turn spool file set aside");
            true
        }
        Err(err) => {
            tracing::error!(file = %path.display(), reason = why, error = %err, "unreadable turn spool file left in place");
            false
        }
    }
}
